"""The per-function lines behind :meth:`Caller.queue_call`: one call of a function at a time.

Each call of ``fn`` has a *turn*, over once the call has ended and the turn before it is
over.  A call waits for the previous turn, not the previous call: a call cancelled while it
waits does not let the next one overtake the one still running before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .pending import Pending, PendingCancelled, current_pending, to_await

__all__ = ["CallQueues"]

#: ``call_soon(fn, *args)`` of the caller the queues belong to.
CallSoon = Callable[..., Pending[Any]]


class CallQueues:
    """One line per function: the last turn queued for it, while one is active."""

    def __init__(self, call_soon: CallSoon) -> None:
        self._call_soon = call_soon
        self._last: dict[Callable[..., Any], Pending[None]] = {}  # fn -> its last turn
        self._lock = threading.Lock()

    def queue(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Pending[Any]:
        """Queue ``fn(*args)`` behind the calls of ``fn`` queued before it."""
        turn: Pending[None] = Pending()
        with self._lock:
            previous = self._last.get(fn)
            pending = self._call_soon(_after, previous, fn, args)
            self._last[fn] = turn

        def release(_: Pending[Any]) -> None:
            if previous is None:
                turn.set_result(None)
            else:
                previous.add_done_callback(lambda _: turn.set_result(None))

        turn.add_done_callback(lambda done: self._done(fn, done))
        pending.add_done_callback(release)
        return pending

    def _done(self, fn: Callable[..., Any], done: Pending[None]) -> None:
        with self._lock:
            if self._last.get(fn) is done:
                del self._last[fn]

    def names(self) -> list[str]:
        """The names of the functions with an active line."""
        with self._lock:
            return [_name_of(fn) for fn in self._last]


def _name_of(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


async def _after(
    previous: Pending[Any] | None, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    """A queued call: wait for the turn before it to be over, then call (unless it was
    cancelled meanwhile: the cancel scope's cancel may still be on its way to the loop)."""
    if previous is not None and not previous.done():
        await previous.wait(shield=True, result=False)
    pending = current_pending()
    if pending is not None and pending.cancel_requested:
        raise PendingCancelled("cancelled while it waited for its turn")
    result = fn(*args)
    if to_await(result):
        result = await result
    return result
