"""How messages reach the kernel and leave it.

The kernel never touches a socket: it is handed decoded messages by a transport and hands
messages back to it.  :mod:`.zmq_transport` speaks ZMQ from a connection file; the callback
transport serves hosts that move messages themselves.
"""

from .base import Deliver, ReadableHere, Transport

__all__ = ["Deliver", "ReadableHere", "Transport"]
