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
        "from async_kernel.transport.wire import new_message\n"
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


def test_a_large_received_buffer_reaches_the_handler_as_a_view(kc: BlockingKernelClient) -> None:
    """Received buffers are not copied: a large one is a memoryview of the received frame;
    small ones stay bytes. The content arrives intact either way."""
    import uuid

    setup = (
        "import comm\n"
        "_seen = []\n"
        "def _open(c, msg):\n"
        "    def on_msg(m):\n"
        "        _seen.extend((type(b).__name__, len(b), bytes(b[:4])) for b in m['buffers'])\n"
        "        c.send({'done': True})\n"
        "    c.on_msg(on_msg)\n"
        "comm.get_comm_manager().register_target('views', _open)\n"
    )
    assert execute(kc, setup)[0]["content"]["status"] == "ok"
    comm_id = uuid.uuid4().hex
    kc.shell_channel.send(
        kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "views", "data": {}})
    )
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {}})
    kc.session.send(kc.shell_channel.socket, msg, buffers=[b"tiny", b"abcd" * (1 << 18)])
    (answer,) = comm_msgs(kc, msg["header"]["msg_id"], 1)
    assert answer["content"]["data"] == {"done": True}
    _, outputs = execute(kc, "print(_seen)")
    text = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
    assert text.strip() == repr([("bytes", 4, b"tiny"), ("memoryview", 1 << 20, b"abcd")])
