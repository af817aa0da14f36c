"""Start-up: connection file -> transport -> kernel -> host loop, in that order."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .connection import ConnectionInfo, read_connection_file, write_connection_file
from .kernel import Kernel
from .settings import InterfaceSettings
from .transport.base import Deliver
from .transport.zmq_transport import ZmqTransport
from .wire import Codec

__all__ = ["run_kernel"]

log = logging.getLogger("async_kernel")


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

    if info.ip not in ("127.0.0.1", "localhost", "::1") and info.transport == "tcp":
        log.warning(
            "listening on %s: anyone who can reach this address and holds the key can run "
            "code; messages are not encrypted",
            info.ip,
        )
    kernel = Kernel(settings, make_transport)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    _run_on_host(kernel, settings)


def _run_on_host(kernel: Kernel, settings: InterfaceSettings) -> None:
    if settings.loop == "plain":
        import anyio

        anyio.run(kernel.serve, backend=settings.backend)
        return
    from .gui_hosts import check_host, run_with_host

    check_host(settings.loop)
    run_with_host(settings.loop, settings.backend, kernel.serve)
