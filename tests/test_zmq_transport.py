"""The ZMQ transport on its own: frames out in order, and wait_sent() as a real barrier."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from async_kernel.connection import ConnectionInfo
from async_kernel.transport.zmq_transport import ZmqTransport
from async_kernel.wire import Codec, new_message

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def transport() -> Iterator[ZmqTransport]:
    info = ConnectionInfo()
    t = ZmqTransport(info, Codec(info.key.encode()), lambda *args: None)
    t.start()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def subscriber(transport: ZmqTransport) -> Iterator[zmq.Socket[bytes]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(transport.info.url("iopub"))
    assert sub.poll(10_000), "no iopub_welcome"
    sub.recv_multipart()  # the welcome
    try:
        yield sub
    finally:
        sub.close(linger=0)
        ctx.term()


def test_messages_arrive_whole_and_in_order(
    transport: ZmqTransport, subscriber: zmq.Socket[bytes]
) -> None:
    big = bytes(range(256)) * 1024  # past the zero-copy threshold
    for i in range(200):
        msg = new_message("stream", {"name": "stdout", "text": str(i)})
        msg["buffers"] = [big] if i % 50 == 0 else []
        transport.send("iopub", msg)
    for i in range(200):
        assert subscriber.poll(10_000)
        frames = subscriber.recv_multipart()
        _, decoded = transport.codec.decode(frames)
        assert decoded["content"]["text"] == str(i)
        assert [bytes(b) for b in decoded["buffers"]] == ([big] if i % 50 == 0 else [])


def test_wait_sent_returns_once_everything_queued_is_out(
    transport: ZmqTransport, subscriber: zmq.Socket[bytes]
) -> None:
    for i in range(1000):
        transport.send("iopub", new_message("stream", {"name": "stdout", "text": str(i)}))
    assert transport.wait_sent(timeout=10)
    # Sent means handed to zmq: every message can now be read without a new wake-up.
    received = 0
    while subscriber.poll(1000):
        subscriber.recv_multipart()
        received += 1
        if received == 1000:
            break
    assert received == 1000


def test_wait_sent_on_the_io_thread_does_not_wait_on_itself(transport: ZmqTransport) -> None:
    results: list[bool] = []
    # Waiting on itself would hang the I/O thread for a minute; the answer must come at once.
    transport.call_later(0, lambda: results.append(transport.wait_sent(timeout=60)))
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results == [False]  # on the I/O thread itself: no wait, no deadlock
