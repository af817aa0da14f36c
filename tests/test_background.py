"""Background work started from a cell is never silent and never fatal (issue 19, part 5).

Over a real kernel: a task that fails after its cell ended shows its traceback under that
cell (routed by the parent header), its prints land there too, and the kernel lives on.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import TIMEOUT, run_ok, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient


def read_until(
    kc: BlockingKernelClient, seen: list[dict[str, Any]], done: Any, timeout: float = TIMEOUT
) -> None:
    """Read iopub into ``seen`` until ``done(seen)`` (bounded)."""
    deadline = time.monotonic() + timeout
    while not done(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"gave up waiting; saw {[m['msg_type'] for m in seen]}"
        seen.append(kc.get_iopub_msg(timeout=left))


def of(seen: list[dict[str, Any]], msg_id: str) -> list[dict[str, Any]]:
    return [m for m in seen if m["parent_header"].get("msg_id") == msg_id]


def idle(seen: list[dict[str, Any]], msg_id: str) -> bool:
    return any(
        m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
        for m in of(seen, msg_id)
    )


def error_of(seen: list[dict[str, Any]], msg_id: str) -> dict[str, Any] | None:
    return next((m for m in of(seen, msg_id) if m["msg_type"] == "error"), None)


def check_late_failure(kc: BlockingKernelClient, start_line: str) -> None:
    code = (
        "import anyio\n"
        "async def later():\n"
        "    await anyio.sleep(1)\n"
        "    print('still here', flush=True)\n"
        "    raise ValueError('late failure')\n"
        f"{start_line}\n"
    )
    seen: list[dict[str, Any]] = []
    first = kc.execute(code)
    assert shell_reply(kc, first)["content"]["status"] == "ok"
    read_until(kc, seen, lambda s: idle(s, first))
    assert error_of(seen, first) is None  # the cell itself ended well
    newer = kc.execute("print('newer cell')")
    assert shell_reply(kc, newer)["content"]["status"] == "ok"
    read_until(kc, seen, lambda s: error_of(s, first) is not None)
    late = of(seen, first)
    idle_at = next(
        i
        for i, m in enumerate(late)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
    )
    kinds = [m["msg_type"] for m in late[idle_at + 1 :]]
    assert kinds == ["stream", "error"], kinds  # after the cell ended: its print, then the error
    assert late[idle_at + 1]["content"]["text"] == "still here\n"
    error = late[idle_at + 2]["content"]
    assert error["ename"] == "ValueError" and error["evalue"] == "late failure"
    assert any("later" in line for line in error["traceback"])
    read_until(kc, seen, lambda s: idle(s, newer))
    assert all(m["msg_type"] != "error" for m in of(seen, newer))
    assert run_ok(kc, "print('alive')") == "alive\n"  # the kernel lives on


def test_caller_start_soon_failing_after_its_cell(kc: BlockingKernelClient) -> None:
    check_late_failure(kc, "from async_kernel import Caller\nCaller.current().start_soon(later)")


def test_asyncio_create_task_failing_after_its_cell(kc: BlockingKernelClient, backend: str) -> None:
    if backend != "asyncio":
        pytest.skip("asyncio.create_task needs an asyncio kernel")
    check_late_failure(kc, "import asyncio\n_task = asyncio.create_task(later())")


def test_a_failure_awaited_by_its_cell_is_not_shown_twice(
    kc: BlockingKernelClient, backend: str
) -> None:
    if backend != "asyncio":
        pytest.skip("asyncio.create_task needs an asyncio kernel")
    code = (
        "import asyncio\n"
        "async def fail():\n"
        "    raise KeyError('mine')\n"
        "task = asyncio.create_task(fail())\n"
        "try:\n"
        "    await task\n"
        "except KeyError:\n"
        "    print('handled')\n"
    )
    seen: list[dict[str, Any]] = []
    msg_id = kc.execute(code)
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    read_until(kc, seen, lambda s: idle(s, msg_id))
    # A later cell's idle proves the loop turned past the task's end.
    later = kc.execute("import gc; gc.collect()")
    read_until(kc, seen, lambda s: idle(s, later))
    assert error_of(seen, msg_id) is None
    assert "handled" in "".join(
        m["content"].get("text", "") for m in of(seen, msg_id) if m["msg_type"] == "stream"
    )
