"""The debugger: Debug Adapter Protocol over ``debug_request`` on control, on debugpy.

Present only when debugpy is importable (``pip install async-kernel[debug]``); otherwise the
kernel neither advertises it nor answers ``debug_request``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["debugpy_available", "install_debugger"]


def debugpy_available() -> bool:
    return importlib.util.find_spec("debugpy") is not None


def install_debugger(kernel: Kernel) -> None:
    """Give ``kernel`` cell file names that breakpoints can name, and a debug_request handler."""
    if kernel.single_thread or not debugpy_available():
        return
    from .handlers import DebugHandlers

    DebugHandlers(kernel).install()
