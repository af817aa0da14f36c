"""The kernel proper: where each message goes (``router``), how it is answered (``handlers``).

``core`` holds :class:`Kernel`: its shell, callers and transport, and the answering of one
request (busy, reply, idle).  ``router`` decides every incoming message's lane; ``queues`` are
the ordered queues lanes are made of; ``subshells`` adds and removes lanes; ``validation``
checks a request's content; ``callback`` is the same kernel without ZMQ.
"""
