"""IPython, adapted to a concurrent kernel: one shell, namespaces per task, output per request.

``interactive`` holds :class:`AsyncShell`; around it: ``iostream`` and ``fdcapture`` (output),
``stdin`` (``input()``), ``comms``, ``history``, ``namespaces``, ``payloads``, ``transform``,
``profile`` (start-up files) and ``magics``.
"""
