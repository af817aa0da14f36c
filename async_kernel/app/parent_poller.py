"""End the kernel when the process that started it dies.

A kernel whose manager was killed would otherwise live on, holding its ports and memory, with
no one able to reach it.  jupyter_client names itself in ``JPY_PARENT_PID`` (on POSIX a pid;
on Windows a process handle, which we do not interpret).  We also watch ``os.getppid()``:
when the parent dies the kernel is re-parented, so the value changes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from ..interrupt import block_sigint_in_this_thread

__all__ = ["start_parent_poller"]

log = logging.getLogger("async_kernel")

POLL_INTERVAL = 0.5  # seconds between checks
GRACE = 3.0  # seconds a graceful stop may take before the process exits hard


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just is not ours
    return True


def _named_parent() -> int | None:
    value = os.environ.get("JPY_PARENT_PID", "")
    if sys.platform == "win32" or not value.isdigit() or int(value) <= 1:
        return None
    return int(value)


def start_parent_poller(on_orphaned: Callable[[], object]) -> threading.Thread | None:
    """Watch the parent on a daemon thread; returns it, or None when there is none to watch.

    ``on_orphaned`` is asked to stop the kernel gracefully (thread-safe); if the process is
    still alive ``GRACE`` seconds later, it exits with status 1.
    """
    named = _named_parent()
    initial = os.getppid()
    if named is None and initial <= 1:
        return None  # started by init (a daemon, or a container's pid 1): nothing to watch

    def orphaned() -> bool:
        if named is not None and not _pid_alive(named):
            return True
        return os.getppid() != initial

    def poll() -> None:
        block_sigint_in_this_thread()
        while not orphaned():
            time.sleep(POLL_INTERVAL)
        log.warning("the parent process is gone: shutting the kernel down")
        try:
            on_orphaned()
        except Exception:
            log.exception("stopping the orphaned kernel failed")
        time.sleep(GRACE)
        os._exit(1)

    thread = threading.Thread(target=poll, name="async-kernel-parent-poller", daemon=True)
    thread.start()
    return thread
