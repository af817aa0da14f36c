"""async-kernel: a concurrent Jupyter kernel on anyio (asyncio or trio)."""

from ._version import __version__
from .backends import call_using_backend
from .caller import Caller
from .pending import Pending, PendingCancelled

__all__ = ["Caller", "Pending", "PendingCancelled", "__version__", "call_using_backend"]
