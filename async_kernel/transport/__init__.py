"""How messages reach the kernel and leave it.

The kernel never touches a socket: it is handed decoded messages by a transport and hands
messages back to it.  :mod:`.base` is the whole contract; :mod:`.zmq_transport` speaks ZMQ from
a connection file, :mod:`.callback` serves hosts that move messages themselves.  The wire
format (:mod:`.wire`: messages, channels, signing) and connection files (:mod:`.connection`)
live here too.
"""

from .base import Deliver as Deliver
from .base import Transport as Transport

__all__ = ["Deliver", "Transport"]
