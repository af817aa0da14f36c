"""History across sessions, read without writing: the running session from memory, earlier
ones from the history file (as a history_request is answered, also while a cell blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import TIMEOUT, execute_ok, shell_reply, start_kernel
from jupyter_client.blocking.client import BlockingKernelClient


def history(kc: BlockingKernelClient, **content: Any) -> list[list[Any]]:
    msg_id = kc.history(**content)
    reply = shell_reply(kc, msg_id, timeout=TIMEOUT)
    assert reply["content"]["status"] == "ok", reply["content"]
    return [list(entry) for entry in reply["content"]["history"]]


def test_earlier_sessions_come_from_the_file(tmp_path: Path) -> None:
    """History does not depend on the backend: asyncio's kernel stands for both."""
    env = {"IPYTHONDIR": str(tmp_path / "ipython")}
    backend = "asyncio"
    with start_kernel(f"--interface.backend={backend}", env=env) as (_, kc):
        execute_ok(kc, "first_session_a = 1")
        execute_ok(kc, "first_session_b = 2")
        first = history(kc, hist_access_type="tail", n=1, raw=True, output=False)[0][0]
    with start_kernel(f"--interface.backend={backend}", env=env) as (_, kc):
        execute_ok(kc, "second_session = 3")
        tail = history(kc, hist_access_type="tail", n=3, raw=True, output=False)
        assert [entry[2] for entry in tail] == [
            "first_session_a = 1",
            "first_session_b = 2",
            "second_session = 3",
        ]
        assert tail[0][0] == tail[1][0] == first
        assert tail[2][0] == first + 1
        earlier = history(kc, hist_access_type="range", session=-1, start=1, stop=None)
        assert [entry[2] for entry in earlier] == ["first_session_a = 1", "first_session_b = 2"]
        found = history(kc, hist_access_type="search", pattern="*session*", unique=True)
        assert [entry[2] for entry in found][-3:] == [
            "first_session_a = 1",
            "first_session_b = 2",
            "second_session = 3",
        ]
