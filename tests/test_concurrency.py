"""The promise: the kernel never goes deaf while a cell awaits or blocks."""

from __future__ import annotations

import time

from conftest import TIMEOUT, collect_outputs, execute, execute_ok, shell_replies, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient


def awaiting_cell(backend: str, seconds: float) -> str:
    if backend == "trio":
        return f"import trio\nawait trio.sleep({seconds})\n'slept'"
    return f"import asyncio\nawait asyncio.sleep({seconds})\n'slept'"


def test_comm_message_resolves_an_awaiting_cell(kc: BlockingKernelClient, backend: str) -> None:
    """The deadlock of sequential kernels: a cell awaits what a comm message delivers."""
    setup = (
        "import comm, anyio\n"
        "delivered = anyio.Event() if False else None\n"
        "box = {}\n"
        "def on_open(c, msg):\n"
        "    def on_msg(m):\n"
        "        box['value'] = m['content']['data']['value']\n"
        "        box['event'].set()\n"
        "    c.on_msg(on_msg)\n"
        "comm.get_comm_manager().register_target('deliver', on_open)\n"
    )
    reply, _ = execute(kc, setup)
    assert reply["content"]["status"] == "ok"
    waiter = kc.execute("box['event'] = anyio.Event()\nawait box['event'].wait()\nbox['value'] * 2")
    # A cell queued behind the waiting one, before the comm messages: they must not wait for
    # it to start (it waits for the first cell, which waits for them).
    queued = kc.execute("'after'")
    time.sleep(0.2)
    comm_id = "c0ffee" + backend
    open_msg = kc.session.msg(
        "comm_open", {"comm_id": comm_id, "target_name": "deliver", "data": {}}
    )
    kc.shell_channel.send(open_msg)
    deliver = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"value": 21}})
    kc.shell_channel.send(deliver)
    reply = shell_reply(kc, waiter)
    assert reply["content"]["status"] == "ok"
    outputs = collect_outputs(kc, waiter)
    result = next(m for m in outputs if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert shell_reply(kc, queued)["content"]["status"] == "ok"


def test_shell_requests_answered_while_a_cell_awaits(
    kc: BlockingKernelClient, backend: str
) -> None:
    cell = kc.execute(awaiting_cell(backend, 3))
    time.sleep(0.2)
    requests = {
        "kernel_info": kc.kernel_info(),
        "complete": kc.complete("impo", 4),
        "inspect": kc.inspect("print", 5),
        "is_complete": kc.is_complete("for i in x:"),
        "history": kc.history(hist_access_type="tail", n=2),
        "comm_info": kc.comm_info(),
    }
    replies = shell_replies(kc, [*requests.values(), cell])  # in the order they came
    for name, msg_id in requests.items():
        assert replies[msg_id]["content"]["status"] in ("ok", "incomplete"), name
    assert list(replies)[-1] == cell, "every reply came before the cell ended"
    assert replies[cell]["content"]["status"] == "ok"


def test_executes_stay_in_order_while_one_awaits(kc: BlockingKernelClient, backend: str) -> None:
    first = kc.execute(awaiting_cell(backend, 0.5) + "\norder = ['first']")
    second = kc.execute("order.append('second'); order")
    assert shell_reply(kc, first)["content"]["status"] == "ok"
    assert shell_reply(kc, second)["content"]["status"] == "ok"
    outputs = collect_outputs(kc, second)
    result = next(m for m in outputs if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "['first', 'second']"


def test_a_burst_of_requests_keeps_its_order(kc: BlockingKernelClient) -> None:
    """Shell is read by the I/O thread and by the free main loop, whoever comes first; each
    delivers its batch whole, so a burst mixing cells and other requests keeps its order."""
    execute(kc, "seen = []")
    sent = []
    for i in range(300):
        sent.append(kc.execute(f"seen.append({i})"))
        if i % 7 == 0:
            kc.kernel_info()
    shell_reply(kc, sent[-1])
    outputs = execute_ok(kc, "seen == list(range(300))")
    results = [m["content"]["data"]["text/plain"] for m in outputs if "data" in m["content"]]
    assert results == ["True"]


def test_control_answers_while_main_thread_blocks(kc: BlockingKernelClient) -> None:
    cell = kc.execute("import time; time.sleep(2)")
    time.sleep(0.2)
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    started = time.monotonic()
    reply = kc.control_channel.get_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["protocol_version"] == "5.5"
    assert time.monotonic() - started < 1.0
    assert shell_reply(kc, cell)["content"]["status"] == "ok"


def test_heartbeat_answers_while_python_spins(kernel) -> None:
    km, kc = kernel
    cell = kc.execute(
        "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass"
    )
    time.sleep(0.3)
    assert kc.hb_channel.is_beating()
    assert km.is_alive()
    assert shell_reply(kc, cell)["content"]["status"] == "ok"


def test_status_parent_is_right_for_concurrent_requests(
    kc: BlockingKernelClient, backend: str
) -> None:
    cell = kc.execute(awaiting_cell(backend, 0.5))
    info = kc.kernel_info()
    shell_reply(kc, info)
    seen: dict[str, list[str]] = {cell: [], info: []}
    idle = set()
    deadline = time.monotonic() + TIMEOUT
    while idle != {cell, info} and time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        parent = msg["parent_header"].get("msg_id")
        if parent in seen and msg["msg_type"] == "status":
            state = msg["content"]["execution_state"]
            seen[parent].append(state)
            if state == "idle":
                idle.add(parent)
    assert seen[cell] == ["busy", "idle"]
    assert seen[info] == ["busy", "idle"]
    shell_reply(kc, cell)
