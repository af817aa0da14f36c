"""Which callers run: by thread and by name, for :meth:`Caller.get`, ``current``, ``all``."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

__all__ = ["Registry"]

C = TypeVar("C")


class Registry(Generic[C]):
    """The running callers, by the thread they run on and by name (thread-safe).

    A caller is added when its loop binds it (``Caller.open``) and removed when it ends.
    """

    def __init__(self) -> None:
        self._by_thread: dict[int, C] = {}
        self._by_name: dict[str, C] = {}
        self._lock = threading.Lock()
        #: Held while a lookup may create the caller it misses: one creates at a time.
        self.create_lock = threading.Lock()

    def add(self, caller: C, name: str) -> None:
        """Register ``caller``, called ``name``, for the calling thread."""
        with self._lock:
            self._by_thread[threading.get_ident()] = caller
            self._by_name[name] = caller

    def remove(self, caller: C, name: str) -> None:
        """Forget ``caller`` (called on its thread), unless another has taken its places."""
        ident = threading.get_ident()
        with self._lock:
            if self._by_thread.get(ident) is caller:
                del self._by_thread[ident]
            if self._by_name.get(name) is caller:
                del self._by_name[name]

    def named(self, name: str) -> C | None:
        """The caller registered as ``name``, if any."""
        return self._by_name.get(name)

    def of_thread(self, ident: int) -> C | None:
        """The caller registered for the thread ``ident``, if any."""
        return self._by_thread.get(ident)

    def all(self) -> list[C]:
        """Every registered caller, oldest first."""
        with self._lock:
            return list(dict.fromkeys(self._by_thread.values()))
