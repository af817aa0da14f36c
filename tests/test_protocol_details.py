"""Protocol details a real client notices, where the kernel must answer as the spec (and
ipykernel) do: silent cells, exit/quit, inspect's mime types, shutdown_reply on iopub,
execute_reply's metadata and the count of an invalid execute's reply."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from conftest import (
    TIMEOUT,
    collect_outputs,
    execute,
    execute_ok,
    shell_reply,
    start_kernel,
    wait_for_stream,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def last_count(kc: BlockingKernelClient) -> int:
    """The execution count of a cell stored just now."""
    reply, _ = execute(kc, "None")
    return reply["content"]["execution_count"]


def send_raw_execute(kc: BlockingKernelClient, content: dict[str, Any]) -> str:
    """Send an execute_request with exactly ``content`` (jupyter_client would fill it in)."""
    msg = kc.session.msg("execute_request", content)
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def wait_until_gone(km: KernelManager) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while km.is_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- silent cells --------------------------------------------------------------------------
def test_failing_silent_execute_aborts_nothing(kc: BlockingKernelClient) -> None:
    # jupyter_client's silent default keeps stop_on_error True (qtconsole's own calls).
    failing = kc.execute(
        "print('running', flush=True); import time; time.sleep(1); raise ValueError('quiet')",
        silent=True,
    )
    wait_for_stream(kc, failing, "running")
    later = kc.execute("'after the silent failure'")
    assert shell_reply(kc, failing)["content"]["status"] == "error"
    reply = shell_reply(kc, later)["content"]
    assert reply["status"] == "ok", reply


def test_silent_execute_forces_store_history_off(kc: BlockingKernelClient) -> None:
    stored = last_count(kc)
    msg_id = kc.execute("1 + 1", silent=True, store_history=True)
    assert shell_reply(kc, msg_id)["content"]["execution_count"] == stored
    assert last_count(kc) == stored + 1  # the silent cell took no number


# -- execute_reply's content and metadata --------------------------------------------------
def test_execute_reply_metadata(kc: BlockingKernelClient) -> None:
    ok, _ = execute(kc, "'fine'")
    failed, _ = execute(kc, "1 / 0")
    for reply, status in ((ok, "ok"), (failed, "error")):
        metadata = reply["metadata"]
        assert metadata["status"] == status
        assert metadata["dependencies_met"] is True
        started = datetime.fromisoformat(metadata["started"])
        assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
        assert started <= reply["header"]["date"]  # began before its reply was made
    assert isinstance(ok["metadata"]["engine"], str) and ok["metadata"]["engine"]
    assert failed["metadata"]["engine"] == ok["metadata"]["engine"]


@pytest.mark.parametrize("content", [{"silent": False}, {"code": 5}], ids=["missing", "int"])
def test_invalid_execute_reply_has_a_count(
    kc: BlockingKernelClient, content: dict[str, Any]
) -> None:
    stored = last_count(kc)
    reply = shell_reply(kc, send_raw_execute(kc, content))["content"]
    assert reply["status"] == "error" and reply["ename"] == "InvalidRequest", reply
    assert reply["execution_count"] == stored
    assert last_count(kc) == stored + 1


# -- inspect ------------------------------------------------------------------------------
def test_inspect_sends_no_html_unless_the_html_pager_is_on(kc: BlockingKernelClient) -> None:
    def inspect_data() -> dict[str, Any]:
        reply = shell_reply(kc, kc.inspect("print", 5))["content"]
        assert reply["status"] == "ok" and reply["found"], reply
        return reply["data"]

    data = inspect_data()
    assert "text/plain" in data and "text/html" not in data
    execute_ok(kc, "get_ipython().enable_html_pager = True")
    try:
        assert "text/html" in inspect_data()
    finally:
        execute_ok(kc, "get_ipython().enable_html_pager = False")


# -- exit and quit -------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["exit", "quit()", "get_ipython().ask_exit()"])
def test_exit_in_a_cell_ends_the_kernel_after_its_reply(backend: str, code: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        msg_id = kc.execute(code)
        reply = shell_reply(kc, msg_id)["content"]
        assert reply["status"] == "ok", reply
        assert reply["payload"] == [{"source": "ask_exit", "keepkernel": False}]
        assert collect_outputs(kc, msg_id)[-1]["content"]["execution_state"] == "idle"
        assert wait_until_gone(km), "the kernel still runs after exit"


def test_cells_queued_behind_an_exit_are_aborted(backend: str) -> None:
    """The kernel ends after an exit: what waits behind it, and what comes after it, is
    answered 'aborted', not run in the moment before the kernel ends."""
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        exiting = kc.execute("import time; time.sleep(0.5); exit()")
        queued = kc.execute("print('ran after the exit')")  # sent while the first sleeps
        assert shell_reply(kc, exiting)["content"]["status"] == "ok"
        assert shell_reply(kc, queued)["content"]["status"] == "aborted"
        # One sent after the exit's reply (nbclient sends the next cell at once) too.
        later = kc.execute("print('ran after the exit reply')")
        assert shell_reply(kc, later)["content"]["status"] == "aborted"
        assert wait_until_gone(km), "the kernel still runs after exit"


def test_exit_keeping_the_kernel(kc: BlockingKernelClient) -> None:
    for code in ("exit(keep_kernel=True)", "quit(keep_kernel=True)"):
        reply, _ = execute(kc, code)
        assert reply["content"]["payload"] == [{"source": "ask_exit", "keepkernel": True}]
    # Kept for that call only, and the kernel still answers.
    reply, outputs = execute(kc, "get_ipython().keepkernel_on_exit")
    assert reply["content"]["status"] == "ok"
    results = [m for m in outputs if m["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "False"


# -- shutdown -----------------------------------------------------------------------------
def test_shutdown_reply_is_also_published_on_iopub(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        msg_id = kc.shutdown(restart=True)
        reply = kc.get_control_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        published = [m for m in collect_outputs(kc, msg_id) if m["msg_type"] == "shutdown_reply"]
        assert len(published) == 1
        assert published[0]["content"] == {"status": "ok", "restart": True}
        assert wait_until_gone(km)
