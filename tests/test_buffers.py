"""Binary buffers: every size and buffer type arrives intact, a bad one loses nothing, and a
large one travels without copies both ways.

Large frames take the transport's zero-copy path (``frames.ZERO_COPY_FROM``): sent from the
caller's own memory, received as a view of libzmq's message.  A frame that is not a buffer
must be refused before any frame of its message is sent, so the next message is not glued onto
half of it.
"""

from __future__ import annotations

import ctypes
import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from conftest import TIMEOUT, execute, inproc_pair, start_kernel, stream_text
from jupyter_client.blocking.client import BlockingKernelClient

from async_kernel.transport import frames
from async_kernel.transport.frames import (
    ZERO_COPY_FROM,
    ZERO_COPY_SEND_FROM,
    recv_multipart,
    send_multipart,
)
from async_kernel.transport.wire import Codec, new_message

PAYLOAD = 64 * 2**20  # the size issue 21 asks about


def comm_msgs(
    kc: BlockingKernelClient,
    msg_id: str,
    count: int,
    timeout: float = TIMEOUT,
    *,
    keep_buffers: bool = True,
) -> list[dict[str, Any]]:
    """The first ``count`` comm_msgs of ``msg_id`` on iopub (without their buffers, if asked:
    their sizes are checked, then the memory is let go)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "comm_msg":
            if not keep_buffers:
                assert [b.nbytes for b in msg["buffers"]] == [PAYLOAD]
                msg["buffers"] = []
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


# -- no copies: the memory itself, checked by address ------------------------------------------

LARGE = 1 << 20  # above frames.ZERO_COPY_FROM: the zero-copy path


def _address(buffer: Any) -> int:
    """Where ``buffer``'s bytes are (a writable buffer: a bytearray, a received frame)."""
    view = memoryview(buffer).cast("B")
    return ctypes.addressof((ctypes.c_char * len(view)).from_buffer(view))


@pytest.fixture(params=["libzmq", "pyzmq"])
def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """Two connected sockets in this process (see conftest.inproc_pair), over both of the
    transport's frame paths: libzmq called with the GIL held, and pyzmq's calls."""
    if request.param == "pyzmq":
        monkeypatch.setattr(frames, "LIBZMQ", None)
    elif frames.LIBZMQ is None:
        pytest.skip("pyzmq's libzmq cannot be called directly here (not Linux)")
    with inproc_pair("buffers") as pair:
        yield pair


def test_a_large_frame_is_sent_and_received_without_a_copy(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    """The transport's own frame calls: a large buffer goes to libzmq as it is (the sender's
    memory, held until sent), and comes off the socket as a view of libzmq's message."""
    sender, receiver = pair
    payload = bytearray(b"\x07") * LARGE
    codec = Codec(b"key")
    message = new_message("comm_msg", {"comm_id": "c", "data": {}})
    message["buffers"] = [payload]
    send_multipart(sender, codec.encode(message))
    assert receiver.poll(TIMEOUT * 1000)
    frames = recv_multipart(receiver)
    received = frames[-1]
    assert isinstance(received, memoryview)
    assert _address(received) == _address(payload)  # the sender's memory, end to end
    assert all(type(f) is bytes for f in frames[:-1])  # small frames: copied, cheaper
    _, decoded = codec.decode(frames)
    assert decoded["buffers"][0] is received  # decoding hands the view on as it is
    assert bytes(decoded["buffers"][0]) == bytes(payload)


def test_a_small_frame_is_copied(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    """Below the threshold a frame is copied both ways (cheaper than tracking it): bytes."""
    sender, receiver = pair
    payload = b"\x07" * (ZERO_COPY_FROM // 2)
    send_multipart(sender, [bytes(8), payload])
    assert receiver.poll(TIMEOUT * 1000)
    frames = recv_multipart(receiver)
    assert type(frames[-1]) is bytes
    assert frames[-1] == payload


def test_a_frame_below_the_send_threshold_is_copied_and_let_go_at_once(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    """Going out, a frame under ZERO_COPY_SEND_FROM (every stream message) is copied by
    libzmq: nothing holds the sender's bytes once sent, so freeing them never waits for
    pyzmq's garbage thread (a starved one once held 186 MiB of sent output)."""
    sender, receiver = pair
    payload = b"\x07" * (ZERO_COPY_SEND_FROM - 1)
    held = sys.getrefcount(payload)
    send_multipart(sender, [bytes(8), payload])
    assert sys.getrefcount(payload) == held, "the sent frame is still referenced"
    assert receiver.poll(TIMEOUT * 1000)
    assert bytes(recv_multipart(receiver)[-1]) == payload


def test_a_received_buffer_is_the_frame_in_the_handler(kc: BlockingKernelClient) -> None:
    """In the kernel: the comm handler gets a memoryview of the message libzmq received into
    (a zmq.Frame, or through the GIL-held calls a ctypes array over libzmq's memory, which
    Python did not allocate: not a copy), and can send it on as it is: 64 MiB there and back,
    intact."""
    setup = (
        "import comm, zmq\n"
        "_views = []\n"
        "def _open(c, msg):\n"
        "    def on_msg(m):\n"
        "        (b,) = m['buffers']\n"
        "        of = getattr(b, 'obj', None)\n"
        "        libzmqs = isinstance(of, zmq.Frame) or getattr(of, '_b_needsfree_', 1) == 0\n"
        "        _views.append((type(b).__name__, libzmqs and len(memoryview(of)) == len(b)))\n"
        "        c.send({'n': len(b)}, buffers=[b])\n"
        "    c.on_msg(on_msg)\n"
        "comm.get_comm_manager().register_target('echo', _open)\n"
    )
    assert execute(kc, setup)[0]["content"]["status"] == "ok"
    comm_id = uuid.uuid4().hex
    kc.shell_channel.send(
        kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
    )
    payload = bytes(range(256)) * (PAYLOAD // 256)
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {}})
    kc.session.send(kc.shell_channel.socket, msg, buffers=[payload])
    (answer,) = comm_msgs(kc, msg["header"]["msg_id"], 1, timeout=60)
    assert answer["content"]["data"] == {"n": PAYLOAD}
    (echoed,) = answer["buffers"]
    assert echoed == payload  # intact, byte for byte
    del echoed, answer
    _, outputs = execute(kc, "print(_views)")
    assert stream_text(outputs).strip() == repr([("memoryview", True)])


_RSS = f"""
_N = {PAYLOAD}
import comm, json, os
def _rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
def _peak():  # this process's own peak (ru_maxrss starts from the parent's, before exec)
    status = open('/proc/self/status').read()
    return int(status.split('VmHWM:')[1].split()[0]) * 1024
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak RSS from /proc")
def test_buffers_cost_no_second_copy_of_memory(backend: str) -> None:
    """A fresh kernel's peak RSS (VmHWM): receiving 64 MiB costs one payload (libzmq's
    message, handed to the handler), sending a 64 MiB bytearray three times costs nothing
    on top of the bytearray.  A copy anywhere on either path would add a whole payload."""
    with start_kernel(f"--interface.backend={backend}") as (_, kc):
        setup = (
            _RSS + "_kept = []\n"
            "def _open(c, msg):\n"
            "    c.on_msg(lambda m: (_kept.extend(m['buffers']), c.send({'ok': 1})))\n"
            "comm.get_comm_manager().register_target('keep', _open)\n"
            "_before = _rss()\n"
        )
        assert execute(kc, setup)[0]["content"]["status"] == "ok"
        comm_id = uuid.uuid4().hex
        kc.shell_channel.send(
            kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "keep", "data": {}})
        )
        msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {}})
        kc.session.send(kc.shell_channel.socket, msg, buffers=[b"\x01" * PAYLOAD])
        comm_msgs(kc, msg["header"]["msg_id"], 1, timeout=60)
        received = "print(json.dumps([len(_kept[0]), (_peak() - _before) / _N]))\n_kept.clear()"
        length, grown = json.loads(stream_text(execute(kc, received)[1]))
        assert length == PAYLOAD
        assert grown < 1.25, f"receiving cost {grown:.2f}x the payload"

        made = "_big = bytearray(b'\\x01') * _N\n_made = _rss()"
        assert execute(kc, made)[0]["content"]["status"] == "ok"
        send = (
            "_c = comm.create_comm(target_name='sink')\nfor _ in '123': _c.send({}, buffers=[_big])"
        )
        msg_id = kc.execute(send)
        sent = comm_msgs(kc, msg_id, 3, timeout=60, keep_buffers=False)
        assert [m["content"]["data"] for m in sent] == [{}] * 3
        _, outputs = execute(kc, "print((_peak() - _made) / _N)")
        assert float(stream_text(outputs)) < 0.25, "sending copied the buffer"
