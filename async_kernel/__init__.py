"""async-kernel: a concurrent Jupyter kernel on anyio (asyncio or trio).

The public surface is what ``__all__`` names; every other module is an implementation
detail.  Importing the package does not import pyzmq (the callback interface needs none).
"""

from ._version import __version__
from .backends import call_using_backend
from .callback_kernel import CallbackKernel
from .caller import Caller
from .pending import Pending, PendingCancelled

__all__ = [
    "CallbackKernel",
    "Caller",
    "Pending",
    "PendingCancelled",
    "__version__",
    "call_using_backend",
]
