"""async-kernel: a concurrent Jupyter kernel on anyio (asyncio or trio).

The public surface is what ``__all__`` names; every other module is an implementation
detail.  Importing the package does not import pyzmq (the callback interface needs none).

The names are imported on first use: ``python -m async_kernel`` runs this file first, and
the kernel binds its sockets before it imports IPython, so a client's first connection
attempt is not refused and retried 100 ms later.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .backends import call_using_backend
    from .callback_kernel import CallbackKernel
    from .caller import Caller
    from .pending import (
        Pending,
        PendingCancelled,
        PendingGroup,
        as_completed,
        current_pending,
        wait,
    )
    from .router import process_events

__all__ = [
    "CallbackKernel",
    "Caller",
    "Pending",
    "PendingCancelled",
    "PendingGroup",
    "__version__",
    "as_completed",
    "call_using_backend",
    "current_pending",
    "process_events",
    "wait",
]

_HOMES = {
    "CallbackKernel": ".callback_kernel",
    "Caller": ".caller",
    "Pending": ".pending",
    "PendingCancelled": ".pending",
    "PendingGroup": ".pending",
    "as_completed": ".pending",
    "call_using_backend": ".backends",
    "current_pending": ".pending",
    "process_events": ".router",
    "wait": ".pending",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
