"""The kernel for hosts that pass messages themselves: no sockets, no threads, no pyzmq.

The host gives a callback for outgoing messages and feeds incoming ones to
:meth:`CallbackKernel.receive`; :meth:`CallbackKernel.run` serves until shutdown.  The
routing, concurrency and shell are the ZMQ kernel's own code: only the transport differs,
and control runs on the same loop as the shell (single-thread mode), as a browser requires.

    kernel = CallbackKernel(lambda channel, msg: post_to_frontend(channel, msg))
    await kernel.run()          # on the host's asyncio (or trio) loop
    kernel.receive(msg_dict)    # for each message from the frontend
"""

from __future__ import annotations

import logging

from .connection import Channel
from .kernel import Kernel
from .settings import Backend, InterfaceSettings
from .transport.base import Deliver
from .transport.callback import (
    CallbackTransport,
    OnMessage,
    message_from_host,
    message_to_host,
)
from .wire import Message

__all__ = ["CallbackKernel", "message_to_host"]

log = logging.getLogger("async_kernel")


class CallbackKernel:
    """A kernel whose transport is a function call each way."""

    def __init__(self, on_message: OnMessage, *, backend: Backend = "asyncio") -> None:
        self._on_message = on_message
        self._waiting: list[tuple[Channel, Message]] = []
        self._deliver: Deliver | None = None  # set once the kernel is ready
        self._created_deliver: Deliver | None = None
        self.kernel = Kernel(
            InterfaceSettings(backend=backend), self._make_transport, single_thread=True
        )

    def _make_transport(self, deliver: Deliver) -> CallbackTransport:
        self._created_deliver = deliver
        return CallbackTransport(self._on_message)

    async def run(self) -> None:
        """Serve until a shutdown_request (or :meth:`stop`); await it on the host's loop."""
        await self.kernel.serve(ready=lambda _: self._deliver_waiting())

    def _deliver_waiting(self) -> None:
        self._deliver = self._created_deliver
        waiting, self._waiting = self._waiting, []
        for channel, msg in waiting:
            self._hand_in(channel, msg)

    def receive(self, msg: Message | str | bytes, channel: str | None = None) -> None:
        """Accept one message from the frontend: a dict or its JSON text.

        ``channel`` defaults to the message's own ``"channel"`` key, then to shell.  Messages
        received before :meth:`run` has started are kept and delivered once it has.
        """
        chosen, checked = message_from_host(msg, channel)
        if self._deliver is None:
            self._waiting.append((chosen, checked))
        else:
            self._hand_in(chosen, checked)

    def _hand_in(self, channel: Channel, msg: Message) -> None:
        assert self._deliver is not None
        try:
            self._deliver(channel, [], msg)
        except Exception:
            log.exception("delivering %s failed", msg["msg_type"])

    def interrupt(self) -> None:
        """Cancel every cell that is awaiting (blocking code cannot be interrupted here)."""
        self.kernel.main.schedule(self.kernel.shell.cancel_awaiting_cells)

    def stop(self) -> None:
        """End :meth:`run` as a shutdown_request would."""
        self.kernel.stop()
