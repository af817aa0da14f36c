"""Never deaf: every read-only shell request is answered while a cell blocks its thread.

A cell that blocks the main thread (``time.sleep``, a C call that releases the GIL,
``input()``, a pure-Python CPU loop) must not stop the kernel answering kernel_info,
comm_info, is_complete, history, complete, inspect, connect and usage; the answers must be
right (the live namespace, the running cell in history); comm messages stay on the main
thread and run there when the cell lets them through (``process_events``, ``input()``).
Every test checks causality: the answer came while the cell was still running.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import (
    TIMEOUT,
    collect_outputs,
    drain,
    execute_ok,
    run_ok,
    shell_reply,
    start_kernel,
    stream_text,
    wait_for_stream,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from test_subshells import control, create_subshell, send_shell

Kernel = tuple[KernelManager, BlockingKernelClient]

# Each blocks the main thread until interrupted, after printing "blocking".
BLOCKERS = {
    "sleep": "print('blocking', flush=True)\nimport time\ntime.sleep(60)",
    "c-call": (
        "import os\n_r, _w = os.pipe()\nprint('blocking', flush=True)\n"
        "try:\n    os.read(_r, 1)\nfinally:\n    os.close(_r); os.close(_w)"
    ),
    "cpu": (
        "import time\nprint('blocking', flush=True)\n_t = time.monotonic()\n"
        "while time.monotonic() - _t < 60:\n    pass"
    ),
}


def ask(kc: BlockingKernelClient, msg_type: str, subshell_id: str | None = None, **content: Any):
    """Send a shell request; returns its reply (other shell messages are skipped)."""
    msg_id = send_shell(kc, msg_type, subshell_id, **content)
    reply = shell_reply(kc, msg_id)
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    return reply["content"]


def still_running(kc: BlockingKernelClient, msg_id: str) -> bool:
    """Whether the cell ``msg_id`` has not been answered yet (its reply is not waiting)."""
    while True:
        try:
            msg = kc.get_shell_msg(timeout=0.05)
        except Exception:
            return True
        if msg["parent_header"].get("msg_id") == msg_id:
            raise AssertionError(f"the blocking cell ended: {msg['content']}")


@contextmanager
def blocked(kernel: Kernel, code: str, subshell_id: str | None = None) -> Iterator[str]:
    """Run ``code`` (which prints 'blocking' and blocks) until the block ends; interrupt it."""
    km, kc = kernel
    msg_id = send_shell(
        kc, "execute_request", subshell_id, code=code, silent=False, store_history=True,
        user_expressions={}, allow_stdin=True, stop_on_error=True,
    )  # fmt: skip
    wait_for_stream(kc, msg_id, "blocking")
    try:
        yield msg_id
    finally:
        km.interrupt_kernel()
        reply = shell_reply(kc, msg_id)
        assert reply["content"]["status"] == "error", reply["content"]
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        collect_outputs(kc, msg_id)


@pytest.mark.parametrize("how", sorted(BLOCKERS))
def test_every_ask_is_answered_while_a_cell_blocks(kernel: Kernel, how: str) -> None:
    _, kc = kernel
    drain(kc)
    execute_ok(
        kc,
        "def defined_before_blocking(x):\n    'A docstring to find.'\n    return x\n"
        "value_defined_before = 1",
    )
    with blocked(kernel, BLOCKERS[how]) as cell:
        info = ask(kc, "kernel_info_request")
        assert info["status"] == "ok" and info["implementation"] == "async_kernel"
        assert ask(kc, "comm_info_request")["status"] == "ok"
        big = "x = [\n" + "    1,\n" * 2000  # 12 kB, unfinished
        assert ask(kc, "is_complete_request", code=big)["status"] == "incomplete"
        history = ask(kc, "history_request", hist_access_type="tail", n=3, output=False, raw=True)
        assert history["history"][-1][2] == BLOCKERS[how], "the running cell is in history"
        code = "value_defined_bef"
        found = ask(kc, "complete_request", code=code, cursor_pos=len(code))
        assert "value_defined_before" in found["matches"]
        code = "defined_before_blocking"
        inspected = ask(kc, "inspect_request", code=code, cursor_pos=len(code), detail_level=0)
        assert inspected["found"]
        assert "A docstring to find." in inspected["data"]["text/plain"]
        assert ask(kc, "connect_request")["shell_port"] > 0
        assert ask(kc, "usage_request")["pid"] > 0
        assert kc.hb_channel.is_beating()
        assert still_running(kc, cell)


def test_completion_sees_names_the_blocked_cell_defined(kernel: Kernel) -> None:
    _, kc = kernel
    code = "defined_in_the_blocking_cell = 42\n" + BLOCKERS["sleep"]
    with blocked(kernel, code) as cell:
        typed = "defined_in_the_blo"
        found = ask(kc, "complete_request", code=typed, cursor_pos=len(typed))
        assert "defined_in_the_blocking_cell" in found["matches"]
        assert still_running(kc, cell)


def test_answers_while_input_waits(kernel: Kernel) -> None:
    _, kc = kernel
    drain(kc)
    msg_id = kc.execute("answer = input('? ')\nprint('got', answer)", allow_stdin=True)
    assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
    assert ask(kc, "kernel_info_request")["status"] == "ok"
    code = "ans"
    assert "answer" not in ask(kc, "complete_request", code=code, cursor_pos=3)["matches"]
    assert still_running(kc, msg_id)
    kc.input("yes")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_outputs(kc, msg_id)) == "got yes\n"


def test_a_blocked_subshell_answers_too(kernel: Kernel) -> None:
    _, kc = kernel
    sid = create_subshell(kc, user_ns="own")
    try:
        # Short sleeps: an interrupt reaches a subshell's thread between two bytecodes only.
        code = (
            "subshell_name_before_block = 1\nimport time\nprint('blocking', flush=True)\n"
            "while True:\n    time.sleep(0.05)"
        )
        with blocked(kernel, code, sid) as cell:
            assert ask(kc, "kernel_info_request", sid)["status"] == "ok"
            typed = "subshell_name_bef"
            found = ask(kc, "complete_request", sid, code=typed, cursor_pos=len(typed))
            assert "subshell_name_before_block" in found["matches"]
            main = ask(kc, "complete_request", None, code=typed, cursor_pos=len(typed))
            assert "subshell_name_before_block" not in main["matches"]
            assert still_running(kc, cell)
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


# -- comm messages stay on the main thread -------------------------------------------------
PROBE_TARGET = """
import threading, async_kernel
probe = {"value": 0, "threads": set()}
def _on_open(comm, msg):
    @comm.on_msg
    def _on_msg(msg):
        probe["value"] = msg["content"]["data"]["value"]
        probe["threads"].add(threading.current_thread() is threading.main_thread())
get_ipython().kernel.comm_manager.register_target("probe", _on_open)
"""


def comm_send(
    kc: BlockingKernelClient, msg_type: str, subshell_id: str | None, **content: Any
) -> None:
    msg = kc.session.msg(msg_type, content)
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)


@pytest.mark.parametrize("over_subshell", [False, True], ids=["main", "over-subshell"])
def test_process_events_lets_comm_messages_into_a_blocking_loop(
    kernel: Kernel, over_subshell: bool
) -> None:
    """The slider example: a cell polls a value in a blocking loop; JupyterLab's default
    sends the widget's messages over a subshell; they run on the main thread, in order."""
    _, kc = kernel
    execute_ok(kc, PROBE_TARGET)
    sid = create_subshell(kc) if over_subshell else None
    try:
        msg_id = kc.execute(
            "print('polling', flush=True)\n"
            "while probe['value'] < 5:\n    async_kernel.process_events(timeout=0.05)\n"
            "print('done', probe['value'], probe['threads'])"
        )
        wait_for_stream(kc, msg_id, "polling")
        comm_id = "probe-comm"
        comm_send(kc, "comm_open", sid, comm_id=comm_id, target_name="probe", data={})
        for value in range(1, 6):
            comm_send(kc, "comm_msg", sid, comm_id=comm_id, data={"value": value})
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
        assert "done 5 {True}" in stream_text(collect_outputs(kc, msg_id))
    finally:
        if sid is not None:
            control(kc, "delete_subshell_request", subshell_id=sid)


def test_comm_messages_run_inside_input(kernel: Kernel) -> None:
    _, kc = kernel
    execute_ok(kc, PROBE_TARGET)
    msg_id = kc.execute(
        "x = input('? ')\nprint(probe['value'], probe['threads'], x)", allow_stdin=True
    )
    assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
    comm_send(kc, "comm_open", None, comm_id="probe-input", target_name="probe", data={})
    comm_send(kc, "comm_msg", None, comm_id="probe-input", data={"value": 7})
    # The comm message ran inside input(): a completion sees its effect before the reply.
    deadline = time.monotonic() + TIMEOUT
    while run_value(kc) != 7:
        assert time.monotonic() < deadline, "the comm message did not run inside input()"
    kc.input("ok")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_outputs(kc, msg_id)) == "7 {True} ok\n"


def run_value(kc: BlockingKernelClient) -> object:
    """probe['value'] as the inspector sees it (answered elsewhere while input() waits)."""
    code = "probe"
    reply = ask(kc, "inspect_request", code=code, cursor_pos=len(code), detail_level=0)
    text = reply["data"].get("text/plain", "")
    return 7 if "'value': 7" in text.replace("\x1b", "") else text


def test_without_process_events_comm_messages_wait_for_the_cell(kernel: Kernel) -> None:
    _, kc = kernel
    execute_ok(kc, PROBE_TARGET)
    msg_id = kc.execute(
        "import time\nprint('blocking', flush=True)\ntime.sleep(0.5)\nprint(probe['value'])"
    )
    wait_for_stream(kc, msg_id, "blocking")
    comm_send(kc, "comm_open", None, comm_id="probe-wait", target_name="probe", data={})
    comm_send(kc, "comm_msg", None, comm_id="probe-wait", data={"value": 3})
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_outputs(kc, msg_id)) == "0\n"
    assert run_ok(kc, "print(probe['value'])") == "3\n"


# -- interrupt, shutdown and restart while blocked -----------------------------------------
def test_interrupts_at_random_moments_around_input_are_never_lost(kernel: Kernel) -> None:
    """A SIGINT that lands just as input() begins its wait still ends it (not deferred until
    the wait ends), and never breaks the bridge: the next input() works."""
    km, kc = kernel
    rng = random.Random(7)
    for _ in range(20):
        msg_id = kc.execute("input('? ')", allow_stdin=True)
        # The input_request leaves just before the wait begins: the window the race is in.
        assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
        time.sleep(rng.uniform(0, 0.003))
        km.interrupt_kernel()
        reply = shell_reply(kc, msg_id, timeout=5)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        collect_outputs(kc, msg_id)
    msg_id = kc.execute("print(input('? '))", allow_stdin=True)
    kc.get_stdin_msg(timeout=TIMEOUT)
    kc.input("still works")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    assert stream_text(collect_outputs(kc, msg_id)) == "still works\n"


@pytest.mark.parametrize("how", ["sleep", "cpu"])
def test_shutdown_while_blocked_ends_the_process(backend: str, how: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        msg_id = kc.execute(BLOCKERS[how])
        wait_for_stream(kc, msg_id, "blocking")
        msg = kc.session.msg("shutdown_request", {"restart": False})
        kc.control_channel.send(msg)
        reply = kc.control_channel.get_msg(timeout=TIMEOUT)
        assert reply["msg_type"] == "shutdown_reply"
        replied = time.monotonic()
        assert km.provisioner is not None
        while km.is_alive():
            assert time.monotonic() - replied < 5, "the kernel did not end"
            time.sleep(0.02)
        gone_after = time.monotonic() - replied
        assert gone_after < 5  # measured ~0.5-1.2 s; the 2 s is recorded in docs


def test_restart_while_blocked_gives_a_working_kernel(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        msg_id = kc.execute(BLOCKERS["sleep"])
        wait_for_stream(kc, msg_id, "blocking")
        old_pid = ask(kc, "usage_request")["pid"]
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=30)
        assert run_ok(kc, "import os; print(os.getpid())").strip() != str(old_pid)


def test_bad_messages_while_blocked_are_dropped_and_the_cell_is_unharmed(kernel: Kernel) -> None:
    _, kc = kernel
    with blocked(kernel, BLOCKERS["sleep"]) as cell:
        bad = kc.session.msg("kernel_info_request", {})
        frames = kc.session.serialize(bad)
        frames[1] = b"0" * len(frames[1])  # a wrong signature
        kc.shell_channel.socket.send_multipart(frames)
        kc.shell_channel.socket.send_multipart([b"garbage"])
        assert ask(kc, "kernel_info_request")["status"] == "ok"
        assert still_running(kc, cell)
