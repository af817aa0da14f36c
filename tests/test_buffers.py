"""Binary buffers on iopub: every size and buffer type arrives intact, a bad one loses nothing.

Large frames take the transport's zero-copy path; a frame that is not a buffer must be refused
before any frame of its message is sent, so the next message is not glued onto half of it.
"""

from __future__ import annotations

from typing import Any

from conftest import TIMEOUT, execute
from jupyter_client.blocking.client import BlockingKernelClient


def comm_msgs(kc: BlockingKernelClient, msg_id: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "comm_msg":
            found.append(msg)
    return found


def test_buffers_of_every_size_and_type_arrive_intact(kc: BlockingKernelClient) -> None:
    code = (
        "import array, comm\n"
        "c = comm.create_comm(target_name='buffers')\n"
        "small = bytes(range(256))\n"
        "large = bytes(range(256)) * 4096\n"  # 1 MiB: sent without a copy
        "grid = memoryview(array.array('d', range(20000))).cast('B').cast('d', (200, 100))\n"
        "c.send({'n': 1}, buffers=[small, bytearray(large), grid])\n"
    )
    msg_id = kc.execute(code)
    (msg,) = comm_msgs(kc, msg_id, 1)
    small, large, grid = (bytes(b) for b in msg["buffers"])
    assert small == bytes(range(256))
    assert large == bytes(range(256)) * 4096
    import array

    assert list(array.array("d", grid)) == [float(i) for i in range(20000)]


def test_a_buffer_that_is_not_bytes_is_dropped_whole(kc: BlockingKernelClient) -> None:
    code = (
        "import comm\n"
        "from async_kernel.wire import new_message\n"
        "k = get_ipython().kernel\n"
        "bad = new_message('comm_msg', {'comm_id': 'x', 'data': {}}, k.get_parent())\n"
        "bad['buffers'] = [object()]\n"
        "k.transport.send('iopub', bad)\n"
        "c = comm.create_comm(target_name='after_bad')\n"
        "c.send({'still': 'here'}, buffers=[b'ok'])\n"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    sent = [m for m in outputs if m["msg_type"] == "comm_msg"]
    assert [m["content"]["data"] for m in sent] == [{"still": "here"}]
    assert [bytes(b) for b in sent[0]["buffers"]] == [b"ok"]
    assert execute(kc, "1 + 1")[0]["content"]["status"] == "ok"
