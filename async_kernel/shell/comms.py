"""Comms through the ``comm`` package, so ipywidgets and friends find our kernel.

``comm.create_comm`` and ``comm.get_comm_manager`` are the package's documented hooks: we
point them at a comm that publishes on iopub with the current request as parent.  Buffers
travel without copies both ways: a comm's buffers are handed to the socket as they are, and
a received message's large buffers are views of the received frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import comm
from comm.base_comm import BaseComm, CommManager

if TYPE_CHECKING:
    from .interactive import Publisher

__all__ = ["KernelComm", "install_comms"]

_publisher: Publisher | None = None
_manager = CommManager()


class KernelComm(BaseComm):
    """A comm whose messages go out on iopub."""

    def publish_msg(
        self,
        msg_type: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes] | None = None,
        **keys: Any,
    ) -> None:
        if _publisher is None:
            return
        content = {"data": data or {}, "comm_id": self.comm_id, **keys}
        _publisher.publish(
            msg_type,
            content,
            metadata=metadata or {},
            buffers=[_flat(b) for b in buffers or []],
        )


def _flat(buffer: Any) -> bytes:
    """``buffer`` as one run of bytes, without a copy where it already is one.

    The transport sends large buffers without copying them: they must not be changed until
    the message has gone (as with ipykernel).  Only a non-contiguous view is copied.
    """
    if type(buffer) is bytes:
        return buffer
    view = memoryview(buffer)
    if view.c_contiguous:
        return view.cast("B")  # pyright: ignore[reportReturnType]  # sent as a buffer, like bytes
    return view.tobytes()


def _create_comm(*args: Any, **kwargs: Any) -> BaseComm:
    return KernelComm(*args, **kwargs)


def _get_comm_manager() -> CommManager:
    return _manager


def install_comms(publisher: Publisher) -> CommManager:
    """Route every comm of this process through ``publisher``; returns the manager."""
    global _publisher
    _publisher = publisher
    comm.create_comm = _create_comm
    comm.get_comm_manager = _get_comm_manager
    return _manager
