"""The router in-process: a CallbackKernel on the test's own loop, on both backends.

No sockets, no subprocess: the host is this test.  The callback kernel runs single-threaded
(control on the main loop, no subshells, no responder thread), so routing there means:
executes one at a time in arrival order; requests that only read answered while a cell
awaits; comm messages in order on the main loop, before a cell that came after them;
``# task`` and ``# thread`` cells as tasks; interrupts and stop_on_error on the queue.

Every session ends with the protocol's invariants checked for every request sent (see
:meth:`Host.check_invariants`): one busy and one idle with that request as parent, its one
reply between them, on its own channel, with its header as parent.

Cells wait on :class:`anyio.Event` objects put into the user namespace (``gate``): the
test, on the same loop, sets them when it has seen what it needs, so order is causal, not
timed.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from async_kernel.kernel.callback import CallbackKernel
from async_kernel.kernel.router import cell_mode
from async_kernel.parent import Request
from async_kernel.shell.interactive import AsyncShell

BACKENDS = ["asyncio", "trio"]
STEP = 10.0  # seconds any one wait may take

Msg = dict[str, Any]


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


def make(msg_type: str, content: Msg, metadata: Msg | None = None, **header: Any) -> Msg:
    head = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": "router-test",
        "username": "host",
        "date": "2025-01-01T00:00:00Z",
        "version": "5.5",
        **header,
    }
    return {"header": head, "parent_header": {}, "metadata": metadata or {}, "content": content}


class Host:
    """The frontend: sends messages, records what comes back, waits for it by events."""

    def __init__(self, backend: str) -> None:
        self.seen: list[tuple[str, Msg]] = []
        self.sent: list[tuple[str, Msg]] = []
        self._changed = anyio.Event()
        self.interface = CallbackKernel(self._on_message, backend=backend)

    def _on_message(self, channel: str, msg: Msg) -> None:
        assert threading.current_thread() is threading.main_thread()  # the host's thread
        self.seen.append((channel, msg))
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    @property
    def ns(self) -> dict[str, Any]:
        return self.interface.kernel.shell.user_ns

    # -- sending -------------------------------------------------------------------------
    def send(
        self, msg_type: str, content: Msg | None = None, channel: str = "shell", **kw: Any
    ) -> str:
        msg = make(msg_type, content or {}, **kw)
        self.sent.append((channel, msg))
        self.interface.receive(msg, channel)
        return msg["header"]["msg_id"]

    def execute(self, code: str, **content: Any) -> str:
        return self.send("execute_request", {"code": code, "silent": False, **content})

    # -- looking ---------------------------------------------------------------------------
    def of(self, msg_id: str) -> list[tuple[str, Msg]]:
        return [(c, m) for c, m in self.seen if m["parent_header"].get("msg_id") == msg_id]

    def index(self, msg_id: str, what: str) -> int:
        """Where in ``seen`` the reply ('reply'), busy or idle of ``msg_id`` is."""
        for i, (channel, msg) in enumerate(self.seen):
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if what == "reply" and channel != "iopub":
                return i
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == what:
                return i
        raise LookupError(f"no {what} for {msg_id}")

    def has(self, msg_id: str, what: str) -> bool:
        try:
            self.index(msg_id, what)
        except LookupError:
            return False
        return True

    def reply_now(self, msg_id: str) -> Msg | None:
        return next((m for c, m in self.of(msg_id) if c != "iopub"), None)

    def iopub(self, msg_id: str, msg_type: str) -> list[Msg]:
        return [
            m["content"] for c, m in self.of(msg_id) if c == "iopub" and m["msg_type"] == msg_type
        ]

    # -- waiting ---------------------------------------------------------------------------
    async def until(self, predicate: Callable[[], bool], timeout: float = STEP) -> None:
        """Wait, message by message, until ``predicate()`` holds."""
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    async def reply(self, msg_id: str) -> Msg:
        await self.until(lambda: self.has(msg_id, "reply"))
        reply = self.reply_now(msg_id)
        assert reply is not None
        return reply

    async def done(self, msg_id: str) -> Msg | None:
        """Wait for ``msg_id``'s idle; its reply (None for a comm message)."""
        await self.until(lambda: self.has(msg_id, "idle"))
        return self.reply_now(msg_id)

    async def started(self, msg_id: str) -> None:
        """Wait until the cell ``msg_id`` runs (its execute_input is out)."""
        await self.until(lambda: bool(self.iopub(msg_id, "execute_input")))

    async def quiet(self) -> None:
        """Wait until every request sent so far has its idle."""
        await self.until(lambda: all(self.has(m["header"]["msg_id"], "idle") for _, m in self.sent))

    # -- the protocol's invariants ---------------------------------------------------------
    def check_invariants(self) -> None:
        """Each request: one busy, one idle, its one reply between them, right parent."""
        for channel, msg in self.sent:
            header = msg["header"]
            msg_id, msg_type = header["msg_id"], header["msg_type"]
            mine = self.of(msg_id)
            states = [m["content"]["execution_state"] for c, m in mine if m["msg_type"] == "status"]
            assert states == ["busy", "idle"], (msg_type, states)
            assert mine[0][1]["msg_type"] == "status", (msg_type, "busy is not first")
            assert mine[-1][1]["msg_type"] == "status", (msg_type, "idle is not last")
            for _, m in mine:
                assert m["parent_header"] == header, (msg_type, m["parent_header"])
            replies = [(c, m) for c, m in mine if c != "iopub"]
            if not msg_type.endswith("_request"):
                assert replies == [], (msg_type, replies)
                continue
            assert len(replies) == 1, (msg_type, replies)
            reply_channel, reply = replies[0]
            assert reply_channel == channel, (msg_type, reply_channel)
            assert reply["msg_type"] == msg_type.removesuffix("_request") + "_reply"


@asynccontextmanager
async def serving(backend: str) -> AsyncIterator[Host]:
    """A CallbackKernel served on this loop; stopped, undone and checked afterwards."""
    sigint = signal.getsignal(signal.SIGINT)
    host = Host(backend)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.interface.run)
            await host.reply(host.send("kernel_info_request"))  # the shell exists
            yield host
            await host.quiet()
            host.interface.stop()
        host.check_invariants()
    finally:
        # What a kernel takes over for the whole process: the next test's kernel needs its
        # own shell, and pytest its own Ctrl-C.
        signal.signal(signal.SIGINT, sigint)
        AsyncShell.clear_instance()


def run(backend: str, scenario: Callable[[Host], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(30):
            async with serving(backend) as host:
                await scenario(host)

    anyio.run(main, backend=backend)


def gates(host: Host, *names: str) -> list[anyio.Event]:
    """Events in the user namespace, for cells to await and the test to set."""
    events = [anyio.Event() for _ in names]
    host.ns.update(zip(names, events, strict=True))
    return events


def text_of(host: Host, msg_id: str) -> str:
    results = host.iopub(msg_id, "execute_result")
    assert len(results) == 1, host.of(msg_id)
    return results[0]["data"]["text/plain"]


# -- executes -------------------------------------------------------------------------------
def test_executes_run_one_at_a_time_in_arrival_order(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        (gate,) = gates(host, "gate")
        host.ns["order"] = []
        first = host.execute("order.append('a')\nawait gate.wait()\norder.append('a done')")
        await host.started(first)
        later = [host.execute(f"order.append({n})") for n in range(5)]
        # The queued cells wait: a request answered after they came shows none has begun.
        await host.reply(host.send("kernel_info_request"))
        assert not any(host.of(msg_id) for msg_id in later)
        gate.set()
        for msg_id in later:
            assert (await host.reply(msg_id))["content"]["status"] == "ok"
        assert host.ns["order"] == ["a", "a done", 0, 1, 2, 3, 4]
        ends = [host.index(m, "idle") for m in [first, *later]]
        starts = [host.index(m, "busy") for m in [first, *later]]
        assert all(end < start for end, start in zip(ends, starts[1:], strict=False))

    run(backend_name, scenario)


ASKS = [
    ("kernel_info_request", {}),
    ("complete_request", {"code": "import o", "cursor_pos": 8}),
    ("inspect_request", {"code": "len", "cursor_pos": 3}),
    ("is_complete_request", {"code": "for x in y:"}),
    ("history_request", {"hist_access_type": "tail", "n": 2, "output": False, "raw": True}),
    ("comm_info_request", {}),
]


def test_asks_are_answered_while_a_cell_awaits(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        (gate,) = gates(host, "gate")
        cell = host.execute("await gate.wait()")
        await host.started(cell)
        asks = [host.send(t, c) for t, c in ASKS]
        asks.append(host.send("kernel_info_request", channel="control"))
        for msg_id in asks:
            reply = await host.done(msg_id)
            assert reply is not None and reply["content"]["status"] != "error", reply
        assert not host.has(cell, "reply")  # every answer came before the cell ended
        complete = host.reply_now(asks[1])
        assert complete is not None and "os" in complete["content"]["matches"]
        is_complete = host.reply_now(asks[3])
        assert is_complete is not None and is_complete["content"]["status"] == "incomplete"
        gate.set()
        assert (await host.reply(cell))["content"]["status"] == "ok"

    run(backend_name, scenario)


# -- comms ----------------------------------------------------------------------------------
REGISTER_RECORDER = """\
import threading
from comm import get_comm_manager
comm_log = []
def recorder(comm, msg):
    comm_log.append(("open", msg["content"]["data"], threading.get_ident()))
    def on_msg(m):
        comm_log.append(("msg", m["content"]["data"], threading.get_ident()))
        box.update(m["content"]["data"])
        arrived.set()
    comm.on_msg(on_msg)
get_comm_manager().register_target("recorder", recorder)
"""


async def register_recorder(host: Host) -> anyio.Event:
    (arrived,) = gates(host, "arrived")
    host.ns["box"] = {}
    assert (await host.reply(host.execute(REGISTER_RECORDER)))["content"]["status"] == "ok"
    return arrived


def comm_open(host: Host, comm_id: str) -> str:
    content = {"comm_id": comm_id, "target_name": "recorder", "data": {"opened": comm_id}}
    return host.send("comm_open", content)


def test_comm_open_then_msgs_in_order_on_the_main_loop(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        await register_recorder(host)
        sent = [comm_open(host, "c1")]
        sent += [host.send("comm_msg", {"comm_id": "c1", "data": {"n": n}}) for n in range(20)]
        for msg_id in sent:
            assert await host.done(msg_id) is None  # comm messages get no reply
        main = threading.get_ident()
        assert host.ns["comm_log"] == [
            ("open", {"opened": "c1"}, main),
            *[("msg", {"n": n}, main) for n in range(20)],
        ]
        idles = [host.index(m, "idle") for m in sent]
        assert idles == sorted(idles)
        info = await host.reply(host.send("comm_info_request", {"target_name": "recorder"}))
        assert info["content"]["comms"] == {"c1": {"target_name": "recorder"}}

    run(backend_name, scenario)


def test_a_cell_awaiting_what_a_comm_delivers_finishes(backend_name: str) -> None:
    """The deadlock case: the comm message must get through while the cell awaits."""

    async def scenario(host: Host) -> None:
        arrived = await register_recorder(host)
        cell = host.execute("await arrived.wait()\nbox['v'] * 2")
        await host.started(cell)
        opened = comm_open(host, "c2")
        msg = host.send("comm_msg", {"comm_id": "c2", "data": {"v": 21}})
        assert (await host.reply(cell))["content"]["status"] == "ok"
        assert arrived.is_set()
        assert text_of(host, cell) == "42"
        assert host.index(opened, "idle") < host.index(msg, "busy")
        assert host.index(msg, "idle") < host.index(cell, "reply")

    run(backend_name, scenario)


def test_a_comm_that_came_before_a_cell_is_handled_before_it(backend_name: str) -> None:
    """Both queues woken at once (trio picks either first): the comm still goes first."""

    async def scenario(host: Host) -> None:
        await register_recorder(host)
        await host.done(comm_open(host, "c3"))
        for n in range(15):
            # No await between the two: the loop sees both at once.
            msg = host.send("comm_msg", {"comm_id": "c3", "data": {"v": n}})
            cell = host.execute("box['v']")
            await host.done(cell)
            assert text_of(host, cell) == str(n)
            assert host.index(msg, "idle") < host.index(cell, "busy")

    run(backend_name, scenario)


def test_a_comm_behind_a_blocking_cell_runs_before_the_next_cell(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        await register_recorder(host)
        await host.done(comm_open(host, "c4"))
        sent: dict[str, str] = {}

        def arrive() -> None:  # called by the cell: the host sends while the loop is held
            sent["msg"] = host.send("comm_msg", {"comm_id": "c4", "data": {"v": "comm"}})
            sent["second"] = host.execute("box['v']")

        host.ns["arrive"] = arrive
        first = host.execute("arrive()\nbox['v'] = 'first'")  # no await: holds the loop
        await host.done(first)
        await host.done(sent["second"])
        assert text_of(host, sent["second"]) == "'comm'"
        assert host.index(first, "idle") < host.index(sent["msg"], "busy")
        assert host.index(sent["msg"], "idle") < host.index(sent["second"], "busy")

    run(backend_name, scenario)


def test_a_comm_that_came_after_a_queued_cell_is_handled_after_it(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        host.ns["box"], host.ns["arrived"] = {}, anyio.Event()
        # No await between them: both wait for the free loop together, in this order.
        register = host.execute(REGISTER_RECORDER)
        opened = comm_open(host, "c5")
        await host.done(register)
        await host.done(opened)
        assert host.ns["comm_log"] == [("open", {"opened": "c5"}, threading.get_ident())]

    run(backend_name, scenario)


# -- errors -----------------------------------------------------------------------------------
def test_unknown_type_and_malformed_content_get_error_replies(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        unknown = await host.reply(host.send("bogus_request", {"x": 1}))
        assert unknown["msg_type"] == "bogus_reply"
        assert unknown["content"]["status"] == "error"
        assert unknown["content"]["ename"] == "UnknownMessageType"
        on_control = host.send("bogus_request", channel="control")
        assert (await host.reply(on_control))["content"]["ename"] == "UnknownMessageType"
        for msg_type, content in [
            ("execute_request", {"code": 5}),
            ("execute_request", {}),
            ("complete_request", {"code": "x", "cursor_pos": "1"}),
            ("inspect_request", {"code": None}),
            ("history_request", {"n": True}),
        ]:
            reply = await host.reply(host.send(msg_type, content))
            assert reply["content"]["status"] == "error", (msg_type, content)
            assert reply["content"]["ename"] == "InvalidRequest", reply["content"]
        # A malformed comm message is dropped (no reply to give); the kernel serves on.
        await host.done(host.send("comm_msg", {"comm_id": 7}))
        with pytest.raises(ValueError, match="header"):
            host.interface.receive({"content": {}})  # refused by the transport itself
        ok = await host.reply(host.execute("1 + 1"))
        assert ok["content"]["status"] == "ok"

    run(backend_name, scenario)


def test_unknown_subshell_gets_an_error_reply(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        reply = await host.reply(host.send("execute_request", {"code": "1"}, subshell_id="nope"))
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "SubshellNotFound"

    run(backend_name, scenario)


# -- task and thread cells --------------------------------------------------------------------
def test_task_and_thread_cells_run_concurrently_as_tasks(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        task_gate, thread_gate = gates(host, "task_gate", "thread_gate")
        task = host.execute("# task\nimport threading\nawait task_gate.wait()\n'task'")
        thread = host.execute("# thread\nimport threading\nawait thread_gate.wait()\n'thread'")
        tagged = host.send(
            "execute_request",
            {"code": "await task_gate.wait()\n'tagged'"},
            metadata={"tags": ["task"]},
        )
        await host.started(task)
        await host.started(thread)
        await host.started(tagged)
        # A queued cell is not held up by the tasks that await.
        queued = host.execute("import threading\nthreading.get_ident()")
        assert (await host.reply(queued))["content"]["status"] == "ok"
        assert not any(host.has(m, "reply") for m in (task, thread, tagged))
        assert text_of(host, queued) == str(threading.get_ident())  # the main loop
        thread_gate.set()
        await host.done(thread)
        assert text_of(host, thread) == "'thread'"
        assert not host.has(task, "reply")
        task_gate.set()
        await host.done(task)
        await host.done(tagged)
        assert text_of(host, task) == "'task'"
        assert text_of(host, tagged) == "'tagged'"
        # A '# thread' cell in single-thread mode runs on the main thread.
        on = await host.done(host.execute("# thread\nimport threading\nthreading.get_ident()"))
        assert on is not None and on["content"]["status"] == "ok"
        assert text_of(host, on["parent_header"]["msg_id"]) == str(threading.get_ident())

    run(backend_name, scenario)


# -- interrupts and stop_on_error -------------------------------------------------------------
@pytest.mark.parametrize("how", ["interface", "interrupt_request"])
def test_interrupt_cancels_an_awaiting_cell_and_the_next_runs(backend_name: str, how: str) -> None:
    async def scenario(host: Host) -> None:
        (never,) = gates(host, "never")
        cell = host.execute("await never.wait()")
        await host.started(cell)
        if how == "interface":
            host.interface.interrupt()
        else:
            interrupt = await host.reply(host.send("interrupt_request", channel="control"))
            assert interrupt["content"]["status"] == "ok"
        reply = await host.reply(cell)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert not never.is_set()
        after = await host.reply(host.execute("'after'"))
        assert after["content"]["status"] == "ok"
        assert text_of(host, after["parent_header"]["msg_id"]) == "'after'"

    run(backend_name, scenario)


def test_interrupt_aborts_the_cells_queued_behind(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        gates(host, "never")
        cell = host.execute("await never.wait()")
        await host.started(cell)
        queued = host.execute("'queued'")
        host.interface.interrupt()
        assert (await host.reply(cell))["content"]["ename"] == "KeyboardInterrupt"
        assert (await host.reply(queued))["content"]["status"] == "aborted"

    run(backend_name, scenario)


def test_stop_on_error_aborts_the_queued_executes(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        (gate,) = gates(host, "gate")
        failing = host.execute("await gate.wait()\n1 / 0")
        await host.started(failing)
        queued = [host.execute(f"ran = {n}") for n in range(3)]
        asked = host.send("kernel_info_request")  # not an execute: not aborted
        await host.reply(asked)
        gate.set()
        assert (await host.reply(failing))["content"]["ename"] == "ZeroDivisionError"
        for msg_id in queued:
            assert (await host.reply(msg_id))["content"]["status"] == "aborted"
            assert not host.iopub(msg_id, "execute_input")
        assert "ran" not in host.ns
        # Without stop_on_error the next cell runs; after the abort, new cells run.
        tolerant = host.execute("await gate.wait()\n1 / 0", stop_on_error=False)
        kept = host.execute("ran = 'kept'")
        assert (await host.reply(tolerant))["content"]["status"] == "error"
        assert (await host.reply(kept))["content"]["status"] == "ok"
        assert host.ns["ran"] == "kept"

    run(backend_name, scenario)


def test_a_failing_task_cell_aborts_nothing(backend_name: str) -> None:
    async def scenario(host: Host) -> None:
        (gate,) = gates(host, "gate")
        blocker = host.execute("await gate.wait()")
        await host.started(blocker)
        queued = host.execute("'queued'")
        failing = host.execute("# task\n1 / 0")
        assert (await host.reply(failing))["content"]["status"] == "error"
        gate.set()
        assert (await host.reply(blocker))["content"]["status"] == "ok"
        assert (await host.reply(queued))["content"]["status"] == "ok"

    run(backend_name, scenario)


def test_messages_received_before_run_are_served_in_order(backend_name: str) -> None:
    async def main() -> None:
        sigint = signal.getsignal(signal.SIGINT)
        host = Host(backend_name)
        try:
            cells = [host.execute(f"early = {n}") for n in range(3)]
            info = host.send("kernel_info_request")
            async with anyio.create_task_group() as tg:
                tg.start_soon(host.interface.run)
                with anyio.fail_after(STEP):
                    await host.quiet()
                host.interface.stop()
            host.check_invariants()
            assert host.ns["early"] == 2
            starts = [host.index(m, "busy") for m in cells]
            assert starts == sorted(starts)
            assert host.reply_now(info) is not None
        finally:
            signal.signal(signal.SIGINT, sigint)
            AsyncShell.clear_instance()

    anyio.run(main, backend=backend_name)


# -- pieces without a kernel ------------------------------------------------------------------
def execute_msg(code: Any = None, tags: Any = None, **content: Any) -> Msg:
    if code is not None:
        content["code"] = code
    metadata = {} if tags is None else {"tags": tags}
    return make("execute_request", content, metadata)


@pytest.mark.parametrize(
    ("msg", "mode"),
    [
        (execute_msg("1 + 1"), "queue"),
        (execute_msg("# task\nawait x"), "task"),
        (execute_msg("# thread\nx"), "thread"),
        (execute_msg("# task"), "task"),
        (execute_msg("# thread   \nx"), "thread"),
        (execute_msg("#task\nx"), "queue"),
        (execute_msg("# tasks\nx"), "queue"),
        (execute_msg(" # task\nx"), "queue"),
        (execute_msg("x\n# task"), "queue"),
        (execute_msg("# a comment\n# task"), "queue"),
        (execute_msg("x", tags=["task"]), "task"),
        (execute_msg("x", tags=["thread"]), "thread"),
        (execute_msg("x", tags=["task", "thread"]), "thread"),
        (execute_msg("x", tags=["other"]), "queue"),
        (execute_msg("x", tags="task"), "queue"),
        (execute_msg("# task\nx", tags=["thread"]), "task"),
        (execute_msg(5), "queue"),
        (execute_msg(5, tags=["task"]), "task"),
        (execute_msg(), "queue"),
        ({"content": None, "metadata": None}, "queue"),
        ({}, "queue"),
    ],
)
def test_cell_mode(msg: Msg, mode: str) -> None:
    assert cell_mode(msg) == mode


def test_claim_is_exactly_once_across_threads() -> None:
    threads_n, rounds = 8, 200
    requests = [Request(make("kernel_info_request", {})) for _ in range(rounds)]
    wins: list[list[int]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(threads_n)

    def contend(me: int) -> None:
        for i, request in enumerate(requests):
            barrier.wait(STEP)  # all threads start each round together
            if request.claim():
                wins[i].append(me)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STEP)
    assert not any(thread.is_alive() for thread in threads)
    assert all(len(won) == 1 for won in wins), [won for won in wins if len(won) != 1]
    # Every thread tried every request (the barrier starts each round together); which
    # one wins is the scheduler's choice: on a loaded machine one thread may win them all.
    # Claimed stays claimed, also for the winner.
    assert not any(request.claim() for request in requests)


def test_claim_is_per_request() -> None:
    msg = make("kernel_info_request", {})
    first, second = Request(msg), Request(msg)
    assert first == second  # same message: equal, but claimed separately
    assert first.claim()
    assert second.claim()
    assert not first.claim()
