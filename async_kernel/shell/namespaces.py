"""Which user namespace a piece of code sees: the main shell's, or its subshell's own.

There is one IPython shell (it is a singleton with one history), so a subshell's namespace
is chosen per task through a ContextVar that the shell's ``user_ns`` consults.  Two cells on
different threads (or tasks) therefore each see their own namespace at the same time.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

__all__ = ["NamespaceShell", "active_namespace", "main_namespace", "new_namespace", "set_namespace"]

Namespace = dict[str, Any]


class NamespaceShell(Protocol):
    """The shell as far as namespaces go (IPython leaves both attributes untyped)."""

    @property
    def user_ns(self) -> Namespace:
        """The namespace code sees: the active one, else the main one."""
        ...

    @property
    def user_ns_hidden(self) -> Namespace:
        """IPython's own names in the main namespace (``In``, ``Out``, ``get_ipython``, ...)."""
        ...


_active: ContextVar[Namespace | None] = ContextVar("async_kernel_user_ns", default=None)


def active_namespace() -> Namespace | None:
    """The namespace chosen for this task, or None for the main shell's."""
    return _active.get()


def set_namespace(namespace: Namespace | None) -> None:
    """Choose the namespace for the rest of this task's context (None: the main shell's)."""
    _active.set(namespace)


def main_namespace(shell: NamespaceShell) -> Namespace:
    """The main shell's namespace, whatever this task has chosen."""
    token = _active.set(None)
    try:
        return shell.user_ns
    finally:
        _active.reset(token)


def new_namespace(shell: NamespaceShell) -> Namespace:
    """A fresh namespace that still has IPython's own names (In, Out, get_ipython, ...)."""
    main = main_namespace(shell)
    namespace: Namespace = {name: main[name] for name in shell.user_ns_hidden if name in main}
    namespace.update(dict.fromkeys(("_", "__", "___", "_i", "_ii", "_iii"), ""))
    namespace["__name__"] = "__main__"
    namespace["__builtins__"] = main.get("__builtins__", __builtins__)
    return namespace
