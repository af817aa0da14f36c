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
    from .kernel.callback import CallbackKernel
    from .kernel.router import process_events
    from .toolkit.backends import call_using_backend
    from .toolkit.caller import Caller
    from .toolkit.groups import PendingGroup, as_completed, wait
    from .toolkit.pending import Pending, PendingCancelled, current_pending

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
    "CallbackKernel": ".kernel.callback",
    "Caller": ".toolkit.caller",
    "Pending": ".toolkit.pending",
    "PendingCancelled": ".toolkit.pending",
    "PendingGroup": ".toolkit.groups",
    "as_completed": ".toolkit.groups",
    "call_using_backend": ".toolkit.backends",
    "current_pending": ".toolkit.pending",
    "process_events": ".kernel.router",
    "wait": ".toolkit.groups",
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
