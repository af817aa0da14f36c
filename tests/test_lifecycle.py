"""Shutdown and restart through jupyter_client's KernelManager, on both backends."""

from __future__ import annotations

import pytest
from conftest import execute, kernel_argv
from jupyter_client.manager import KernelManager


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_shutdown_and_restart(backend: str) -> None:
    km = KernelManager(kernel_name="async")
    km.kernel_spec.argv = kernel_argv(f"--interface.backend={backend}")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        execute(kc, "marker = 'before restart'")
        pid_before = km.provisioner.pid  # type: ignore[union-attr]
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=30)
        assert km.provisioner.pid != pid_before  # type: ignore[union-attr]
        reply, _ = execute(kc, "marker")
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "NameError"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    assert not km.is_alive()


def test_shutdown_request_ends_the_process() -> None:
    km = KernelManager(kernel_name="async")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        process = km.provisioner.process  # type: ignore[union-attr]
        kc.shutdown()
        reply = kc.get_control_msg(timeout=10) if hasattr(kc, "get_control_msg") else None
        if reply is not None:
            assert reply["msg_type"] == "shutdown_reply"
            assert reply["content"]["restart"] is False
        assert process.wait(timeout=10) == 0
    finally:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
