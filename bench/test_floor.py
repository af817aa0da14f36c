"""Smoke test of the floor kernel through jupyter_client (not in the default test suite).

Run: ``python -m pytest bench/test_floor.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from bench.kernels import KERNELS
from bench.session import KernelSession

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[KernelSession]:
    session, _ = KernelSession.launch(KERNELS["floor"], tmp_path / "specs", tmp_path / "log", 30)
    yield session
    session.close()


def test_kernel_info(floor: KernelSession) -> None:
    reply = floor.reply(floor.send("shell", "kernel_info_request"))
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["protocol_version"] == "5.5"
    assert content["language_info"]["name"] == "python"


def test_execute_publishes_status_and_input_with_parent(floor: KernelSession) -> None:
    seen: list[str] = []
    msg_id = floor.execute_request("pass")
    floor.wait_idle(msg_id, timeout=5, on_msg=lambda m: seen.append(m["msg_type"]))
    reply = floor.reply(msg_id, timeout=5)
    assert seen == ["status", "execute_input", "status"]
    assert reply["content"] == {"status": "ok", "execution_count": 1, "user_expressions": {}}


def test_comm_info_and_control(floor: KernelSession) -> None:
    assert floor.reply(floor.send("shell", "comm_info_request"))["content"]["comms"] == {}
    msg_id = floor.send("control", "kernel_info_request")
    assert floor.reply(msg_id, "control")["content"]["implementation"] == "floor"


def test_bad_signature_is_dropped(floor: KernelSession) -> None:
    good_key = floor.kc.session.key
    floor.kc.session.key = b"wrong"
    msg_id = floor.send("shell", "kernel_info_request")
    floor.kc.session.key = good_key
    with pytest.raises(Exception, match="no shell message"):
        floor.reply(msg_id, timeout=0.5)


def test_shutdown_replies_then_exits(floor: KernelSession) -> None:
    reply = floor.reply(floor.send("control", "shutdown_request", {"restart": False}), "control")
    assert reply["content"] == {"status": "ok", "restart": False}
    floor.km.provisioner.process.wait(timeout=5)  # type: ignore[union-attr]
