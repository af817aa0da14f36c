"""The debugger: Debug Adapter Protocol over ``debug_request`` on control, on debugpy.

Present only when debugpy is importable (``pip install async-kernel[debug]``).  Otherwise the
kernel does not advertise it, and a ``debug_request`` (the shipped ``async`` spec tells
JupyterLab a debugger is there, since it cannot know) gets a failed DAP response that says
what to install.

The kernel installs it at start-up (not in single-thread mode: the debugger needs a control
thread that answers while a breakpoint holds the main one) with the parts it needs
(:class:`.parts.DebuggerParts`); its handlers run on the control thread.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..parent import Request
    from .parts import DebuggerParts

MISSING_DEBUGPY = "the debugger needs debugpy: pip install 'async-kernel[debug]'"

__all__ = ["MISSING_DEBUGPY", "debugpy_available", "debugpy_missing", "install_debugger"]


def debugpy_available() -> bool:
    return importlib.util.find_spec("debugpy") is not None


def install_debugger(parts: DebuggerParts) -> None:
    """Give the shell cell file names that breakpoints can name, and register a
    debug_request handler.

    The cell names are needed from the first cell; the handlers (and the DAP client) only
    from the first debug_request, so they are imported then, not at start-up.
    """
    if not debugpy_available():
        parts.replies.register("debug_request", debugpy_missing)
        return
    from .cells import CellCompiler

    shell = parts.shell
    shell.compiler_class = CellCompiler
    shell.compile = CellCompiler()

    async def first_debug_request(request: Request) -> dict[str, Any]:
        from .handlers import DebugHandlers

        handlers = DebugHandlers(parts)
        handlers.install()  # replaces this handler: later requests go straight to it
        return await handlers.debug_request(request)

    parts.replies.register("debug_request", first_debug_request)


async def debugpy_missing(request: Request) -> dict[str, Any]:
    """A failed DAP response to any debug_request: debugpy is not installed."""
    from .client import dap_response

    return dap_response(request.msg["content"], message=MISSING_DEBUGPY)
