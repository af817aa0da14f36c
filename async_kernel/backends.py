"""Run a coroutine function on a chosen backend, whatever backend the caller runs on.

Trio code from an asyncio kernel (or the reverse) runs on a short-lived thread with its own
loop of the wanted backend; awaiting the result does not block the caller's loop, and
cancelling the awaiting task cancels the work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sniffio

from .caller import Backend, Caller

__all__ = ["call_using_backend"]

T = TypeVar("T")


async def call_using_backend(
    backend: Backend, async_fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``await call_using_backend("trio", fn, *args)``: the result of ``fn(*args)`` run on trio."""
    try:
        current = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        current = None
    if current == backend:
        return await async_fn(*args)
    return await Caller.spawn(async_fn, *args, backend=backend, name=f"{backend}-call")
