"""Interrupts in both modes: blocking code, awaiting code and input()."""

from __future__ import annotations

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
