"""Start-up: connection file -> transport -> kernel -> host loop, in that order.

The sockets are bound first, before the kernel (IPython, the event loop) and any GUI host
are imported, for two reasons.  The ports in a client's connection file are free only until
another process takes them: jupyter_client picks each by binding port 0 and closing the
socket, and any connection made on the machine meanwhile may be given that port (then the
kernel dies with "Address already in use"); Qt's import alone took ~1 s of that window on a
loaded machine.  And a client that connects early is accepted at once, its first request
waiting in the socket, instead of being refused and retried at zmq's reconnect interval
(100 ms).  The request is still answered only once the shell can run cells.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..interrupt import block_sigint_in_this_thread
from ..settings import InterfaceSettings
from ..transport.connection import (
    ConnectionInfo,
    default_connection_file,
    read_connection_file,
    write_connection_file,
)
from ..transport.curve import curve_keys
from ..transport.wire import Codec
from ..transport.zmq_transport import ZmqTransport
from .parent_poller import start_parent_poller

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..kernel.core import Kernel

__all__ = ["run_kernel"]

log = logging.getLogger("async_kernel")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _load(path: Path | None) -> tuple[Path, ConnectionInfo]:
    if path is None:
        path = default_connection_file()
    if path.exists():
        return path, read_connection_file(path)
    return path, ConnectionInfo()


def run_kernel(
    connection_file: str | None, settings: InterfaceSettings, ipython_config: Sequence[str] = ()
) -> None:
    """Run a kernel until it is shut down; returns when the host loop has ended.

    ``ipython_config``: ``--Class.trait=value`` arguments for the shell (IPython's config).
    """
    kernel: Kernel | None = None
    orphaned = threading.Event()

    def stop() -> None:
        orphaned.set()
        if kernel is not None:
            kernel.stop()

    # Watched from the start: a parent that dies once the connection file exists (and before
    # the kernel does) must still end this process.
    start_parent_poller(stop)
    _dump_stacks_to_stderr()
    path, info = _load(Path(connection_file) if connection_file else None)
    needs_write = not path.exists() or any(
        info.port(c) == 0 for c in ("shell", "control", "stdin", "iopub", "hb")
    )
    codec = Codec(info.key.encode(), info.signature_scheme)
    _warn_if_exposed(info)

    # On the main thread; the kernel starts it (and its I/O thread) once it runs.
    transport = ZmqTransport(info, codec)
    if needs_write:
        write_connection_file(path, info)
        print(f"async-kernel: connection file {path}", file=sys.__stderr__)

    from ..kernel.core import Kernel

    kernel = Kernel(
        settings,
        lambda: transport,
        before_forced_exit=_end_children,
        ipython_config=ipython_config,
    )
    if orphaned.is_set():  # the parent died while we started: serve() returns at once
        kernel.stop()
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    from ..gui_hosts import HostUnavailableError

    try:
        _run_on_host(kernel, settings, str(path))
    except HostUnavailableError as err:  # a set-up problem: say what to do, no traceback
        if needs_write:  # and leave no connection file naming a kernel that never ran
            with contextlib.suppress(OSError):
                path.unlink()
        sys.exit(f"async-kernel: cannot start the {settings.loop} host loop: {err}")
    # A transport never taken (the kernel stopped first) is not closed: it never started,
    # and the process is about to exit.  What the cells started ends with the kernel, and
    # the exit itself is bounded (a cell's non-daemon thread would otherwise hold it).
    from .children import exit_soon

    _end_children()
    exit_soon()


def _dump_stacks_to_stderr() -> None:
    """Every thread's stack goes to the kernel's stderr when the process crashes (a fatal
    signal: the front end only sees the kernel die), and on ``kill -USR1 <kernel pid>``
    (what a kernel that seems hung is doing, without a debugger).  Written to a copy of fd 2
    taken now, before fd capture puts a pipe there (the dump would become a cell's output,
    or die with the process)."""
    import faulthandler
    import signal

    with contextlib.suppress(OSError, ValueError):  # no stderr at all: no dump
        stderr = os.fdopen(os.dup(2), "w")
        faulthandler.enable(file=stderr, all_threads=True)
        if hasattr(signal, "SIGUSR1"):  # not on Windows
            faulthandler.register(signal.SIGUSR1, file=stderr, all_threads=True)


def _end_children() -> None:
    from .children import end_children  # psutil: imported when a kernel ends, not at start

    end_children()


def _warn_if_exposed(info: ConnectionInfo) -> None:
    """Say loudly when others could read or forge this kernel's traffic."""
    encrypted = curve_keys(info.extra) is not None
    if info.transport == "tcp" and info.ip not in LOOPBACK and not encrypted:
        log.warning(
            "listening on %s WITHOUT ENCRYPTION: anyone on the network can read this "
            "kernel's traffic, and anyone who gets the key can run code; bind to 127.0.0.1 "
            "or use transport encryption (CurveZMQ)",
            info.ip,
        )
    if not info.key:
        log.warning("the connection file has no key: messages are not signed or checked")


def _run_on_host(kernel: Kernel, settings: InterfaceSettings, connection_file: str) -> None:
    from ..gui_hosts import run_with_host

    def ready(kernel: Kernel) -> None:
        # A ZMQ kernel says so where libraries look (tqdm.auto's widget bar).
        from .notebook_env import announce_jupyter_kernel

        announce_jupyter_kernel(kernel.shell, connection_file)

    async def serve() -> None:
        try:
            await kernel.serve(ready=ready)
        finally:
            # The process ends: a SIGINT now has nothing left to interrupt.  Blocked from
            # here (on the main thread, the one thread that did not block it), it waits and
            # goes with the process.  Else one that came as the loop closed was written to
            # its closed wake-up socket (a traceback, trio), or ended the process by the
            # signal once Python's own handler was gone (status -2 for a clean shutdown).
            block_sigint_in_this_thread()

    run_with_host(settings.loop, settings.backend, serve)
