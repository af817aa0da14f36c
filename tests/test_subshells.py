"""Subshells (JEP 91), their namespaces, and '# task' / '# thread' cells, on real kernels."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    TIMEOUT,
    collect_outputs,
    shell_reply,
    start_kernel,
    stream_text,
    wait_for_stream,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.session import Session


def control(kc: BlockingKernelClient, msg_type: str, **content: Any) -> dict[str, Any]:
    """Send a control request and return its reply."""
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    while True:
        reply = kc.get_control_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


def create_subshell(kc: BlockingKernelClient, **content: Any) -> str:
    reply = control(kc, "create_subshell_request", **content)
    assert reply["msg_type"] == "create_subshell_reply"
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["subshell_id"]


def send_shell(
    kc: BlockingKernelClient,
    msg_type: str,
    subshell_id: str | None,
    metadata: dict[str, Any] | None = None,
    **content: Any,
) -> str:
    msg = kc.session.msg(msg_type, content, metadata=metadata)
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def execute_in(
    kc: BlockingKernelClient, subshell_id: str | None, code: str, **metadata: Any
) -> str:
    return send_shell(
        kc,
        "execute_request",
        subshell_id,
        metadata=metadata,
        code=code,
        silent=False,
        store_history=True,
        user_expressions={},
        allow_stdin=False,
        stop_on_error=True,
    )


def run_in(kc: BlockingKernelClient, subshell_id: str | None, code: str) -> tuple[dict, list]:
    msg_id = execute_in(kc, subshell_id, code)
    return shell_reply(kc, msg_id), collect_outputs(kc, msg_id)


def timed_run_in(
    kc: BlockingKernelClient, subshell_id: str | None, code: str
) -> tuple[dict[str, Any], str, float]:
    """Run ``code``; its reply, its msg_id and the seconds from sending to the reply."""
    start = time.monotonic()
    msg_id = execute_in(kc, subshell_id, code)
    reply = shell_reply(kc, msg_id)
    return reply, msg_id, time.monotonic() - start


def replies_for(kc: BlockingKernelClient, *msg_ids: str) -> dict[str, dict[str, Any]]:
    """The shell replies to all of ``msg_ids``, whatever order they come in."""
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(msg_ids):
        msg = kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") in msg_ids:
            found[msg["parent_header"]["msg_id"]] = msg
    return found


def test_lifecycle(kc: BlockingKernelClient) -> None:
    info = kc.kernel_info(reply=True, timeout=TIMEOUT)
    assert "kernel subshells" in info["content"]["supported_features"]
    sid = create_subshell(kc)
    assert sid in control(kc, "list_subshell_request")["content"]["subshell_id"]
    reply = control(kc, "delete_subshell_request", subshell_id=sid)
    assert reply["msg_type"] == "delete_subshell_reply"
    assert reply["content"]["status"] == "ok"
    assert sid not in control(kc, "list_subshell_request")["content"]["subshell_id"]
    again = control(kc, "delete_subshell_request", subshell_id=sid)
    assert again["content"]["status"] == "error"


def test_unknown_subshell_gets_an_error_reply(kc: BlockingKernelClient) -> None:
    reply, outputs = run_in(kc, "no-such-subshell", "1")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SubshellNotFound"
    assert [m["content"]["execution_state"] for m in outputs] == ["busy", "idle"]
    msg_id = send_shell(kc, "kernel_info_request", "no-such-subshell")
    assert shell_reply(kc, msg_id)["content"]["status"] == "error"


def test_subshell_answers_while_main_blocks(kc: BlockingKernelClient) -> None:
    sid = create_subshell(kc)
    try:
        blocked = execute_in(kc, None, "import time; time.sleep(2)")
        time.sleep(0.2)  # let the main shell start sleeping
        reply, msg_id, took = timed_run_in(kc, sid, "print('hi'); 6 * 7")
        assert reply["content"]["status"] == "ok"
        assert took < 1.0, f"the subshell waited for the main shell ({took:.2f} s)"
        assert reply["parent_header"]["subshell_id"] == sid
        outputs = collect_outputs(kc, msg_id)
        assert all(m["parent_header"]["subshell_id"] == sid for m in outputs)
        assert stream_text(outputs) == "hi\n"
        result = next(m for m in outputs if m["msg_type"] == "execute_result")
        assert result["content"]["data"]["text/plain"] == "42"
        states = [m["content"]["execution_state"] for m in outputs if m["msg_type"] == "status"]
        assert states == ["busy", "idle"]
        assert shell_reply(kc, blocked)["content"]["status"] == "ok"
        collect_outputs(kc, blocked)
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_subshell_answers_while_main_blocks_outside_any_request(kc: BlockingKernelClient) -> None:
    """The main loop reads shell itself while it has no request in hand; blocked there (a
    background callback of the user's), it must not hold up a subshell's request."""
    sid = create_subshell(kc)
    try:
        code = (
            "import time\n"
            "from async_kernel import Caller\n"
            "_blocker = Caller.current().call_later(0.2, time.sleep, 3)"
        )
        reply, _ = run_in(kc, None, code)
        assert reply["content"]["status"] == "ok"
        time.sleep(0.5)  # the main loop is now inside time.sleep(3), with no request in hand
        reply, msg_id, took = timed_run_in(kc, sid, "6 * 7")
        assert reply["content"]["status"] == "ok"
        assert took < 1.5, f"the subshell waited for the blocked main loop ({took:.2f} s)"
        collect_outputs(kc, msg_id)
        assert run_in(kc, None, "_blocker.result(0)")[0]["content"]["status"] == "ok"
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_namespaces(kc: BlockingKernelClient) -> None:
    run_in(kc, None, "where = 'main'")
    own = create_subshell(kc, user_ns="own")
    shared = create_subshell(kc)  # the default, as in JupyterLab and ipykernel: shared
    try:
        _, outputs = run_in(kc, own, "print('where' in globals()); where = 'own'")
        assert stream_text(outputs) == "False\n"
        _, outputs = run_in(kc, shared, "print(where); get_ipython().user_ns is globals()")
        assert stream_text(outputs) == "main\n"
        _, outputs = run_in(kc, None, "print(where)")
        assert stream_text(outputs) == "main\n"
        _, outputs = run_in(kc, own, "print(where)")
        assert stream_text(outputs) == "own\n"
        bad = control(kc, "create_subshell_request", user_ns="nonsense")
        assert bad["content"]["status"] == "error"
    finally:
        control(kc, "delete_subshell_request", subshell_id=own)
        control(kc, "delete_subshell_request", subshell_id=shared)


def test_completion_and_inspection_see_the_subshells_namespace(kc: BlockingKernelClient) -> None:
    own = create_subshell(kc, user_ns="own")
    try:
        run_in(kc, own, "subshell_only_value = 12345")
        run_in(kc, None, "main_only_value = 678")

        def matches(subshell_id: str | None, code: str) -> list[str]:
            msg_id = send_shell(
                kc, "complete_request", subshell_id, code=code, cursor_pos=len(code)
            )
            return shell_reply(kc, msg_id)["content"]["matches"]

        def found(subshell_id: str | None, name: str) -> bool:
            msg_id = send_shell(
                kc, "inspect_request", subshell_id, code=name, cursor_pos=len(name), detail_level=0
            )
            return shell_reply(kc, msg_id)["content"]["found"]

        assert "subshell_only_value" in matches(own, "subshell_only_v")
        assert "main_only_value" not in matches(own, "main_only_v")
        assert "main_only_value" in matches(None, "main_only_v")
        assert "subshell_only_value" not in matches(None, "subshell_only_v")
        assert "bit_length" in " ".join(matches(own, "subshell_only_value.bit_l"))
        assert found(own, "subshell_only_value")
        assert not found(None, "subshell_only_value")
    finally:
        control(kc, "delete_subshell_request", subshell_id=own)


def test_subshell_runs_its_cells_in_order(kc: BlockingKernelClient) -> None:
    sid = create_subshell(kc)
    try:
        first = execute_in(kc, sid, "import anyio\nawait anyio.sleep(0.3)\norder = ['first']")
        second = execute_in(kc, sid, "order.append('second'); print(order)")
        assert shell_reply(kc, first)["content"]["status"] == "ok"
        assert shell_reply(kc, second)["content"]["status"] == "ok"
        assert stream_text(collect_outputs(kc, second)) == "['first', 'second']\n"
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_delete_cancels_a_running_cell(kc: BlockingKernelClient) -> None:
    sid = create_subshell(kc)
    running = execute_in(kc, sid, "import anyio\nawait anyio.sleep(30)")
    queued = execute_in(kc, sid, "1")
    time.sleep(0.3)
    start = time.monotonic()
    assert control(kc, "delete_subshell_request", subshell_id=sid)["content"]["status"] == "ok"
    assert time.monotonic() - start < 3
    replies = replies_for(kc, running, queued)
    assert replies[running]["content"]["status"] == "error"
    assert replies[running]["content"]["ename"] == "KeyboardInterrupt"
    assert replies[queued]["content"]["status"] == "aborted"
    reply, _ = run_in(kc, sid, "1")
    assert reply["content"]["ename"] == "SubshellNotFound"


@pytest.fixture
def release(tmp_path: Path) -> Generator[tuple[str, int]]:
    """A FIFO a cell blocks on (``os.read`` of one byte, a blocking C call, as
    ``time.sleep`` is) until the test writes to it: its path, and the test's end of it (open
    for reading and writing, so neither side's open or write ever waits for the other)."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "release"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)
    try:
        yield str(path), fd
    finally:
        os.close(fd)


def blocked_on(path: str) -> str:
    """A cell's code: announce, then block in ``os.read`` on ``path`` until released."""
    return (
        f"import os\nfd = os.open({path!r}, os.O_RDONLY)\n"
        "print('blocking', flush=True)\nos.read(fd, 1)\nprint('released')"
    )


def subshell_threads(kc: BlockingKernelClient, sid: str) -> str:
    """The kernel's threads of subshell ``sid`` (asked from the main shell)."""
    names = "[t.name for t in threading.enumerate()]"
    code = f"import threading\nprint([n for n in {names} if {sid[:8]!r} in n])"
    _, outputs = run_in(kc, None, code)
    return stream_text(outputs).strip()


def test_delete_does_not_wait_for_a_blocked_cell(
    kc: BlockingKernelClient, release: tuple[str, int]
) -> None:
    """A delete is answered at once, while the subshell's cell is blocked in a C call: so
    are the control requests after it and the subshell's queued execute (aborted).  The
    blocked cell is interrupted as an interrupt_request does it: KeyboardInterrupt once the
    call returns, and the subshell's thread then ends by itself."""
    path, fd = release
    sid = create_subshell(kc)
    blocked = execute_in(kc, sid, blocked_on(path))
    queued = execute_in(kc, sid, "print('queued ran')")
    wait_for_stream(kc, blocked, "blocking")
    assert control(kc, "delete_subshell_request", subshell_id=sid)["content"]["status"] == "ok"
    assert control(kc, "kernel_info_request")["content"]["status"] == "ok"
    # All before the release below: the blocked cell cannot have ended yet.
    assert replies_for(kc, queued)[queued]["content"]["status"] == "aborted"
    reply, _ = run_in(kc, sid, "1")
    assert reply["content"]["ename"] == "SubshellNotFound"
    assert control(kc, "list_subshell_request")["content"]["subshell_id"] == []
    os.write(fd, b"x")
    reply = replies_for(kc, blocked)[blocked]
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    deadline = time.monotonic() + TIMEOUT
    while (threads := subshell_threads(kc, sid)) != "[]" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads == "[]", "the deleted subshell's thread did not end"


def test_delete_stops_a_spinning_cell_and_nothing_else(
    kc: BlockingKernelClient, release: tuple[str, int]
) -> None:
    """A deleted subshell's spinning cell is interrupted (it stops changing what it
    changed); the main shell's cell and another subshell's, blocked meanwhile, are not."""
    path, fd = release
    sid = create_subshell(kc)
    other = create_subshell(kc)
    reader = create_subshell(kc)
    try:
        run_in(kc, None, "spin = 0")
        in_main = execute_in(kc, None, blocked_on(path))
        wait_for_stream(kc, in_main, "blocking")
        in_other = execute_in(kc, other, blocked_on(path))
        wait_for_stream(kc, in_other, "blocking")
        spinning = execute_in(kc, sid, "print('spinning', flush=True)\nwhile True:\n    spin += 1")
        wait_for_stream(kc, spinning, "spinning")
        assert control(kc, "delete_subshell_request", subshell_id=sid)["content"]["status"] == "ok"
        reply = replies_for(kc, spinning)[spinning]
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # (read in a third subshell: the main shell and the other one are still blocked)
        code = "import time\nbefore = spin\ntime.sleep(0.3)\nprint(spin - before)"
        reply, outputs = run_in(kc, reader, code)
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "0\n"
        os.write(fd, b"xy")  # one byte for each blocked cell
        replies = replies_for(kc, in_main, in_other)
        for msg_id in (in_main, in_other):
            assert replies[msg_id]["content"]["status"] == "ok"
    finally:
        control(kc, "delete_subshell_request", subshell_id=other)
        control(kc, "delete_subshell_request", subshell_id=reader)


def test_delete_interrupts_a_cell_in_input(kc: BlockingKernelClient) -> None:
    """A deleted subshell's cell waiting in ``input()`` ends at once, as interrupted."""
    sid = create_subshell(kc)
    content = {"code": "input('? ')", "silent": False, "allow_stdin": True}
    waiting = send_shell(kc, "execute_request", sid, **content)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["parent_header"]["msg_id"] == waiting
    assert control(kc, "delete_subshell_request", subshell_id=sid)["content"]["status"] == "ok"
    reply = replies_for(kc, waiting)[waiting]
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    reply, _ = run_in(kc, None, "'main alive'")
    assert reply["content"]["status"] == "ok"


def test_shutdown_with_a_deleted_subshell_still_blocked(release: tuple[str, int]) -> None:
    path, _ = release
    with start_kernel() as (km, kc):
        sid = create_subshell(kc)
        blocked = execute_in(kc, sid, blocked_on(path))
        wait_for_stream(kc, blocked, "blocking")
        assert control(kc, "delete_subshell_request", subshell_id=sid)["content"]["status"] == "ok"
        start = time.monotonic()
        kc.shutdown()
        while km.is_alive() and time.monotonic() - start < 5:
            time.sleep(0.05)
        assert not km.is_alive(), "the kernel did not exit with a deleted subshell blocked"


def test_task_cells_run_concurrently(kc: BlockingKernelClient) -> None:
    code = "# task\nimport anyio\nawait anyio.sleep(1)"
    start = time.monotonic()
    tagged = execute_in(kc, None, "import anyio\nawait anyio.sleep(1)", tags=["task"])
    replies = replies_for(kc, execute_in(kc, None, code), tagged)
    assert all(r["content"]["status"] == "ok" for r in replies.values())
    assert time.monotonic() - start < 1.8


def test_thread_cell_runs_on_a_worker_thread(kc: BlockingKernelClient) -> None:
    sid = create_subshell(kc)
    try:
        run_in(kc, sid, "mine = 'subshell'")
        code = "# thread\nimport threading\nprint(threading.current_thread().name, mine)"
        reply, outputs = run_in(kc, sid, code)
        assert reply["content"]["status"] == "ok"
        name, value = stream_text(outputs).split()
        assert name.startswith("async-kernel-cell")
        assert value == "subshell"
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_interrupt_stops_running_code_in_subshells_and_thread_cells(
    kc: BlockingKernelClient,
) -> None:
    """Signals reach only the main thread; an interrupt_request still stops a busy loop in a
    subshell and in a ``# thread`` cell of the main shell, and both keep working."""
    sid = create_subshell(kc)
    spin = "print('spinning', flush=True)\nwhile True:\n    pass"
    try:
        in_subshell = execute_in(kc, sid, spin)
        in_thread = execute_in(kc, None, "# thread\n" + spin)
        spinning: set[str] = set()  # both cells print, in any order, on the one iopub stream
        while spinning != {in_subshell, in_thread}:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] == "stream" and "spinning" in msg["content"]["text"]:
                spinning.add(msg["parent_header"]["msg_id"])
        assert control(kc, "interrupt_request")["content"]["status"] == "ok"
        replies = replies_for(kc, in_subshell, in_thread)
        for msg_id in (in_subshell, in_thread):
            assert replies[msg_id]["content"]["status"] == "error"
            assert replies[msg_id]["content"]["ename"] == "KeyboardInterrupt"
        reply, outputs = run_in(kc, sid, "print('subshell alive')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "subshell alive\n"
        reply, _ = run_in(kc, None, "'main alive'")
        assert reply["content"]["status"] == "ok"
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_interrupt_cancels_awaiting_cells_in_subshells_and_thread_cells(
    kc: BlockingKernelClient,
) -> None:
    """A cell off the main thread that waits in an ``await`` is cancelled on its own loop."""
    sid = create_subshell(kc)
    wait = "import anyio\nprint('waiting', flush=True)\nawait anyio.sleep(30)"
    try:
        in_subshell = execute_in(kc, sid, wait)
        in_thread = execute_in(kc, None, "# thread\n" + wait)
        waiting: set[str] = set()
        while waiting != {in_subshell, in_thread}:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] == "stream" and "waiting" in msg["content"]["text"]:
                waiting.add(msg["parent_header"]["msg_id"])
        assert control(kc, "interrupt_request")["content"]["status"] == "ok"
        replies = replies_for(kc, in_subshell, in_thread)  # bounded by the client timeout
        for msg_id in (in_subshell, in_thread):
            assert replies[msg_id]["content"]["status"] == "error"
            assert replies[msg_id]["content"]["ename"] == "KeyboardInterrupt"
        reply, _ = run_in(kc, sid, "'subshell alive'")
        assert reply["content"]["status"] == "ok"
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_output_from_threads_goes_to_its_cell(kc: BlockingKernelClient) -> None:
    code = (
        "import threading, time\n"
        "def later():\n"
        "    time.sleep(0.3)\n"
        "    print('late')\n"
        "threading.Thread(target=later).start()\n"
        "print('now')"
    )
    msg_id = execute_in(kc, None, code)
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    outputs = collect_outputs(kc, msg_id)
    assert stream_text(outputs) == "now\n"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "stream":
            assert msg["parent_header"]["msg_id"] == msg_id
            assert msg["content"]["text"] == "late\n"
            break


def test_output_from_a_task_in_a_subshell(kc: BlockingKernelClient) -> None:
    sid = create_subshell(kc)
    try:
        code = (
            "import anyio\n"
            "from async_kernel import Caller\n"
            "async def later():\n"
            "    await anyio.sleep(0.2)\n"
            "    print('from task')\n"
            "Caller.current().call_soon(later)\n"
        )
        msg_id = execute_in(kc, sid, code)
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
        collect_outputs(kc, msg_id)
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        while msg["msg_type"] != "stream":
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
        assert msg["content"]["text"] == "from task\n"
        assert msg["parent_header"]["msg_id"] == msg_id
        assert msg["parent_header"]["subshell_id"] == sid
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_shutdown_ends_live_subshells() -> None:
    with start_kernel() as (km, kc):
        sid = create_subshell(kc)
        execute_in(kc, sid, "import anyio\nawait anyio.sleep(60)")
        execute_in(kc, create_subshell(kc), "import time\ntime.sleep(60)")
        time.sleep(0.3)
        start = time.monotonic()
        kc.shutdown()
        while km.is_alive() and time.monotonic() - start < 5:
            time.sleep(0.05)
        assert not km.is_alive(), "the kernel did not exit with live subshells"


def test_a_default_subshell_shares_the_main_namespace_both_ways(
    kernel: tuple[Any, BlockingKernelClient],
) -> None:
    """Two consoles, as JupyterLab's "New Subshell Console for Notebook" opens them: one
    client on the main shell, a second client on a subshell created with empty content."""
    km, main_console = kernel
    # A console of its own: its own session, so its own ZMQ identity (one client's second
    # connection with the same identity takes the first one's replies over).
    sub_console = km.client(session=Session(key=km.session.key))
    sub_console.start_channels()
    try:
        sid = create_subshell(main_console)
        run_in(main_console, None, "defined_in_main = 'from main'")
        _, outputs = run_in(sub_console, sid, "print(defined_in_main)\ndefined_in_sub = 2")
        assert stream_text(outputs) == "from main\n"
        _, outputs = run_in(main_console, None, "print(defined_in_sub)")
        assert stream_text(outputs) == "2\n"
        _, outputs = run_in(sub_console, sid, "%subshell")
        assert stream_text(outputs) == f"subshell id: {sid}\nsubshell list: ['{sid}']\n"
        _, outputs = run_in(main_console, None, "%subshell")
        assert stream_text(outputs).startswith("subshell id: None\n")
        control(main_console, "delete_subshell_request", subshell_id=sid)
    finally:
        sub_console.stop_channels()
