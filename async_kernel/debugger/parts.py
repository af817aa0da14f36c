"""What the debugger uses of its kernel, given to it by the kernel (``kernel/core.py``).

The debugger sits below the kernel: it names the parts it needs here, and never the kernel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..shell.interactive import Publisher

if TYPE_CHECKING:
    from ..parent import Request
    from ..shell.interactive import AsyncShell
    from ..shell.namespaces import Namespace
    from ..toolkit.caller import Caller

__all__ = ["DebugHandler", "DebuggerParts", "KernelReplies"]

DebugHandler = Callable[["Request"], Awaitable[dict[str, Any]]]
"""Answers a debug_request with its reply's content (a DAP response)."""


class KernelReplies(Publisher, Protocol):
    """The kernel's replies as the debugger uses them (``kernel/replies.py``: Replies): the
    shell's publisher, where debug events go, and the handler table."""

    def register(self, msg_type: str, handler: DebugHandler) -> None: ...


@dataclass(frozen=True, slots=True)
class DebuggerParts:
    """The kernel's parts a debug session works with."""

    replies: KernelReplies
    """Where debug_request's handler is registered and debug events are published."""
    shell: AsyncShell
    """Its compiler names cells' files; its namespaces are inspected."""
    main: Caller
    """The main thread's loop, where cells run: debugpy is started there."""
    control: Caller
    """The control thread's loop, where debug requests are answered."""
    namespace_of: Callable[[object], Namespace | None]
    """The namespace of the shell a subshell id names (None: the main one); LookupError
    for an unknown subshell."""
