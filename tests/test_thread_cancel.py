"""Pending.cancel() reaching a plain function on a to_thread worker (issue 19).

The function gets CancelledInThread raised in it; its Pending is cancelled; the worker
survives and takes the next job; and a function that ended just as cancel() came is never
hit afterwards (nor is the pool's code, nor the next job).
"""

from __future__ import annotations

import contextlib
import gc
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import BACKENDS

from async_kernel import Caller, PendingCancelled, current_pending
from async_kernel.toolkit.thread_cancel import CancelledInThread, StoppableCall, can_stop_threads
from async_kernel.toolkit.workers import POOL

WAIT = 5  # seconds any single wait in these tests may take

pytestmark = pytest.mark.skipif(not can_stop_threads(), reason="needs PyThreadState_SetAsyncExc")


@pytest.fixture(params=BACKENDS)
def caller(request: pytest.FixtureRequest) -> Iterator[Caller]:
    started = Caller.start_new(request.param, f"thread-cancel-{request.param}")
    yield started
    started.stop()
    assert started.join(WAIT)


def wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def pool_quiet() -> bool:
    """Every worker is back waiting for a job (none died holding its count)."""
    return POOL.idle == POOL.workers and POOL.backlog == 0


def runs_again_on(ident: int, caller: Caller) -> bool:
    """Whether the worker thread ``ident`` takes a job again: give every idle worker one
    (each blocks until all have started, so none can take two) and see who ran them."""
    assert wait_until(pool_quiet)
    count = max(1, POOL.idle)
    barrier = threading.Barrier(count, timeout=WAIT)

    def who() -> int:
        barrier.wait()
        return threading.get_ident()

    pendings = [caller.to_thread(who) for _ in range(count)]
    return ident in {pending.result(WAIT) for pending in pendings}


class Stoppable:
    """A function for to_thread that says where it ran, that it started, how it ended."""

    def __init__(self, body: Callable[[], Any]) -> None:
        self.body = body
        self.started = threading.Event()
        self.ended = threading.Event()
        self.ident = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> Any:
        self.ident = threading.get_ident()
        self.started.set()
        try:
            return self.body()
        except BaseException as err:
            self.raised.append(err)
            raise
        finally:
            self.ended.set()


def spin(n: int) -> int:
    """Pure-Python work: n turns of a loop (where a pending exception is raised)."""
    total = 0
    for i in range(n):
        total += i
    return total


def sleep_loop() -> None:
    while True:
        with contextlib.suppress(Exception):  # swallows errors, not the cancellation
            time.sleep(0.01)


def busy_loop() -> None:
    count = 0
    while True:
        count += 1


@pytest.mark.parametrize("body", [sleep_loop, busy_loop], ids=["sleep-loop", "busy-loop"])
def test_cancel_stops_a_plain_function_on_a_worker(caller: Caller, body: Callable[[], Any]) -> None:
    work = Stoppable(body)
    pending = caller.to_thread(work)
    assert work.started.wait(WAIT)
    assert pending.cancel()
    assert pending.cancelled()
    with pytest.raises(PendingCancelled):
        pending.result(WAIT)
    assert work.ended.wait(WAIT), "the function went on running"
    assert len(work.raised) == 1 and isinstance(work.raised[0], CancelledInThread)
    assert runs_again_on(work.ident, caller), "the worker did not take another job"


def test_cancel_before_the_function_starts_never_runs_it(caller: Caller) -> None:
    gate = threading.Event()
    limit, Caller.thread_limit = Caller.thread_limit, 1
    try:
        assert wait_until(pool_quiet)
        blockers = [caller.to_thread(gate.wait, WAIT) for _ in range(max(1, POOL.workers))]
        ran: list[int] = []
        queued = caller.to_thread(ran.append, 1)  # waits in the backlog
        assert queued.cancel()
        gate.set()
        for blocker in blockers:
            assert blocker.result(WAIT) is True
        assert wait_until(pool_quiet)
        assert queued.cancelled() and ran == []
    finally:
        Caller.thread_limit = limit
        gate.set()


def test_a_function_cancelling_its_own_pending_is_not_interrupted(caller: Caller) -> None:
    def cancel_myself() -> str:
        pending = current_pending()
        assert pending is not None
        pending.cancel()
        spin(100_000)  # would be hit here if an exception had been sent
        return "finished"

    pending = caller.to_thread(cancel_myself)
    with pytest.raises(PendingCancelled):
        pending.result(WAIT)
    assert wait_until(pool_quiet)


@pytest.mark.usefixtures("fast_switching")
def test_cancel_racing_the_end_of_the_function_never_hits_the_pool(caller: Caller) -> None:
    """cancel() at every moment around a short function's end: the Pending ends with the
    result or cancelled, the next job on any worker is never hit, no worker dies."""
    rng = random.Random(19)
    outcomes = {"result": 0, "cancelled": 0}

    def next_job() -> str:
        spin(2_000)  # Python bytecodes where a stray exception would land
        return "clean"

    for _ in range(300):
        n = rng.randrange(0, 3_000)
        pending = caller.to_thread(spin, n)
        spin(rng.randrange(0, 3_000))
        pending.cancel()
        try:
            assert pending.result(WAIT) == n * (n - 1) // 2
            outcomes["result"] += 1
        except PendingCancelled:
            outcomes["cancelled"] += 1
        assert caller.to_thread(next_job).result(WAIT) == "clean"
    assert wait_until(pool_quiet), f"a worker died: {POOL.workers} workers, {POOL.idle} idle"
    assert sum(outcomes.values()) == 300
    print("cancel racing to_thread's end:", outcomes)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads take turns holding the GIL every microsecond, so the races really happen."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


class StopRace:
    """Two spinning threads: this one runs StoppableCalls one after another, a stopper
    thread stops each after a random spin.  Each function first tells the stopper it has
    begun and waits to hear back, so the race starts with both threads running: on a loaded
    machine one thread could otherwise finish whole calls before the other is scheduled
    (seen: no stop at all in 737 calls beside the suite).  Then the function spins a while
    ("anywhere") or returns at once ("at-the-end").  Neither blocks to hand over (so their
    bytecodes interleave); a wait longer than the deadline is a hang."""

    def __init__(self, aim: str, rounds: int, budget: float) -> None:
        self.aim = aim
        rng = random.Random(22)
        self.delays = [
            rng.randrange(0, 2_000 if aim == "anywhere" else 5_000) for _ in range(rounds)
        ]
        self.sizes = [rng.randrange(0, 2_000) for _ in range(rounds)]
        self.budget = time.monotonic() + budget  # no new round after this
        self.deadline = self.budget + 2 * WAIT
        self.calls: list[StoppableCall] = []
        self.entered: list[int] = []
        self.told: list[int] = []
        self.acted: list[int] = []
        self.over = False

    def until(self, done: Callable[[], bool]) -> bool:
        while not done():
            if self.over or time.monotonic() > self.deadline:
                return False
        return True

    def function(self, round_: int, n: int) -> int:
        self.entered.append(round_)
        assert self.until(lambda: len(self.told) > round_), "the stopper fell silent"
        return spin(n if self.aim == "anywhere" else n % 10)

    def stopper(self) -> None:
        for round_, delay in enumerate(self.delays):
            if not self.until(lambda: len(self.calls) > round_):  # noqa: B023 - used at once
                return
            if not self.until(lambda: len(self.entered) > round_):  # noqa: B023
                return
            self.told.append(round_)
            spin(delay)
            self.calls[round_].stop()
            self.acted.append(round_)

    def run(self) -> tuple[dict[str, int], list[BaseException]]:
        outcomes = {"stopped": 0, "returned": 0, "sent as it returned": 0}
        strays: list[BaseException] = []
        thread = threading.Thread(target=self.stopper, name="test-stopper", daemon=True)
        thread.start()
        for round_, n in enumerate(self.sizes):
            if time.monotonic() > self.budget:
                break
            call = StoppableCall()
            try:
                self.calls.append(call)
                try:
                    value = call.call(self.function, (round_, n))
                except CancelledInThread:
                    outcomes["stopped"] += 1
                else:
                    assert value == spin(n if self.aim == "anywhere" else n % 10)
                    outcomes["returned"] += 1
                    if call._sent:  # absorbed in the closing lines, or withdrawn
                        outcomes["sent as it returned"] += 1
                # After the call: a stray would be raised here.
                assert self.until(lambda: len(self.acted) > round_), "the stopper fell silent"  # noqa: B023
            except CancelledInThread as err:
                strays.append(err)
        self.over = True
        thread.join(WAIT)
        return outcomes, strays


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize("aim", ["anywhere", "at-the-end"])
def test_stoppable_call_race_never_lands_outside_the_call(aim: str) -> None:
    """StoppableCall alone, thousands of times: an exception raised anywhere but inside the
    call's function is a stray.  "at-the-end" sends it as the function returns, the window
    the closing lines guard.  On a loaded machine spinning is slow: the rounds stop after a
    budget of time, however many were done."""
    outcomes, strays = StopRace(aim, rounds=2_000, budget=2 * WAIT).run()
    print(f"stop racing the end of a call ({aim}):", outcomes)
    assert strays == []
    assert outcomes["stopped"] + outcomes["sent as it returned"] > 0, outcomes


def test_pending_of_a_c_call_is_cancelled_at_once(caller: Caller) -> None:
    """A call into C that does not come back to Python (a lock's acquire) is not stopped
    before it returns; its waiters are released at once all the same."""
    lock = threading.Lock()
    lock.acquire()
    work = Stoppable(lambda: lock.acquire(timeout=WAIT))
    pending = caller.to_thread(work)
    assert work.started.wait(WAIT)
    assert pending.cancel()
    assert pending.cancelled()
    assert not work.ended.is_set()  # still inside the C call
    lock.release()
    assert work.ended.wait(WAIT)
    assert wait_until(pool_quiet)


class SwallowingSideCode:
    """Python code that runs "on the side" of a function and whose exceptions Python
    swallows (reports as unraisable): a ``__del__`` or a gc callback.  Each run spins until
    told a stop was sent, so the stop lands inside it, never in the function itself."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.sent = threading.Event()
        self.runs = 0

    def run(self) -> None:
        self.runs += 1
        self.inside.set()
        deadline = time.monotonic() + WAIT
        while not self.sent.is_set() and time.monotonic() < deadline:
            pass
        spin(10_000)  # bytecodes after the send: the exception is raised in here

    def function(self, where: str) -> str:
        """Run the side code once per loop until stopped (or, unfixed, give up)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if where == "__del__":
                Finalized(self)  # deleted at once: its __del__ runs here
            else:
                gc.collect()  # the callbacks run here
            if self.sent.is_set() and self.runs > 1:
                time.sleep(0.01)  # a gap where a stop sent again may land
        return "ran on"


class Finalized:
    def __init__(self, side: SwallowingSideCode) -> None:
        self.side = side

    def __del__(self) -> None:
        self.side.run()


@pytest.mark.parametrize("where", ["__del__", "gc callback"])
def test_a_stop_swallowed_by_side_code_is_sent_again(where: str) -> None:
    """A stop raised in a ``__del__`` or gc callback is swallowed there by Python (seen: a
    Hypothesis gc callback in this suite's own race test); the call is stopped all the same,
    and nothing is reported as an unraisable error."""
    side = SwallowingSideCode()
    unraisable: list[Any] = []
    call = StoppableCall()
    callback = lambda phase, info: side.run() if phase == "start" else None  # noqa: E731
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    if where == "gc callback":
        gc.callbacks.append(callback)
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call.call(side.function, (where,)))
        except CancelledInThread as err:
            outcome.append(err)

    thread = threading.Thread(target=target, name="test-swallowed-stop", daemon=True)
    try:
        thread.start()
        assert side.inside.wait(WAIT)
        assert call.stop()
        side.sent.set()
        thread.join(2 * WAIT)
    finally:
        if where == "gc callback":
            gc.callbacks.remove(callback)
        sys.unraisablehook = hook
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledInThread), outcome
    assert unraisable == []


def test_a_stop_waits_for_the_function_to_leave_kernel_code() -> None:
    """Stopped while its ``print`` waits in the kernel's output stream (for the stream's
    lock), the function is not hit there: the stop lands once it is back in its own code,
    and what it wrote is whole (buffered, its flush scheduled)."""
    from test_thread_interrupts import Transport  # records flushes asked for, sends nothing

    from async_kernel.shell.iostream import OutStream

    transport = Transport()
    stream = OutStream("stdout", transport)  # pyright: ignore[reportArgumentType]
    outcome: list[str] = []
    in_write = threading.Event()

    def fn() -> None:
        try:
            in_write.set()
            stream.write("progress\n")  # waits for the stream's lock: in kernel code
        except CancelledInThread:
            outcome.append("stopped inside the kernel's write")
            raise
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            time.sleep(0.001)  # the function's own code
        outcome.append("never stopped")

    call = StoppableCall()
    assert stream._lock.acquire(timeout=WAIT)  # pyright: ignore[reportPrivateUsage]
    result: list[BaseException] = []

    def worker() -> None:
        try:
            call.call(fn, ())
        except CancelledInThread as err:
            result.append(err)

    thread = threading.Thread(target=worker)
    try:
        thread.start()
        assert in_write.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while sys._current_frames()[thread.ident or 0].f_code is not OutStream.write.__code__:  # pyright: ignore[reportPrivateUsage]
            assert time.monotonic() < deadline, "the function never waited in the write"
            time.sleep(0.001)
        assert call.stop()  # to be sent once the thread has left the write
        time.sleep(0.05)
        assert thread.is_alive() and not outcome and not result
    finally:
        stream._lock.release()  # pyright: ignore[reportPrivateUsage]
    thread.join(WAIT + 1)
    assert not thread.is_alive()
    assert outcome == [] and len(result) == 1  # stopped in its own code, after the write
    assert [parts for _, parts in stream._chunks] == [["progress\n"]]  # pyright: ignore[reportPrivateUsage]
