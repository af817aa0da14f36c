"""The kernel proper: where each message goes (``router``), how it is answered (``handlers``).

``core`` holds :class:`Kernel`, which makes the parts and wires them together; no part knows
the kernel.  ``replies`` answers one request (busy, reply, idle) and sends; ``router``
decides every incoming message's lane; ``responder`` answers a blocked lane's read-only
requests elsewhere; ``queues`` are the ordered queues lanes are made of; ``subshells`` adds
and removes lanes; ``validation`` checks a request's content; ``callback`` is the same
kernel without ZMQ.
"""
