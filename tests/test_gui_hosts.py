"""GUI host loops (Tk, Qt) running asyncio or trio as a guest, plus the plain host.

Why: each Tk/Qt case runs in a fresh subprocess so the host owns a real main
thread, as in the kernel process, and Tk and Qt never share a process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from _xvfb import xvfb_display

from async_kernel.gui_hosts import (
    HostUnavailableError,
    check_host,
    current_host,
    qt_app,
    run_with_host,
    tk_root,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


CHILD = textwrap.dedent(
    """
    import json, sys
    import anyio, anyio.from_thread, anyio.to_thread
    from async_kernel.guest import GuestRunCancelled
    from async_kernel.gui_hosts import current_host, qt_app, run_with_host, tk_root

    host, backend = sys.argv[1], sys.argv[2]
    report = {}
    ticks = []

    def start_host_timer(period_ms):
        # A timer owned by the host toolkit, not by the guest.
        if host == "tk":
            root = tk_root()
            def tick():
                ticks.append(1)
                root.after(period_ms, tick)
            root.after(period_ms, tick)
            return root
        from PySide6.QtCore import QTimer
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(period_ms)
        return timer

    async def main(x):
        report["inside"] = current_host()
        report["has_gui"] = (tk_root() if host == "tk" else qt_app()) is not None
        keep = start_host_timer(10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.05)
            report["to_thread"] = await anyio.to_thread.run_sync(lambda: "worker")
        # Many cross-thread wakes: each round trip goes through the host's wake path.
        def ping_guest():
            return sum(anyio.from_thread.run_sync(lambda: 1) for _ in range(300))
        report["pings"] = await anyio.to_thread.run_sync(ping_guest)
        await anyio.sleep(0.25)
        report["ticks"] = len(ticks)
        if host == "qt":
            keep.stop()
        return x * 2

    async def boom():
        await anyio.sleep(0.01)
        raise ValueError("boom")

    def quit_host_loop():
        if host == "tk":
            tk_root().quit()
        else:
            qt_app().quit()

    async def quitter():
        quit_host_loop()  # user code ends the host loop: the guest must be cancelled
        await anyio.sleep_forever()

    report["value"] = run_with_host(host, backend, main, 21)
    report["after"] = current_host()
    report["gui_after"] = (tk_root() if host == "tk" else qt_app()) is not None
    try:
        run_with_host(host, backend, boom)
    except ValueError as exc:
        report["error"] = str(exc)
    try:
        run_with_host(host, backend, quitter)
    except GuestRunCancelled:
        report["cancelled"] = True
    print("REPORT", json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb_display() as name:
        yield name


def run_child(host: str, backend: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, host, backend],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1].removeprefix("REPORT "))


def assert_report(report: dict[str, Any], host: str) -> None:
    assert report["value"] == 42
    assert report["inside"] == host and report["has_gui"]
    assert report["to_thread"] == "worker"
    assert report["pings"] == 300
    assert report["ticks"] >= 5, report  # ~25 expected: the host loop kept running
    assert report["after"] == "plain" and not report["gui_after"]
    assert report["error"] == "boom"
    assert report["cancelled"] is True


@pytest.mark.gui
@pytest.mark.timeout(90)
def test_tk_host(display: str, backend: str) -> None:
    assert_report(run_child("tk", backend, {"DISPLAY": display}), "tk")


@pytest.mark.gui
@pytest.mark.timeout(90)
def test_qt_host(backend: str) -> None:
    if importlib.util.find_spec("PySide6") is None:
        pytest.fail("PySide6 is not installed: pip install PySide6-Essentials", pytrace=False)
    assert_report(run_child("qt", backend, {"QT_QPA_PLATFORM": "offscreen"}), "qt")


@pytest.mark.timeout(10)
def test_plain_host(backend: Any) -> None:
    async def main(x: int) -> str:
        assert current_host() == "plain"
        await anyio.sleep(0.01)
        return f"v{x}"

    async def boom() -> None:
        raise ValueError("plain boom")

    assert run_with_host("plain", backend, main, 1) == "v1"
    with pytest.raises(ValueError, match="plain boom"):
        run_with_host("plain", backend, boom)
    assert tk_root() is None and qt_app() is None


def test_check_host_unknown() -> None:
    with pytest.raises(HostUnavailableError, match="unknown host"):
        check_host("wx")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="X11 display check")
def test_check_host_without_display(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(HostUnavailableError, match="set DISPLAY or run under Xvfb"):
        check_host("tk")
    if importlib.util.find_spec("PySide6") is not None:
        with pytest.raises(HostUnavailableError, match="QT_QPA_PLATFORM=offscreen"):
            check_host("qt")


def test_check_host_without_pyside6(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "PySide6" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(HostUnavailableError, match=r"pip install 'async-kernel\[qt\]'"):
        check_host("qt")
