"""The callback interface (no ZMQ): a full session through CallbackKernel, on both backends.

Each session runs in its own process (tests/_callback_session.py), because a kernel takes over
process-wide hooks; it prints what the host saw as JSON and this test checks it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SESSION = Path(__file__).with_name("_callback_session.py")


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def session(request: pytest.FixtureRequest) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SESSION), request.param],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernel_info_without_debugger(session: dict[str, Any]) -> None:
    reply = session["kernel_info"]
    assert reply["channel"] == "shell"
    assert reply["reply"]["status"] == "ok"
    assert reply["reply"]["debugger"] is False  # single-thread mode has no debugger


def test_execute_streams_and_results(session: dict[str, Any]) -> None:
    result = session["print"]
    assert result["reply"]["status"] == "ok"
    kinds = [kind for kind, _ in result["iopub"]]
    assert kinds[0] == "status" and kinds[-1] == "status"
    assert ["stream", {"name": "stdout", "text": "hello\n"}] in result["iopub"]
    results = [c for kind, c in result["iopub"] if kind == "execute_result"]
    assert results[0]["data"] == {"text/plain": "42"}


def test_input_answered_from_the_callback(session: dict[str, Any]) -> None:
    result = session["input"]
    assert result["channel"] == "stdin"
    assert result["reply"] == {"prompt": "? ", "password": False}
    assert ["stream", {"name": "stdout", "text": "from host\n"}] in result["iopub"]


def test_comm_round_trip(session: dict[str, Any]) -> None:
    echoed = [c for kind, c in session["comm"]["iopub"] if kind == "comm_msg"]
    assert echoed == [{"data": {"echo": {"x": 1}}, "comm_id": "c1"}]


def test_complete(session: dict[str, Any]) -> None:
    reply = session["complete"]["reply"]
    assert "os" in reply["matches"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (7, 8)


@pytest.mark.parametrize("how", ["interrupt_request", "interface"])
def test_interrupt_cancels_an_awaiting_cell(session: dict[str, Any], how: str) -> None:
    reply = session[f"cancelled_by_{how}"]
    assert reply["status"] == "error"
    assert reply["ename"] == "KeyboardInterrupt"


def test_shutdown_ends_run_without_zmq(session: dict[str, Any]) -> None:
    assert session["shutdown"]["reply"] == {"status": "ok", "restart": False}
    assert session["shutdown"]["channel"] == "control"
    assert session["zmq_imported"] is False


def test_importing_the_interface_imports_no_zmq() -> None:
    code = (
        "import sys, async_kernel, async_kernel.kernel.callback\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('zmq', 'jupyter_client', 'psutil', 'debugpy'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
