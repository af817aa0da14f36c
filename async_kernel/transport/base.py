"""The seam between the kernel and whatever carries its messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..connection import Channel
from ..wire import Message

Deliver = Callable[[Channel, list[bytes], Message], None]
"""Called with (channel, identities, message) for every accepted incoming message.

It may be called on any thread; it must be quick and must not raise.
"""


class Transport(Protocol):
    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        """Queue ``msg`` for sending; safe to call from any thread, never blocks on I/O."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, about ``delay`` seconds from now, on the transport's thread.

        Used to batch output: a stream asks for one flush soon rather than sending per write.
        """
        ...

    def close(self) -> None:
        """Send what is queued, then release every resource."""
        ...


@runtime_checkable
class ReadableHere(Protocol):
    """A transport whose channels a loop thread may also read itself (the ZMQ transport)."""

    def notice_fd(self, channel: Channel) -> int:
        """A descriptor that turns readable when ``channel`` may have a message."""
        ...

    def read_here(self, channel: Channel) -> None:
        """Read and deliver, on the calling thread, everything waiting on ``channel``."""
        ...

    def lend(self, channel: Channel, loop_is_free: Callable[[], bool] | None) -> None:
        """Leave ``channel`` to the reading loop while ``loop_is_free()``; ``None`` ends it."""
        ...
