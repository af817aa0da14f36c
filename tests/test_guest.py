"""Guest runs (asyncio and trio) driven by a trivial queue-based host loop.

Why: the host here is just a queue drained on the test's thread, like trio's
own guest-mode tests, so failures point at the guest machinery and not at a
GUI toolkit.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from async_kernel.guest import Backend, GuestRun, GuestRunCancelled, Outcome, start_guest_run
from async_kernel.guest.asyncio_guest import GuestEventLoop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

T = TypeVar("T")


class QueueHost:
    """A host loop: runs posted callables on this thread; does its own work when idle."""

    def __init__(self, idle_period: float = 0.005) -> None:
        self.queue: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self.idle_period = idle_period
        self.idle_ticks = 0  # the host's "own work": counts idle periods
        self.callbacks = 0
        self.thread = threading.get_ident()
        self.on_idle: Callable[[], None] | None = None
        self.run_handle: GuestRun | None = None

    def post(self, fn: Callable[[], object]) -> None:
        self.queue.put(fn)

    def run(
        self,
        backend: Backend,
        async_fn: Callable[..., Awaitable[T]],
        *args: Any,
        timeout: float = 10,
    ) -> T:
        results: list[Outcome[T]] = []
        self.run_handle = start_guest_run(
            backend,
            async_fn,
            *args,
            run_sync_soon_threadsafe=self.post,
            done_callback=results.append,
        )
        deadline = time.monotonic() + timeout
        while not results:
            if time.monotonic() > deadline:
                raise AssertionError("guest run did not finish in time")
            try:
                fn = self.queue.get(timeout=self.idle_period)
            except queue.Empty:
                self.idle_ticks += 1
                if self.on_idle is not None:
                    self.on_idle()
                continue
            assert threading.get_ident() == self.thread
            self.callbacks += 1
            fn()
        assert len(results) == 1
        return results[0].unwrap()


@pytest.fixture
def host() -> QueueHost:
    return QueueHost()


@pytest.mark.timeout(10)
def test_sleep_returns_value(host: QueueHost, backend: Backend) -> None:
    async def main(x: int) -> int:
        start = time.monotonic()
        await anyio.sleep(0.05)
        assert time.monotonic() - start >= 0.05
        return x * 2

    assert host.run(backend, main, 21) == 42
    assert host.run_handle is not None and host.run_handle.done


@pytest.mark.timeout(10)
def test_exception_propagates(host: QueueHost, backend: Backend) -> None:
    async def main() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        host.run(backend, main)


@pytest.mark.timeout(10)
def test_host_does_own_work_while_guest_sleeps(host: QueueHost, backend: Backend) -> None:
    async def main() -> int:
        before = host.idle_ticks
        await anyio.sleep(0.1)
        return host.idle_ticks - before

    assert host.run(backend, main) >= 3


@pytest.mark.timeout(10)
def test_anyio_on_top(host: QueueHost, backend: Backend) -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        def in_worker() -> str:
            # Back into the guest from a worker thread.
            return anyio.from_thread.run_sync(lambda: "from-thread")

        # Causal order, not timing: each child starts its sleep when the step before it is
        # done (a loaded machine may take longer than any sleep to finish the thread call).
        thread_done, fast_done = anyio.Event(), anyio.Event()

        async def child(name: str, after: anyio.Event, done: anyio.Event | None) -> None:
            await after.wait()
            await anyio.sleep(0.01)
            seen.append(name)
            if done is not None:
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(child, "slow", fast_done, None)
            tg.start_soon(child, "fast", thread_done, fast_done)
            seen.append(await anyio.to_thread.run_sync(in_worker))
            thread_done.set()
        with anyio.move_on_after(0.02) as scope:
            await anyio.sleep(10)
        assert scope.cancelled_caught
        return seen

    assert host.run(backend, main) == ["from-thread", "fast", "slow"]


@pytest.mark.timeout(10)
def test_cancel_from_host(host: QueueHost, backend: Backend) -> None:
    started = threading.Event()

    async def main() -> None:
        started.set()
        await anyio.sleep_forever()

    def cancel_when_started() -> None:
        if started.is_set() and host.run_handle is not None:
            host.run_handle.cancel()

    host.on_idle = cancel_when_started
    with pytest.raises(GuestRunCancelled):
        host.run(backend, main)


@pytest.mark.timeout(10)
def test_cancel_from_other_thread(host: QueueHost, backend: Backend) -> None:
    async def main() -> None:
        handle = host.run_handle
        assert handle is not None
        threading.Thread(target=handle.cancel).start()
        await anyio.sleep_forever()

    with pytest.raises(GuestRunCancelled):
        host.run(backend, main)


# -- asyncio specifics ---------------------------------------------------------


@pytest.mark.timeout(10)
def test_running_loop_only_inside_iterations(host: QueueHost) -> None:
    outside: list[object] = []
    host.on_idle = lambda: outside.append(asyncio.events._get_running_loop())

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, GuestEventLoop) and loop.is_running()
        assert asyncio.current_task() is not None
        await asyncio.sleep(0.03)
        return asyncio.get_running_loop() is loop

    assert host.run("asyncio", main)
    assert outside and all(item is None for item in outside)
    handle = host.run_handle
    assert handle is not None and handle.loop.is_closed()  # type: ignore[attr-defined]


@pytest.mark.timeout(10)
def test_timer_ordering(host: QueueHost) -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        order: list[int] = []
        finished = loop.create_future()
        for delay, tag in [(0.03, 3), (0.01, 1), (0.0, 0), (0.02, 2)]:
            loop.call_later(delay, order.append, tag)
        loop.call_later(0.05, finished.set_result, None)
        loop.call_soon(order.append, -1)
        await finished
        return order

    assert host.run("asyncio", main) == [-1, 0, 1, 2, 3]


@pytest.mark.timeout(10)
def test_call_soon_threadsafe_wakes_blocked_select(host: QueueHost) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        # No timers are pending: the helper thread blocks in select(None).
        threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, 7)).start()
        return await fut

    assert host.run("asyncio", main) == 7


@pytest.mark.timeout(10)
def test_host_side_call_soon_wakes_blocked_select(host: QueueHost) -> None:
    """Host code between iterations (not thread-safe API, host thread) must wake select."""
    state: dict[str, Any] = {}

    def on_idle() -> None:
        if "event" in state and host.idle_ticks >= 3:
            state.pop("loop").call_soon(state.pop("event").set)

    host.on_idle = on_idle

    async def main() -> str:
        state["loop"] = asyncio.get_running_loop()
        state["event"] = event = asyncio.Event()
        await event.wait()
        return "woken"

    assert host.run("asyncio", main) == "woken"


@pytest.mark.timeout(10)
def test_add_reader_socketpair(host: QueueHost) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            got: asyncio.Future[bytes] = loop.create_future()
            loop.add_reader(a, lambda: got.set_result(a.recv(100)))
            threading.Timer(0.02, b.send, args=(b"ping",)).start()
            try:
                return await got
            finally:
                loop.remove_reader(a)

    assert host.run("asyncio", main) == b"ping"


@pytest.mark.timeout(10)
def test_add_reader_from_host_while_select_pending(host: QueueHost) -> None:
    """A registration made while the helper blocks in select() must take effect."""
    a, b = socket.socketpair()
    a.setblocking(False)
    state: dict[str, Any] = {}

    def on_idle() -> None:
        loop: asyncio.AbstractEventLoop | None = state.pop("loop", None)
        if loop is not None:  # the guest is parked in select(None) by now
            got: asyncio.Future[bytes] = state["got"]
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
            b.send(b"late")

    host.on_idle = on_idle

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        state["got"] = got = loop.create_future()
        state["loop"] = loop
        try:
            return await got
        finally:
            loop.remove_reader(a)

    with a, b:
        assert host.run("asyncio", main) == b"late"


@pytest.mark.timeout(10)
def test_streams_and_executor(host: QueueHost) -> None:
    async def main() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        squared = await loop.run_in_executor(None, lambda: 12 * 12)
        return line, squared

    assert host.run("asyncio", main) == (b"hello\n", 144)


@pytest.mark.timeout(10)
def test_shutdown_cancels_tasks_and_finalizes_asyncgens(host: QueueHost) -> None:
    log: list[str] = []

    async def agen() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            log.append("agen closed")

    async def background() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            log.append("background cancelled")
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(background())
        gen = agen()
        assert await gen.__anext__() == 1
        await asyncio.sleep(0)
        # ``gen`` is left suspended: shutdown_asyncgens must close it.

    host.run("asyncio", main)
    assert sorted(log) == ["agen closed", "background cancelled"]
    handle: Any = host.run_handle
    assert handle.loop.is_closed()
    assert not handle._selector_thread._thread.is_alive()


@pytest.mark.timeout(10)
def test_keyboard_interrupt_in_callback_ends_run(host: QueueHost) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    async def main() -> None:
        asyncio.get_running_loop().call_soon(interrupt)
        await asyncio.sleep(100)

    with pytest.raises(KeyboardInterrupt):
        host.run("asyncio", main)


@pytest.mark.timeout(20)
def test_one_host_callback_per_iteration(host: QueueHost) -> None:
    """Busy guests cost one host callback per loop iteration, not more."""
    n = 5000

    async def main() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    start = time.perf_counter()
    host.run("asyncio", main)
    elapsed = time.perf_counter() - start
    assert n <= host.callbacks <= n + 50
    assert elapsed < 5, elapsed
