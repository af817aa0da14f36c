"""A Tk root on its own thread (``gui_hosts.tk_thread``), in-process and in a plain kernel.

Why: the Tk thread lives as long as its process and Tcl state is process-wide, so the
in-process checks run in a fresh subprocess; the kernel checks drive a real plain kernel
(no ``--interface.loop``) through jupyter_client, under a private Xvfb display.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest
from _xvfb import xvfb_display
from conftest import TIMEOUT, run_ok, start_kernel, wait_for_stream

if TYPE_CHECKING:
    from collections.abc import Iterator


pytestmark = pytest.mark.gui

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys, threading, time, tkinter
    from async_kernel import Pending, PendingCancelled
    from async_kernel.gui_hosts import HostUnavailableError, run_with_host
    from async_kernel.gui_hosts.tk_thread import current_tk_thread, start_tk_thread

    report = {}
    if sys.argv[1] == "in-tk-host":
        async def main():
            try:
                start_tk_thread()
            except RuntimeError as exc:
                return str(exc)
        report["refused"] = run_with_host("tk", "asyncio", main)
        print("REPORT", json.dumps(report))
        sys.exit(0)

    display = os.environ.pop("DISPLAY")
    try:
        start_tk_thread()
    except HostUnavailableError as exc:
        report["no_display"] = str(exc)
    os.environ["DISPLAY"] = display
    tk = start_tk_thread()
    report["same"] = start_tk_thread() is tk and current_tk_thread() is tk
    report["on_thread"] = tk.run(lambda: threading.current_thread() is tk.thread)

    clicked = Pending()
    def make():
        top = tkinter.Toplevel(tk.root)
        label = tkinter.Label(top, text="hello")
        label.pack()
        button = tkinter.Button(top, text="OK", command=lambda: clicked.set_result("clicked"))
        button.pack()
        return top, label, button
    top, label, button = tk.run(make)
    report["label"] = tk.run(label.cget, "text")

    async def await_click():
        tk.call(lambda: tk.root.after(50, button.invoke))
        return await clicked
    report["clicked"] = asyncio.run(await_click())

    ticks = []
    def tick():
        ticks.append(1)
        tk.root.after(10, tick)
    tk.run(tick)
    time.sleep(0.3)
    report["ticks"] = len(ticks)

    def boom():
        raise ValueError("boom")
    try:
        tk.run(boom)
    except ValueError as exc:
        report["error"] = str(exc)
    async def coro():
        return 1
    try:
        tk.run(coro)
    except TypeError:
        report["coroutine_refused"] = True

    started = time.monotonic()
    report["many"] = sum(tk.run(lambda: 1) for _ in range(500))
    report["many_seconds"] = time.monotonic() - started

    blocker = tk.call(time.sleep, 0.3)
    started = time.monotonic()
    skipped = tk.call(lambda: report.setdefault("skipped_ran", True))
    report["call_returns_at_once"] = time.monotonic() - started < 0.1
    skipped.cancel()
    blocker.result(5)
    report["skipped"] = skipped.cancelled() and "skipped_ran" not in report

    stopping = tk.call(tk.stop)  # on the Tk thread: only asks, returns False
    late = tk.call(lambda: 1)
    report["stopped"] = tk.stop()
    report["late_cancelled"] = stopping.result(1) is False and late.cancelled()
    report["after_stop"] = tk.call(lambda: 1).cancelled()
    report["current_after_stop"] = current_tk_thread() is None
    report["thread_parked"] = tk.thread.is_alive()
    try:
        tk.root
    except RuntimeError:
        report["root_gone"] = True

    # A new root on the same thread, again and again; widgets kept by the caller.
    kept = []
    for _ in range(3):
        again = start_tk_thread()
        kept.append(again.run(lambda: tkinter.Label(again.root)))
        report.setdefault("restarts", []).append(again.run(again.root.winfo_exists))
        again.stop()
    del top, label, button, make
    print("REPORT", json.dumps(report))
    # exits holding widgets of stopped roots: must not abort (Tcl_AsyncDelete)
    """
)


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb_display() as name:
        yield name


def run_child(mode: str, display: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert not proc.stderr, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout
    return json.loads(lines[-1].removeprefix("REPORT "))


@pytest.mark.timeout(40)
def test_in_process(display: str) -> None:
    report = run_child("plain", display)
    assert "set DISPLAY or run under Xvfb" in report["no_display"]
    assert report["same"] and report["on_thread"]
    assert report["label"] == "hello"
    assert report["clicked"] == "clicked"
    assert report["ticks"] >= 5, report
    assert report["error"] == "boom"
    assert report["coroutine_refused"]
    assert report["many"] == 500 and report["many_seconds"] < 5
    assert report["call_returns_at_once"] and report["skipped"]
    assert report["stopped"] is True and report["late_cancelled"] and report["after_stop"]
    assert report["current_after_stop"] and report["thread_parked"] and report["root_gone"]
    assert report["restarts"] == [1, 1, 1]


@pytest.mark.timeout(40)
def test_refused_in_a_tk_host(display: str) -> None:
    report = run_child("in-tk-host", display)
    assert "tk_root()" in report["refused"]


SETUP = """
import tkinter
from async_kernel import Pending
from async_kernel.gui_hosts.tk_thread import start_tk_thread

tk = start_tk_thread()
clicked = Pending()

def make():
    top = tkinter.Toplevel(tk.root)
    tkinter.Label(top, text="press").pack()
    button = tkinter.Button(top, text="OK", command=lambda: clicked.set_result("clicked"))
    button.pack()
    return top, button

top, button = await tk.call(make)
ticks = []

def tick():
    ticks.append(1)
    tk.root.after(10, tick)

tk.run(tick)
print("ready")
"""


@pytest.mark.timeout(60)
def test_plain_kernel(display: str, backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}", env={"DISPLAY": display}) as (km, kc):
        assert "ready" in run_ok(kc, SETUP)
        # A cell awaits the button; a concurrent ``# task`` cell clicks it on the Tk thread.
        waiting = kc.execute("print('waiting', flush=True)\nprint('got', await clicked)")
        wait_for_stream(kc, waiting, "waiting")
        clicker = kc.execute("# task\nawait tk.call(button.invoke)")
        replies = {}
        while len(replies) < 2:  # both finish, in either order
            msg = kc.get_shell_msg(timeout=TIMEOUT)
            replies[msg["parent_header"]["msg_id"]] = msg["content"]["status"]
        assert replies == {waiting: "ok", clicker: "ok"}
        assert run_ok(kc, "print(clicked.result())") == "clicked\n"
        # The Tk timer keeps firing while the kernel is idle.
        before = int(run_ok(kc, "print(len(ticks))"))
        time.sleep(0.5)
        after = int(run_ok(kc, "print(len(ticks))"))
        assert after - before >= 10, (before, after)
        out = run_ok(kc, "print(tk.stop(), tk.stopped, tk.call(lambda: 1).cancelled())")
        assert out.split() == ["True", "True", "True"]
        later = int(run_ok(kc, "print(len(ticks))"))
        time.sleep(0.2)
        assert int(run_ok(kc, "print(len(ticks))")) == later  # the timer died with the root
        # ``top`` and ``button`` are still in the namespace: shutdown must still exit cleanly.
        kc.shutdown()
        process: Any = getattr(km.provisioner, "process", None)
        assert process is not None
        assert process.wait(timeout=TIMEOUT) == 0
