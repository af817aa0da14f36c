"""Comm messages and the cells around them, over a real jupyter_client, on both backends:
a comm message that arrives just after a cell that polls for it (``process_events`` in a
blocking loop) reaches that cell; ``comm_info`` lists the comms opened before it even behind
a slow comm handler; and aborted cells leave the kernel free (counted out).
"""

from __future__ import annotations

import time
from typing import Any

from conftest import TIMEOUT, collect_outputs, run_ok, shell_reply, stream_text
from jupyter_client.blocking.client import BlockingKernelClient

SETUP = """
import async_kernel, time
probe = {"value": 0}
def _on_open(comm, msg):
    @comm.on_msg
    def _on_msg(msg):
        if msg["content"]["data"].get("slow"):
            time.sleep(0.3)  # a slow handler ahead of the cell
            return
        probe["value"] = msg["content"]["data"]["value"]
get_ipython().kernel.comm_manager.register_target("probe", _on_open)
"""

POLL = """
_t = time.monotonic()
while probe["value"] < {value} and time.monotonic() - _t < {patience}:
    async_kernel.process_events(timeout=0.05)
print("got", probe["value"])
"""
PATIENCE = 5.0  # seconds the cell polls: the value arrives long before, or never


def send_comm(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> str:
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def test_a_comm_message_just_after_a_polling_cell_reaches_it(kc: BlockingKernelClient) -> None:
    run_ok(kc, SETUP)
    send_comm(kc, "comm_open", {"comm_id": "order-probe", "target_name": "probe", "data": {}})
    for value in (1, 2, 3):
        # Back to back: a slow comm message, the polling cell, the value it polls for.
        send_comm(kc, "comm_msg", {"comm_id": "order-probe", "data": {"slow": True}})
        cell = kc.execute(POLL.format(value=value, patience=PATIENCE))
        send_comm(kc, "comm_msg", {"comm_id": "order-probe", "data": {"value": value}})
        assert shell_reply(kc, cell)["content"]["status"] == "ok"
        assert stream_text(collect_outputs(kc, cell)) == f"got {value}\n"


def test_comm_info_lists_what_the_comms_before_it_opened(kc: BlockingKernelClient) -> None:
    run_ok(kc, SETUP)
    send_comm(kc, "comm_open", {"comm_id": "info-probe", "target_name": "probe", "data": {}})
    for n in range(3):
        comm_id = f"info-probe-{n}"
        send_comm(kc, "comm_msg", {"comm_id": "info-probe", "data": {"slow": True}})
        send_comm(kc, "comm_open", {"comm_id": comm_id, "target_name": "probe", "data": {}})
        ask = send_comm(kc, "comm_info_request", {"target_name": "probe"})
        comms = shell_reply(kc, ask)["content"]["comms"]
        assert comm_id in comms, f"round {n}: comm_info answered before the comm_open"


def test_aborted_cells_are_counted_out(kc: BlockingKernelClient) -> None:
    failing = kc.execute("import time; time.sleep(0.3); raise ValueError('stop here')")
    queued = [kc.execute("print('never')") for _ in range(2)]
    assert shell_reply(kc, failing)["content"]["status"] == "error"
    assert [shell_reply(kc, m)["content"]["status"] for m in queued] == ["aborted"] * 2
    deadline = time.monotonic() + TIMEOUT
    # Inside a cell, only that cell is in hand: the aborted ones were counted out.
    code = "from async_kernel.kernel.router import Router; m = Router.current.main\n"
    code += "print(m._cells_in - m._cells_out)"
    assert run_ok(kc, code) == "1\n"
    assert time.monotonic() < deadline
