"""async-kernel: a concurrent Jupyter kernel on anyio (asyncio or trio)."""

from ._version import __version__
from .caller import Caller

__all__ = ["Caller", "__version__"]
