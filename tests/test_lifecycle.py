"""Shutdown and restart through jupyter_client's KernelManager, on both backends."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

from conftest import execute, kernel_argv, start_kernel
from jupyter_client.manager import KernelManager


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


def test_interrupts_while_the_kernel_stops_end_it_cleanly(backend: str, tmp_path: Path) -> None:
    """SIGINTs that keep coming while the kernel stops (a front end's interrupt button, or the
    kernel's own signal sent again) reach its handler after its loops have ended: the
    process still exits with status 0 and no traceback.  (One did not: the handler asked the
    ended control loop to look again later, and the error was raised into the transport's
    close.)"""
    stderr = tmp_path / "kernel.err"
    with start_kernel(f"--interface.backend={backend}", stderr=stderr) as (km, kc):
        process = km.provisioner.process  # type: ignore[union-attr]
        kc.execute("import anyio\nawait anyio.sleep(60)")
        time.sleep(0.3)
        kc.shutdown()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            time.sleep(0.002)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in stderr.read_text(), stderr.read_text()
