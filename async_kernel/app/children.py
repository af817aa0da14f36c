"""The end of a kernel process: end what its cells started, then make sure the process exits.

A cell may start processes (a server, ``subprocess.Popen``, a multiprocessing pool) and
non-daemon threads.  When the kernel is shut down or restarted, the processes are asked to
end (SIGTERM), given a short grace, then killed, like ipykernel does; without it a restarted
kernel would leave them running, holding ports and memory.  Then a watchdog ends the process
if the interpreter's own exit (joining a cell's non-daemon threads, atexit handlers) takes
longer than it should: jupyter_client would otherwise escalate to signals, and a restart
would wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

import psutil

__all__ = ["end_children", "exit_soon"]

log = logging.getLogger("async_kernel")

CHILD_GRACE = 0.25  # seconds children get to end after SIGTERM before SIGKILL
EXIT_GRACE = 0.5  # seconds the interpreter's exit may take before the watchdog ends it


def _descendants() -> list[psutil.Process]:
    """This process's children and theirs, plus what is left in our process group.

    jupyter_client starts a kernel in a session of its own, so the kernel leads a process
    group: a grandchild whose parent has already exited (``sh -c 'server &'``) is no longer
    our descendant but still in our group.
    """
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    if sys.platform != "win32" and os.getpgid(0) == me.pid:
        for pid in psutil.pids():
            if pid in found or pid == me.pid:
                continue
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == me.pid:
                    with contextlib.suppress(psutil.Error):
                        found[pid] = psutil.Process(pid)
    return list(found.values())


def _running(process: psutil.Process) -> bool:
    # A zombie has ended: its parent (we, or an init that does not reap) just has not
    # collected its status.
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for ``processes`` to end; those still running."""
    deadline = time.monotonic() + timeout
    left = [p for p in processes if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.005)
        left = [p for p in left if _running(p)]
    return left


def end_children(grace: float = CHILD_GRACE) -> list[int]:
    """SIGTERM every process the kernel's cells started, SIGKILL what is left after ``grace``.

    Returns the pids that were asked to end.  Bounded: returns within ``grace`` plus a
    tenth of a second whatever the children do.
    """
    try:
        children = _descendants()
    except (psutil.Error, OSError):
        log.warning("could not list the kernel's child processes", exc_info=True)
        return []
    if not children:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGTERM)
    alive = _wait_gone(children, grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    _wait_gone(alive, 0.1)
    log.info(
        "ended %d child process(es), %d of them killed after %.2f s",
        len(children),
        len(alive),
        grace,
    )
    return [child.pid for child in children]


def exit_soon(after: float = EXIT_GRACE) -> threading.Thread:
    """End the process ``after`` seconds from now unless it has exited by then.

    For the interpreter's own exit: it joins every non-daemon thread a cell left running,
    which may never end.  Output is flushed first; status 0, since the kernel did stop.
    """

    def watchdog() -> None:
        time.sleep(after)
        log.warning("the process did not exit within %.1f s of the kernel's stop; ending it", after)
        for stream in (sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        os._exit(0)

    thread = threading.Thread(target=watchdog, name="async-kernel-exit-watchdog", daemon=True)
    thread.start()
    return thread
