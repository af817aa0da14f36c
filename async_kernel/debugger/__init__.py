"""The debugger: Debug Adapter Protocol over ``debug_request`` on control, on debugpy.

Present only when debugpy is importable (``pip install async-kernel[debug]``).  Otherwise the
kernel does not advertise it, and a ``debug_request`` (the shipped ``async`` spec tells
JupyterLab a debugger is there, since it cannot know) gets a failed DAP response that says
what to install.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..parent import Request

MISSING_DEBUGPY = "the debugger needs debugpy: pip install 'async-kernel[debug]'"

__all__ = ["MISSING_DEBUGPY", "debugpy_available", "debugpy_missing", "install_debugger"]


def debugpy_available() -> bool:
    return importlib.util.find_spec("debugpy") is not None


def install_debugger(kernel: Kernel) -> None:
    """Give ``kernel`` cell file names that breakpoints can name, and a debug_request handler."""
    if kernel.single_thread:
        return
    if not debugpy_available():
        kernel.handlers.register("debug_request", debugpy_missing)
        return
    from .handlers import DebugHandlers

    DebugHandlers(kernel).install()


async def debugpy_missing(request: Request) -> dict[str, Any]:
    """A failed DAP response to any debug_request: debugpy is not installed."""
    from .client import dap_response

    return dap_response(request.msg["content"], message=MISSING_DEBUGPY)
