"""The transport contract: everything the kernel needs from whatever carries its messages.

Two transports implement all of it: :class:`~.zmq_transport.ZmqTransport` (the sockets of a
connection file) and :class:`~.callback.CallbackTransport` (a host that moves messages
itself: a browser, a test).  The kernel never asks a transport what it can do.

A transport is made first (the ZMQ one binds its sockets before IPython is imported), then
started by the kernel with the function that takes the messages it receives.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from .connection import ConnectionInfo
from .wire import Channel, Message

__all__ = ["Deliver", "Transport"]

Deliver = Callable[[Channel, list[bytes], Message], None]
"""Called with (channel, identities, message) for every accepted incoming message.

It may be called on any thread; it must be quick and must not raise.
"""


class Transport(abc.ABC):
    """Carries the kernel's messages both ways (see the module's docstring)."""

    info: ConnectionInfo | None
    """The connection this transport serves; None where the host moves the messages."""

    @abc.abstractmethod
    def start(self, deliver: Deliver) -> None:
        """Begin taking messages in: each accepted one is handed to ``deliver``."""

    @abc.abstractmethod
    def send(self, channel: Channel, msg: Message, identities: list[bytes] | None = None) -> None:
        """Queue ``msg`` for sending; safe to call from any thread, never blocks on I/O."""

    @abc.abstractmethod
    def wait_sent(self, timeout: float) -> bool:
        """Block (at most ``timeout`` seconds) until what is queued now has been sent.

        Called before work that holds the CPU for long (a completion), so the replies made
        just before it are not held up behind it.  True if everything went out.
        """

    @abc.abstractmethod
    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, about ``delay`` seconds from now, on the transport's thread.

        Used to batch output (a stream asks for one flush soon rather than sending per
        write) and by the router's timers.  ``callback`` must be quick.
        """

    @abc.abstractmethod
    async def read_while_free(self, channel: Channel, loop_is_free: Callable[[], bool]) -> None:
        """Read ``channel`` on the calling loop whenever ``loop_is_free()``; until cancelled.

        A loop that reads its own requests saves a hand-over from the transport's thread
        per request.  A transport without such a channel (the host delivers) returns at once.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Send what is queued, then release every resource."""
