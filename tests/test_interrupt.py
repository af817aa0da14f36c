"""Interrupts in both modes: blocking code, awaiting code and input()."""

from __future__ import annotations

import re
import signal
import time

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


# Each prints "started" first: the test interrupts once the cell runs.  An interrupt is for
# the cells running when it comes; one that came while the cell still waited for the main
# loop (a fresh kernel's warm-up holds it for a moment, longer on a loaded machine) was, by
# design, for nothing, and the cell then slept its 30 s (seen: 1 run in 12 beside a hog).
CELLS = {
    "blocking": "print('started', flush=True)\nimport time\ntime.sleep(30)",
    "awaiting-asyncio": "print('started', flush=True)\nimport asyncio\nawait asyncio.sleep(30)",
    "awaiting-trio": "print('started', flush=True)\nimport trio\nawait trio.sleep(30)",
    "input": "input('name? ')",
}


def wait_until_started(kc: BlockingKernelClient, msg_id: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            assert msg["content"]["text"] == "started\n"
            return
    pytest.fail("the cell did not start")


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
        wait_until_started(kc, msg_id)
        time.sleep(0.1)  # (and is in its sleep: the interrupt lands there either way)
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


WAITS = {
    "input": "input('name? ')",
    "process_events": "import async_kernel\nwhile True:\n    async_kernel.process_events(0.05)",
}


@pytest.mark.parametrize("wait", list(WAITS))
def test_an_interrupted_wait_shows_the_cells_call_not_the_kernels_wait(
    kernel: tuple[KernelManager, BlockingKernelClient], wait: str
) -> None:
    """The traceback of an interrupt that struck ``input()`` or ``process_events()`` ends at
    the call the cell made: none of the kernel's wait or signal-handler frames under it."""
    _, kc = kernel
    msg_id = kc.execute(WAITS[wait], allow_stdin=wait == "input")
    if wait == "input":
        assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
    else:
        time.sleep(0.3)
    interrupt_by_message(kc)
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["content"]["traceback"]))
    assert WAITS[wait].splitlines()[-1].strip() in traceback  # the cell's own line
    for kernel_frame in (
        "interrupt.py",
        "on_sigint",
        "Latch.wait",
        "_comms_or_wakeup",
        "Bridge.ask",
    ):
        assert kernel_frame not in traceback, traceback


def test_an_interrupt_before_the_cells_code_starts_is_not_lost(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    """Interrupted while the cell is in hand but none of its code runs yet (here: a slow
    pre_run_cell hook; also IPython compiling it, or between two of its blocks), the cell's
    code raises KeyboardInterrupt as it starts.  It used to run on: seen under load, where
    0.3 s after sending a cell its code had not started yet."""
    _, kc = kernel
    hook = "import time\ndef _slow_hook(info):\n    time.sleep(3)\n"
    execute(kc, hook + "get_ipython().events.register('pre_run_cell', _slow_hook)")
    try:
        msg_id = kc.execute("import time\ntime.sleep(60)")
        while True:  # the cell is in hand once its busy status is out
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status":
                break
        interrupt_by_message(kc)
        reply = shell_reply(kc, msg_id, timeout=TIMEOUT)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        execute(kc, "get_ipython().events.unregister('pre_run_cell', _slow_hook)")
    after, _ = execute(kc, "'alive'")
    assert after["content"]["status"] == "ok"
