"""Interrupts in both modes: blocking code, awaiting code and input()."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from conftest import TIMEOUT, execute, shell_reply, start_kernel
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def interrupt_by_message(kc: BlockingKernelClient) -> None:
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=TIMEOUT)
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["content"]["status"] == "ok"


def interrupt_by_signal(km: KernelManager, kc: BlockingKernelClient) -> None:
    """SIGINT to the kernel's process group, as ``kill -INT`` or a signal-mode spec would."""
    km.signal_kernel(signal.SIGINT)


def interrupt(mode: str, km: KernelManager, kc: BlockingKernelClient) -> None:
    if mode == "message":
        interrupt_by_message(kc)
    else:
        interrupt_by_signal(km, kc)


CELLS = {
    "blocking": "import time\ntime.sleep(30)",
    "awaiting-asyncio": "import asyncio\nawait asyncio.sleep(30)",
    "awaiting-trio": "import trio\nawait trio.sleep(30)",
    "input": "input('name? ')",
}


@pytest.mark.parametrize("mode", ["signal", "message"])
@pytest.mark.parametrize("kind", ["blocking", "awaiting", "input"])
def test_interrupt(
    kernel: tuple[KernelManager, BlockingKernelClient], backend: str, mode: str, kind: str
) -> None:
    km, kc = kernel
    code = CELLS[f"awaiting-{backend}"] if kind == "awaiting" else CELLS[kind]
    msg_id = kc.execute(code, allow_stdin=kind == "input")
    if kind == "input":
        request = kc.get_stdin_msg(timeout=TIMEOUT)
        assert request["msg_type"] == "input_request"
    else:
        time.sleep(0.3)
    started = time.monotonic()
    interrupt(mode, km, kc)
    reply = shell_reply(kc, msg_id, timeout=5)
    took = time.monotonic() - started
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert took < 2, f"the interrupt took {took:.2f}s"
    after, _ = execute(kc, "'alive'")
    assert after["content"]["status"] == "ok"


def test_interrupt_when_idle_is_harmless(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = kernel
    km.interrupt_kernel()
    time.sleep(0.2)
    reply, _ = execute(kc, "1 + 1")
    assert reply["content"]["status"] == "ok"


def test_kernel_spec_declares_message_mode() -> None:
    """Front ends interrupt through control: the kernel then signals its main thread itself,
    which a process-wide SIGINT cannot promise once a GUI toolkit has started threads."""
    with start_kernel() as (km, _):
        assert km.kernel_spec is not None
        assert km.kernel_spec.interrupt_mode == "message"


_BIG_MODULE = """
import pathlib, sys, tempfile
folder = pathlib.Path(tempfile.mkdtemp())
lines = [f"value_{i} = {i}" for i in range(150_000)]
lines.append("def fail():\\n    raise ValueError('the cell failed')")
(folder / "slow_to_show.py").write_text("\\n".join(lines))
sys.path.insert(0, str(folder))
import slow_to_show
"""


@pytest.mark.parametrize("mode", ["signal", "message"])
def test_an_interrupt_while_an_ended_cell_error_is_shown_leaves_that_error_whole(
    mode: str,
) -> None:
    """The cell has raised and IPython is formatting its traceback (slow here: stack_data
    parses the 150,000-line module the error came from) when the interrupt comes.  There
    is no cell code left to interrupt: the error is shown whole, and no KeyboardInterrupt
    is printed in its place."""
    with start_kernel() as (km, kc):
        reply, _ = execute(kc, _BIG_MODULE)
        assert reply["content"]["status"] == "ok", reply["content"]
        msg_id = kc.execute("print('raising', flush=True)\nslow_to_show.fail()")
        outputs: list[dict[str, Any]] = []
        while True:  # the cell has printed: its error is being formatted now
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            outputs.append(msg)
            if msg["msg_type"] == "stream" and "raising" in msg["content"]["text"]:
                break
        interrupt(mode, km, kc)
        reply = shell_reply(kc, msg_id)
        while True:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            outputs.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "ValueError"
        errors = [m for m in outputs if m["msg_type"] == "error"]
        assert len(errors) == 1 and errors[0]["content"]["ename"] == "ValueError"
        streams = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
        assert "KeyboardInterrupt" not in streams
        assert execute(kc, "1 + 1")[0]["content"]["status"] == "ok"
