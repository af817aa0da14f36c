"""Threads and event loops for users and for the kernel: ``Caller``, ``Pending`` and friends.

``caller`` runs work on a thread's loop from any thread (``registry`` finds the running
ones, ``loops`` holds what differs between asyncio and trio, ``call_queues`` serves
``queue_call``, ``ending`` is what ``stop()`` returns, ``workers`` is the thread pool behind
``to_thread`` and ``thread_cancel`` stops a plain function running there); ``pending`` is
the awaitable result of that work and ``groups`` waits on many; ``backends`` calls across
asyncio and trio; ``background`` reports what a cell's background tasks raise, under that
cell.
"""
