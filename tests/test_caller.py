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
    from async_kernel.kernel.queues import RequestQueue

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


# -- the toolkit: lookup, pool, queues, Pending helpers ------------------------------------
def test_get_by_name_all_and_current(caller: Caller) -> None:
    assert Caller.get(caller.name) is caller
    assert Caller.get(caller.name, caller.backend) is caller
    other = "trio" if caller.backend == "asyncio" else "asyncio"
    with pytest.raises(ValueError):
        Caller.get(caller.name, other)  # type: ignore[arg-type]
    assert caller in Caller.all()
    assert caller.call_soon(Caller.get).result(WAIT) is caller  # no name: this thread's
    with pytest.raises(LookupError):
        Caller.get("nobody-has-this-name", create=False)
    made = Caller.get(f"made-{caller.backend}", caller.backend)
    try:
        assert made.backend == caller.backend and made is not caller
        assert Caller.get(made.name) is made  # found, not made twice
        assert made.call_soon(lambda: Caller.current().name).result(WAIT) == made.name
    finally:
        made.stop().result(WAIT)
    assert made not in Caller.all()
    assert not made.thread.is_alive()


def test_stop_joins_from_a_thread_and_from_async_code(caller: Caller) -> None:
    other = Caller.start_new(caller.backend, "to-stop")
    running = other.call_soon(sleep_then, 60, None)

    async def stop_it() -> bool:
        await other.stop()
        return other.thread.is_alive()

    assert caller.call_soon(stop_it).result(WAIT) is False
    assert running.cancelled()
    assert other.stop().result(WAIT) is None  # again: already joined


def test_to_thread_reuses_a_bounded_pool(caller: Caller) -> None:
    from async_kernel.toolkit.workers import POOL

    names = {caller.to_thread(lambda: threading.current_thread().name).result(WAIT)}
    workers = POOL.workers  # earlier tests may have left several idle ones
    idents = set()
    for _ in range(20):  # one after another: an idle worker each time, never a new one
        idents.add(caller.to_thread(threading.get_ident).result(WAIT))
    assert POOL.workers <= workers and len(idents) <= workers
    assert names == {"async-kernel-worker"}


def test_to_thread_limit_holds_back_extra_calls(caller: Caller) -> None:
    from async_kernel.toolkit.workers import POOL

    limit, Caller.thread_limit = Caller.thread_limit, POOL.workers + 2
    gate = threading.Event()
    active: list[int] = []
    peak: list[int] = [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            active.append(1)
            peak[0] = max(peak[0], len(active))
        gate.wait(WAIT)
        with lock:
            active.pop()

    try:
        busy_before = POOL.workers - POOL.idle
        pendings = [caller.to_thread(work) for _ in range(6)]
        deadline = time.monotonic() + WAIT
        while len(active) < 2 - busy_before and time.monotonic() < deadline:
            time.sleep(0.005)
        assert POOL.backlog >= 6 - Caller.thread_limit
        gate.set()
        for pending in pendings:
            pending.result(WAIT)
        assert peak[0] <= Caller.thread_limit
    finally:
        Caller.thread_limit = limit
        gate.set()


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_to_thread_runs_async_functions_on_the_callers_backend(
    caller: Caller, waiter_backend: str
) -> None:
    import sniffio

    async def which() -> tuple[str, str]:
        await anyio.sleep(0.001)
        return sniffio.current_async_library(), threading.current_thread().name

    async def main() -> tuple[str, str]:
        return await caller.to_thread(which)

    assert anyio.run(main, backend=waiter_backend) == (caller.backend, "async-kernel-worker")


def test_to_thread_cancel_reaches_an_async_function(caller: Caller) -> None:
    started = threading.Event()
    reached: list[str] = []

    async def forever() -> None:
        started.set()
        try:
            await anyio.sleep(60)
        finally:
            reached.append("cancelled")

    pending = caller.to_thread(forever)
    assert started.wait(WAIT)
    assert pending.cancel()
    with pytest.raises(PendingCancelled):
        pending.result(WAIT)
    assert reached == ["cancelled"]


def test_to_thread_errors_and_context(caller: Caller) -> None:
    from contextvars import ContextVar

    var: ContextVar[str] = ContextVar("var", default="unset")
    var.set("from the caller")

    def fail() -> None:
        raise KeyError(var.get())

    with pytest.raises(KeyError, match="from the caller"):
        caller.to_thread(fail).result(WAIT)


def test_queue_call_runs_one_at_a_time_in_order(caller: Caller) -> None:
    order: list[tuple[str, int]] = []

    async def step(i: int) -> int:
        order.append(("start", i))
        await anyio.sleep(0.001 * (5 - i))  # later ones are quicker: order must still hold
        order.append(("end", i))
        return i

    def from_a_thread(i: int) -> Pending[int]:
        return caller.queue_call(step, i)

    pendings = [from_a_thread(i) for i in range(5)]
    assert [p.result(WAIT) for p in pendings] == list(range(5))
    assert order == [(kind, i) for i in range(5) for kind in ("start", "end")]
    assert caller.queued() == {}


def test_queue_call_cancel_drops_one_and_the_rest_run(caller: Caller) -> None:
    gate = threading.Event()
    ran: list[int] = []

    def step(i: int) -> None:
        if i == 0:
            gate.wait(WAIT)  # holds the line (blocking the loop briefly is the point here)
        ran.append(i)

    first = caller.queue_call(step, 0)
    second = caller.queue_call(step, 1)
    third = caller.queue_call(step, 2)
    second.cancel()
    gate.set()
    third.result(WAIT)
    first.result(WAIT)
    assert second.cancelled() and ran == [0, 2]


def test_queue_call_cancelled_while_waiting_never_runs(caller: Caller) -> None:
    """The race behind the test above, many times: the cancel comes while the call waits
    for its turn, and the turn before it ends just as the cancel reaches the loop."""
    for _ in range(200):
        gate = threading.Event()
        ran: list[int] = []

        def step(i: int, gate: threading.Event = gate, ran: list[int] = ran) -> None:
            if i == 0:
                gate.wait(WAIT)
            ran.append(i)

        first = caller.queue_call(step, 0)
        second = caller.queue_call(step, 1)
        third = caller.queue_call(step, 2)
        second.cancel()
        gate.set()
        third.result(WAIT)
        first.result(WAIT)
        assert second.cancelled() and ran == [0, 2]


def test_current_pending_and_metadata(caller: Caller) -> None:
    from async_kernel import current_pending

    def who() -> object:
        pending = current_pending()
        assert pending is not None
        pending.metadata["seen"] = True
        return pending

    pending = caller.call_soon(who)
    assert pending.result(WAIT) is pending and pending.metadata == {"seen": True}
    threaded = caller.to_thread(who)
    assert threaded.result(WAIT) is threaded
    assert current_pending() is None
    assert Pending(metadata={"name": "x"}).metadata == {"name": "x"}


def test_done_callbacks_from_any_thread(caller: Caller) -> None:
    seen: list[tuple[object, str]] = []
    done = threading.Event()

    def note(p: Pending[object]) -> None:
        seen.append((p.result(), threading.current_thread().name))
        done.set()

    pending = caller.call_soon(sleep_then, 0.01, "x")
    pending.add_done_callback(note)
    assert done.wait(WAIT)
    assert seen == [("x", caller.thread.name)]  # called where it completed
    pending.add_done_callback(note)  # done already: called here, at once
    assert seen[-1] == ("x", threading.current_thread().name)
    removed = caller.call_soon(sleep_then, 0.01, None)
    removed.add_done_callback(note)
    assert removed.remove_done_callback(note)
    removed.result(WAIT)
    assert len(seen) == 2


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_wait_timeout_and_shield(caller: Caller, waiter_backend: str) -> None:
    async def main() -> tuple[bool, bool, object]:
        shielded = caller.call_soon(sleep_then, 0.3, "late")
        with pytest.raises(TimeoutError):
            await shielded.wait(timeout=0.01, shield=True)
        unshielded = caller.call_soon(sleep_then, 60, None)
        with pytest.raises(TimeoutError):
            await unshielded.wait(timeout=0.01)
        with anyio.fail_after(WAIT):
            await unshielded.wait(result=False, shield=True)
        return shielded.cancel_requested, unshielded.cancelled(), await shielded

    assert anyio.run(main, backend=waiter_backend) == (False, True, "late")


def test_result_and_exception_timeouts(caller: Caller) -> None:
    pending = caller.call_soon(sleep_then, 60, None)
    with pytest.raises(TimeoutError):
        pending.result(0.01)
    with pytest.raises(TimeoutError):
        pending.exception(0.01)
    pending.cancel()
    assert isinstance(pending.exception(WAIT), PendingCancelled)


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_as_completed_async_and_in_a_thread(caller: Caller, waiter_backend: str) -> None:
    from async_kernel import as_completed

    async def main() -> list[object]:
        pendings = [caller.call_soon(sleep_then, d, d) for d in (0.15, 0.0, 0.05)]
        return [p.result() async for p in as_completed(pendings)]

    assert anyio.run(main, backend=waiter_backend) == [0.0, 0.05, 0.15]
    pendings = [caller.call_soon(sleep_then, d, d) for d in (0.1, 0.0)]
    assert [p.result() for p in as_completed(pendings)] == [0.0, 0.1]
    slow = [caller.call_soon(sleep_then, 60, None)]
    with pytest.raises(TimeoutError):
        list(as_completed(slow, timeout=0.01))
    mixed = [caller.call_soon(sleep_then, 0, "fast"), slow[0]]
    for first in as_completed(mixed, cancel_remaining=True):
        assert first.result() == "fast"
        break
    assert slow[0].exception(WAIT) is not None and slow[0].cancelled()


def test_as_completed_cancel_remaining(caller: Caller) -> None:
    from async_kernel import as_completed

    async def main() -> list[bool]:
        pendings = [caller.call_soon(sleep_then, d, d) for d in (0.0, 60, 60)]
        async with as_completed(pendings, cancel_remaining=True) as each:
            async for _ in each:
                break
        with anyio.fail_after(WAIT):
            for p in pendings:
                await p.wait(result=False, shield=True)
        return [p.cancelled() for p in pendings]

    assert anyio.run(main, backend=caller.backend) == [False, True, True]


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_wait_return_when(caller: Caller, waiter_backend: str) -> None:
    from async_kernel import wait

    def fail() -> None:
        raise ValueError("x")

    async def main() -> list[tuple[int, int]]:
        fast, slow = caller.call_soon(sleep_then, 0, 1), caller.call_soon(sleep_then, 60, 2)
        counts = []
        done, rest = await wait([fast, slow], return_when="FIRST_COMPLETED")
        counts.append((len(done), len(rest)))
        failing = caller.call_soon(fail)
        done, rest = await wait([failing, slow], return_when="FIRST_EXCEPTION")
        counts.append((len(done), len(rest)))
        done, rest = await wait([fast, slow], timeout=0.02)
        counts.append((len(done), len(rest)))
        slow.cancel()
        done, rest = await wait([fast, slow, failing])
        counts.append((len(done), len(rest)))
        return counts

    assert anyio.run(main, backend=waiter_backend) == [(1, 1), (1, 1), (1, 1), (3, 0)]


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_pending_group_waits_for_all(caller: Caller, waiter_backend: str) -> None:
    from async_kernel import PendingGroup

    async def main() -> list[object]:
        async with PendingGroup() as group:
            a = caller.call_soon(sleep_then, 0.05, "a")
            b = caller.to_thread(lambda: "b")
            extra = group.add(Pending())
            extra.set_result("c")
        assert all(p.done() for p in group.members)
        return [a.result(), b.result(), extra.result()]

    assert anyio.run(main, backend=waiter_backend) == ["a", "b", "c"]


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_pending_group_failing_member_cancels_the_rest(caller: Caller, waiter_backend: str) -> None:
    from async_kernel import PendingGroup

    async def fail_soon() -> None:
        await anyio.sleep(0.02)
        raise ValueError("member failed")

    reached: list[str] = []

    async def main() -> None:
        async with PendingGroup():
            sibling = caller.call_soon(sleep_then, 60, None)
            caller.call_soon(fail_soon)
            try:
                await anyio.sleep(60)  # the block's own code is cancelled too
            finally:
                reached.append("body cancelled")
                assert not sibling.done() or sibling.cancelled()

    with pytest.raises(ValueError, match="member failed"):
        anyio.run(main, backend=waiter_backend)
    assert reached == ["body cancelled"]


@pytest.mark.parametrize("waiter_backend", BACKENDS)
def test_pending_group_left_by_an_error_cancels_members(
    caller: Caller, waiter_backend: str
) -> None:
    from async_kernel import PendingGroup

    members: list[Pending[object]] = []

    async def main() -> None:
        async with PendingGroup():
            members.append(caller.call_soon(sleep_then, 60, None))
            raise RuntimeError("the block failed")

    with pytest.raises(RuntimeError, match="the block failed"):
        anyio.run(main, backend=waiter_backend)
    assert members[0].cancelled()

    async def cancelled_from_outside() -> bool:
        with anyio.move_on_after(0.05):
            async with PendingGroup():
                members.append(caller.call_soon(sleep_then, 60, None))
                await anyio.sleep(60)
        return members[1].cancelled()

    assert anyio.run(cancelled_from_outside, backend=waiter_backend) is True


def test_work_started_from_another_caller_and_thread(caller: Caller) -> None:
    """Calls between two callers of different backends, and from a plain thread."""
    other = Caller.start_new("trio" if caller.backend == "asyncio" else "asyncio", "other")
    try:

        async def relay() -> object:
            return await caller.call_soon(sleep_then, 0.01, caller.backend)

        assert other.call_soon(relay).result(WAIT) == caller.backend
        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.append(other.call_soon(relay).result(WAIT))
        )
        thread.start()
        thread.join(WAIT)
        assert results == [caller.backend]
    finally:
        other.stop().result(WAIT)


# -- call_using_backend: guest runs on the same thread, else a thread ----------------------
def _other(backend: str) -> str:
    return "trio" if backend == "asyncio" else "asyncio"


@pytest.mark.parametrize("outer", BACKENDS)
def test_call_using_backend_runs_on_the_same_thread(outer: str) -> None:
    import sniffio

    async def where() -> tuple[str, int]:
        await anyio.sleep(0.001)
        return sniffio.current_async_library(), threading.get_ident()

    async def main() -> tuple[tuple[str, int], str]:
        inner = await call_using_backend(_other(outer), where)  # type: ignore[arg-type]
        return inner, sniffio.current_async_library()

    (inner, ident), after = anyio.run(main, backend=outer)
    assert (inner, ident, after) == (_other(outer), threading.get_ident(), outer)


@pytest.mark.parametrize("outer", BACKENDS)
def test_call_using_backend_errors_cross_back(outer: str) -> None:
    async def fail() -> None:
        await anyio.sleep(0)
        raise LookupError("from the other side")

    async def main() -> None:
        await call_using_backend(_other(outer), fail)  # type: ignore[arg-type]

    with pytest.raises(LookupError, match="from the other side"):
        anyio.run(main, backend=outer)


@pytest.mark.parametrize("outer", BACKENDS)
def test_call_using_backend_cancellation_both_ways(outer: str) -> None:
    reached: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep(60)
        finally:
            reached.append("inner cancelled")

    async def cancels_itself() -> None:  # asyncio: the task cancels itself
        import asyncio

        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(60)

    async def main() -> bool:
        with anyio.move_on_after(0.05):  # the awaiting side is cancelled: so is the work
            await call_using_backend(_other(outer), forever)  # type: ignore[arg-type]
        if outer == "asyncio":
            return True  # trio work cannot cancel itself from outside a scope
        try:  # the work ends cancelled: the awaiting side hears of it
            await call_using_backend("asyncio", cancels_itself)
        except PendingCancelled:
            return True
        return False

    assert anyio.run(main, backend=outer) is True
    assert reached == ["inner cancelled"]


@pytest.mark.parametrize("outer", BACKENDS)
def test_call_using_backend_concurrent_calls(outer: str) -> None:
    """A second call while a guest run is busy on this thread goes to a thread."""
    import sniffio

    async def which(delay: float) -> tuple[str, bool]:
        await anyio.sleep(delay)
        same = threading.current_thread() is threading.main_thread()
        return sniffio.current_async_library(), same

    async def main() -> list[tuple[str, bool]]:
        results: list[tuple[str, bool]] = []

        async def one(delay: float) -> None:
            results.append(await call_using_backend(_other(outer), which, delay))  # type: ignore[arg-type]

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0.1)
            await anyio.sleep(0.02)
            tg.start_soon(one, 0.0)
        return results

    assert anyio.run(main, backend=outer) == [(_other(outer), False), (_other(outer), True)]


def test_call_using_backend_on_a_callers_thread(caller: Caller) -> None:
    import sniffio

    async def where() -> tuple[str, str]:
        await anyio.sleep(0.001)
        return sniffio.current_async_library(), threading.current_thread().name

    async def main() -> tuple[str, str]:
        return await call_using_backend(_other(caller.backend), where)  # type: ignore[arg-type]

    assert caller.call_soon(main).result(WAIT) == (_other(caller.backend), caller.thread.name)
