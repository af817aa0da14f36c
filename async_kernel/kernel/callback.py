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

from ..settings import Backend, InterfaceSettings
from ..transport.callback import (
    CallbackTransport,
    OnMessage,
    message_to_host,
)
from ..transport.wire import Message
from .core import Kernel

__all__ = ["CallbackKernel", "message_to_host"]

log = logging.getLogger("async_kernel")


class CallbackKernel:
    """A kernel whose transport is a function call each way."""

    def __init__(self, on_message: OnMessage, *, backend: Backend = "asyncio") -> None:
        self._transport = CallbackTransport(on_message)
        self.kernel = Kernel(
            InterfaceSettings(backend=backend), lambda: self._transport, single_thread=True
        )

    async def run(self) -> None:
        """Serve until a shutdown_request (or :meth:`stop`); await it on the host's loop."""
        await self.kernel.serve()

    def receive(self, msg: Message | str | bytes, channel: str | None = None) -> None:
        """Accept one message from the frontend: a dict or its JSON text.

        ``channel`` defaults to the message's own ``"channel"`` key, then to shell.  Messages
        received before :meth:`run` has started are kept and delivered once it has.
        """
        self._transport.receive(msg, channel)

    def interrupt(self) -> None:
        """Cancel every cell that is awaiting (blocking code cannot be interrupted here)."""
        cells = self.kernel.shell.cells
        cells.owe()
        self.kernel.main.schedule(cells.cancel_owed_awaits)

    def stop(self) -> None:
        """End :meth:`run` as a shutdown_request would."""
        self.kernel.stop()
