"""The public thread/loop API: Caller, Pending, call_using_backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from conftest import BACKENDS, execute, stream_text
from jupyter_client.blocking.client import BlockingKernelClient

from async_kernel import Caller, Pending, PendingCancelled, call_using_backend

WAIT = 5  # seconds any Pending in these tests may take


@pytest.fixture(params=BACKENDS)
def caller(request: pytest.FixtureRequest) -> Iterator[Caller]:
    started = Caller.start_new(request.param, f"test-{request.param}")
    yield started
    started.stop()
    assert started.join(WAIT)


class _Req(str):
    """A stand-in request: RequestQueue claims each one before handling it."""

    def claim(self) -> bool:
        return True


async def sleep_then(delay: float, value: object) -> object:
    await anyio.sleep(delay)
    return value


def test_call_soon_sync_and_async(caller: Caller) -> None:
    assert caller.call_soon(threading.current_thread).result(WAIT) is caller.thread
    assert caller.call_soon(sleep_then, 0.01, "done").result(WAIT) == "done"
    assert caller.call_soon(Caller.current).result(WAIT) is caller


def test_in_loop_only_inside_the_callers_own_loop(caller: Caller) -> None:
    assert caller.call_soon(caller.in_loop).result(WAIT) is True
    assert caller.in_loop() is False  # another thread

    async def from_a_worker_thread() -> bool:
        return await anyio.to_thread.run_sync(caller.in_loop)

    assert caller.call_soon(from_a_worker_thread).result(WAIT) is False


def test_a_request_put_inside_the_loop_is_handled_without_scheduling(caller: Caller) -> None:
    """The shell reader puts requests from inside the loop: the consumer is woken directly."""
    from async_kernel.request_queue import RequestQueue

    handled: list[object] = []
    scheduled: list[object] = []

    async def handle(request: object) -> None:
        handled.append(request)

    async def put_twice() -> None:
        queue = RequestQueue(caller, handle)  # type: ignore[arg-type]
        queue.start()
        await anyio.sleep(0.05)  # the consumer waits for work
        real_schedule = caller.schedule
        caller.schedule = lambda fn, *args: (scheduled.append(fn), real_schedule(fn, *args))  # type: ignore[method-assign]
        try:
            queue.put(_Req("first"))  # type: ignore[arg-type]
            with anyio.fail_after(WAIT):
                while not handled:
                    await anyio.sleep(0.001)
            queue.put(_Req("second"))  # type: ignore[arg-type]
            with anyio.fail_after(WAIT):
                while len(handled) < 2:
                    await anyio.sleep(0.001)
        finally:
            del caller.schedule

    caller.call_soon(put_twice).result(WAIT * 2)
    assert handled == ["first", "second"]
    assert scheduled == []


def test_errors_reach_the_waiter(caller: Caller) -> None:
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        caller.call_soon(fail).result(WAIT)
    assert caller.call_soon(lambda: 1).result(WAIT) == 1  # the loop lives on


def test_call_later(caller: Caller) -> None:
    start = time.monotonic()
    assert caller.call_later(0.2, lambda: "late").result(WAIT) == "late"
    assert time.monotonic() - start >= 0.19
    dropped = caller.call_later(10, lambda: "never")
    dropped.cancel()
    with pytest.raises(PendingCancelled):
        dropped.result(WAIT)


def test_cancel_reaches_the_work(caller: Caller) -> None:
    reached: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep(60)
        finally:
            reached.append("cancelled")

    pending = caller.call_soon(forever)
    time.sleep(0.05)
    pending.cancel()
    with pytest.raises(PendingCancelled):
        pending.result(WAIT)
    assert caller.call_soon(lambda: list(reached)).result(WAIT) == ["cancelled"]


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_await_from_either_backend_and_cancel_back(caller: Caller, waiter_backend: str) -> None:
    async def main() -> tuple[object, bool]:
        value = await caller.call_soon(sleep_then, 0.01, 7)
        work = caller.call_soon(sleep_then, 60, None)
        with anyio.move_on_after(0.1):
            await work
        with anyio.fail_after(WAIT):
            while not work.done():
                await anyio.sleep(0.01)
        return value, work.cancelled()

    assert anyio.run(main, backend=waiter_backend) == (7, True)


def test_stop_cancels_everything(caller: Caller) -> None:
    running = caller.call_soon(sleep_then, 60, None)
    time.sleep(0.05)
    caller.stop()
    assert caller.join(WAIT)
    with pytest.raises(PendingCancelled):
        running.result(WAIT)
    late = caller.call_soon(lambda: 1)
    assert late.cancelled()


def test_to_thread_and_spawn(caller: Caller) -> None:
    assert caller.to_thread(lambda: threading.current_thread().name).result(WAIT) != "MainThread"
    for backend in BACKENDS:
        pending: Pending[object] = Caller.spawn(sleep_then, 0.01, backend, backend=backend)
        assert pending.result(WAIT) == backend


def test_current_without_a_caller() -> None:
    with pytest.raises(LookupError):
        Caller.current()


def test_call_using_backend_in_process() -> None:
    import sniffio

    async def which() -> str:
        await anyio.sleep(0)
        return sniffio.current_async_library()

    for outer in BACKENDS:
        for inner in BACKENDS:
            got = anyio.run(call_using_backend, inner, which, backend=outer)
            assert got == inner


def test_call_using_backend_from_a_cell(kc: BlockingKernelClient, backend: str) -> None:
    other = "trio" if backend == "asyncio" else "asyncio"
    code = (
        "import sniffio, anyio\n"
        "from async_kernel import call_using_backend\n"
        "async def which():\n"
        "    await anyio.sleep(0.01)\n"
        "    return sniffio.current_async_library()\n"
        f"print(await call_using_backend({other!r}, which), sniffio.current_async_library())"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == f"{other} {backend}\n"


def test_caller_current_in_a_cell(kc: BlockingKernelClient) -> None:
    code = (
        "from async_kernel import Caller\n"
        "worker = Caller.start_new(Caller.current().backend, 'worker')\n"
        "print(await worker.call_soon(lambda: Caller.current().name))\n"
        "worker.stop(); print(worker.join(5))"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == "worker\nTrue\n"
