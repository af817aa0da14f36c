"""Start-up: connection file -> transport -> kernel -> host loop, in that order."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .connection import ConnectionInfo, read_connection_file, write_connection_file
from .kernel import Kernel
from .parent_poller import start_parent_poller
from .settings import InterfaceSettings
from .transport.base import Deliver
from .transport.curve import curve_keys
from .transport.zmq_transport import ZmqTransport
from .wire import Codec

__all__ = ["run_kernel"]

log = logging.getLogger("async_kernel")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _load(path: Path | None) -> tuple[Path, ConnectionInfo]:
    if path is None:
        from .cli import default_connection_file

        path = default_connection_file()
    if path.exists():
        return path, read_connection_file(path)
    return path, ConnectionInfo()


def run_kernel(connection_file: str | None, settings: InterfaceSettings) -> None:
    """Run a kernel until it is shut down; returns when the host loop has ended."""
    path, info = _load(Path(connection_file) if connection_file else None)
    needs_write = not path.exists() or any(
        info.port(c) == 0 for c in ("shell", "control", "stdin", "iopub", "hb")
    )
    codec = Codec(info.key.encode(), info.signature_scheme)

    def make_transport(deliver: Deliver) -> ZmqTransport:
        # Created on the main thread, handed to the I/O thread when it starts.
        transport = ZmqTransport(info, codec, deliver)
        if needs_write:
            write_connection_file(path, info)
            print(f"async-kernel: connection file {path}", file=sys.__stderr__)
        return transport

    _warn_if_exposed(info)
    kernel = Kernel(settings, make_transport)
    start_parent_poller(kernel.stop)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    _run_on_host(kernel, settings)


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


def _run_on_host(kernel: Kernel, settings: InterfaceSettings) -> None:
    from .gui_hosts import HostUnavailableError, run_with_host

    try:
        run_with_host(settings.loop, settings.backend, kernel.serve)
    except HostUnavailableError as err:  # a set-up problem: say what to do, no traceback
        sys.exit(f"async-kernel: cannot start the {settings.loop} host loop: {err}")
