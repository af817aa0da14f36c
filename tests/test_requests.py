"""Every shell and control request of protocol 5.5 gets a well-formed reply."""

from __future__ import annotations

import os

from conftest import TIMEOUT, execute, run_ok, shell_reply, start_kernel
from jupyter_client.blocking.client import BlockingKernelClient


def control_request(kc: BlockingKernelClient, msg_type: str, content: dict | None = None) -> dict:
    msg = kc.session.msg(msg_type, content or {})
    kc.control_channel.send(msg)
    while True:
        reply = kc.control_channel.get_msg(timeout=TIMEOUT)
        if reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]:
            return reply


def test_kernel_info(kc: BlockingKernelClient) -> None:
    reply = shell_reply(kc, kc.kernel_info())
    content = reply["content"]
    assert reply["msg_type"] == "kernel_info_reply"
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.5"
    assert content["implementation"] == "async_kernel"
    assert content["language_info"]["name"] == "python"
    assert content["language_info"]["file_extension"] == ".py"
    assert content["banner"]
    assert isinstance(content["help_links"], list)
    assert isinstance(content["supported_features"], list)


def test_kernel_info_on_control(kc: BlockingKernelClient) -> None:
    reply = control_request(kc, "kernel_info_request")
    assert reply["msg_type"] == "kernel_info_reply"
    assert reply["content"]["protocol_version"] == "5.5"


def test_complete(kc: BlockingKernelClient) -> None:
    execute(kc, "completion_target_value = 1")
    code = "completion_target_v"
    reply = shell_reply(kc, kc.complete(code, len(code)))["content"]
    assert reply["status"] == "ok"
    assert "completion_target_value" in reply["matches"]
    assert reply["cursor_end"] == len(code)
    assert reply["cursor_start"] == 0
    assert "_jupyter_types_experimental" in reply["metadata"]


def test_completion_offers_history_names_as_before(kc: BlockingKernelClient) -> None:
    """Jedi is handed only the history names (``_i<N>``, ``_<N>``) that the text uses or
    that complete its last word; what a completion offers must not change."""
    for _ in range(110):  # _i1 ... _i110, queued back to back
        kc.execute("pass")
    reply, _ = execute(kc, "41 + 1")
    count = reply["content"]["execution_count"]

    def matches(code: str) -> list[str]:
        return shell_reply(kc, kc.complete(code, len(code)))["content"]["matches"]

    assert {"_i1", "_i10", "_i100"} <= set(matches("_i1"))
    assert f"_{count}" in matches(f"_{count}"[:-1])
    assert "split" in matches("x = _i12\nx.spl")
    assert "import" in matches("impo")


def test_inspect(kc: BlockingKernelClient) -> None:
    reply = shell_reply(kc, kc.inspect("print", 5))["content"]
    assert reply["status"] == "ok"
    assert reply["found"] is True
    assert "text/plain" in reply["data"]
    missing = shell_reply(kc, kc.inspect("no_such_name_anywhere", 5))["content"]
    assert missing["status"] == "ok" and missing["found"] is False


def test_is_complete(kc: BlockingKernelClient) -> None:
    assert shell_reply(kc, kc.is_complete("x = 1"))["content"]["status"] == "complete"
    incomplete = shell_reply(kc, kc.is_complete("for i in range(3):"))["content"]
    assert incomplete["status"] == "incomplete"
    assert incomplete["indent"] == "    "
    assert shell_reply(kc, kc.is_complete("x = ("))["content"]["status"] == "incomplete"
    assert shell_reply(kc, kc.is_complete("1 +* 2"))["content"]["status"] == "invalid"


def test_history_tail_range_search(kc: BlockingKernelClient) -> None:
    execute(kc, "history_marker_1 = 1")
    execute(kc, "history_marker_2 = 2")
    tail = shell_reply(kc, kc.history(hist_access_type="tail", n=2))["content"]
    assert tail["status"] == "ok"
    inputs = [entry[2] for entry in tail["history"]]
    assert "history_marker_2 = 2" in inputs
    found = shell_reply(kc, kc.history(hist_access_type="search", pattern="history_marker_*"))[
        "content"
    ]
    assert any("history_marker_1" in entry[2] for entry in found["history"])
    ranged = shell_reply(kc, kc.history(hist_access_type="range", session=0, start=1, stop=3))[
        "content"
    ]
    assert ranged["status"] == "ok" and len(ranged["history"]) >= 1


def test_comm_info_and_lifecycle(kc: BlockingKernelClient) -> None:
    execute(
        kc,
        "import comm\nopened = []\n"
        "comm.get_comm_manager().register_target('lifecycle', lambda c, m: opened.append(c))",
    )
    msg = kc.session.msg("comm_open", {"comm_id": "life1", "target_name": "lifecycle", "data": {}})
    kc.shell_channel.send(msg)
    info = shell_reply(kc, kc.comm_info(target_name="lifecycle"))["content"]
    assert info["comms"] == {"life1": {"target_name": "lifecycle"}}
    kc.shell_channel.send(kc.session.msg("comm_close", {"comm_id": "life1", "data": {}}))
    info = shell_reply(kc, kc.comm_info(target_name="lifecycle"))["content"]
    assert info["comms"] == {}


def test_kernel_opens_comm_to_client(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute(
        "import comm\n"
        "c = comm.create_comm(target_name='to_client', data={'x': 1})\n"
        "c.send({'y': 2})"
    )
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    kinds = {}
    while len(kinds) < 2:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] in ("comm_open", "comm_msg"):
            kinds[msg["msg_type"]] = msg
    assert kinds["comm_open"]["content"]["target_name"] == "to_client"
    assert kinds["comm_open"]["content"]["data"] == {"x": 1}
    assert kinds["comm_msg"]["content"]["data"] == {"y": 2}
    assert kinds["comm_msg"]["parent_header"]["msg_id"] == msg_id


def test_connect_request(kc: BlockingKernelClient) -> None:
    msg = kc.session.msg("connect_request", {})
    kc.shell_channel.send(msg)
    reply = shell_reply(kc, msg["header"]["msg_id"])["content"]
    assert reply["shell_port"] == kc.shell_port
    assert reply["iopub_port"] == kc.iopub_port
    assert reply["hb_port"] == kc.hb_port


def test_usage_request(kernel) -> None:
    km, kc = kernel
    reply = control_request(kc, "usage_request")
    assert reply["msg_type"] == "usage_reply"
    content = reply["content"]
    assert content["pid"] == km.provisioner.pid if km.provisioner else content["pid"] != os.getpid()
    assert content["kernel_memory"] > 10_000_000
    assert content["cpu_count"] >= 1
    assert "host_virtual_memory" in content


def test_unknown_request_gets_an_error_reply(kc: BlockingKernelClient) -> None:
    msg = kc.session.msg("no_such_request", {})
    kc.shell_channel.send(msg)
    reply = shell_reply(kc, msg["header"]["msg_id"])
    assert reply["msg_type"] == "no_such_reply"
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UnknownMessageType"


def test_completion_and_tracebacks_are_warmed_soon_after_start_up() -> None:
    """jedi (completion) and stack_data (tracebacks) are imported by the kernel itself
    shortly after start-up, not by a first completion or a first error; then what start-up
    made is frozen out of the garbage collector's full collections."""
    with start_kernel() as (_, kc):
        # The cell awaits, so the loop that runs the warm-up is free.
        code = (
            "import sys, anyio\n"
            "while not {'jedi', 'stack_data'} <= set(sys.modules): await anyio.sleep(0.05)"
        )
        reply, _ = execute(kc, code)  # bounded by the test client's timeout
        assert reply["content"]["status"] == "ok"
        # Start-up's objects are then frozen: a full collection no longer scans them.
        assert run_ok(kc, "import gc; print(gc.get_freeze_count() > 10_000)") == "True\n"
