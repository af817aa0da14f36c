"""Threads and event loops for users and for the kernel: ``Caller``, ``Pending`` and friends.

``caller`` runs work on a thread's loop from any thread; ``pending`` is the awaitable result
of that work; ``backends`` calls across asyncio and trio; ``background`` reports what a
cell's background tasks raise, under that cell.
"""
