"""The ZMQ transport's reading on its own, over inproc sockets (a message sent is there at
once): malformed frames dropped and logged, a failing deliver logged, batches bounded and
left for the I/O thread, iopub subscribers greeted, a loan to a loop, and a loop reading its
own channel on asyncio and trio."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import cast

import anyio
import pytest
import zmq

from async_kernel.transport import reader as reader_module
from async_kernel.transport.binding import Sockets
from async_kernel.transport.reader import Reader
from async_kernel.transport.wire import DELIMITER, Channel, Codec, Message, new_message

pytestmark = pytest.mark.timeout(60)

Context = zmq.Context[zmq.Socket[bytes]]
CODEC = Codec(b"key")


class _StandInSockets:
    """What a Reader uses of :class:`Sockets`: the lock, ``closed`` and the sockets."""

    def __init__(self, ctx: Context) -> None:
        self.lock = threading.RLock()
        self.closed = False
        self.by_channel: dict[Channel, zmq.Socket[bytes]] = {
            "shell": ctx.socket(zmq.ROUTER),
            "iopub": ctx.socket(zmq.XPUB),
        }
        self.by_channel["iopub"].setsockopt(zmq.XPUB_VERBOSE, 1)
        for channel, sock in self.by_channel.items():
            sock.bind(f"inproc://{channel}-{id(self)}")

    def url(self, channel: Channel) -> str:
        return f"inproc://{channel}-{id(self)}"


class _Rig:
    """A Reader on inproc sockets, with what it delivers, sends and how often it wakes."""

    def __init__(self) -> None:
        self.ctx: Context = zmq.Context()
        self.sockets = _StandInSockets(self.ctx)
        self.delivered: list[tuple[Channel, list[bytes], Message, str]] = []
        self.sent: list[tuple[Channel, Message, list[bytes] | None]] = []
        self.wakes = 0
        self.reader = Reader(cast(Sockets, self.sockets), CODEC, self._send, self._wake)
        self.reader.deliver = self._deliver
        self.client = self.ctx.socket(zmq.DEALER)
        self.client.connect(self.sockets.url("shell"))
        self._others: list[zmq.Socket[bytes]] = []

    def _deliver(self, channel: Channel, identities: list[bytes], msg: Message) -> None:
        self.delivered.append((channel, identities, msg, threading.current_thread().name))

    def _send(self, channel: Channel, msg: Message, identities: list[bytes] | None) -> None:
        self.sent.append((channel, msg, identities))

    def _wake(self) -> None:
        self.wakes += 1

    @property
    def shell(self) -> zmq.Socket[bytes]:
        return self.sockets.by_channel["shell"]

    def request(self, text: str = "") -> None:
        self.client.send_multipart(CODEC.encode(new_message("kernel_info_request", {"t": text})))

    def texts(self) -> list[str]:
        return [msg["content"].get("t", "") for _, _, msg, _ in self.delivered]

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        self._others.append(sock)
        return sock

    def close(self) -> None:
        for sock in [self.client, *self._others, *self.sockets.by_channel.values()]:
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def rig() -> Iterator[_Rig]:
    made = _Rig()
    try:
        yield made
    finally:
        made.close()


def test_malformed_frames_are_dropped_and_logged_and_reading_goes_on(
    rig: _Rig, caplog: pytest.LogCaptureFixture
) -> None:
    good = CODEC.encode(new_message("kernel_info_request", {"t": "good"}))
    rig.client.send_multipart([b"no delimiter at all"])
    rig.client.send_multipart([DELIMITER, b"too few frames"])
    rig.client.send_multipart([DELIMITER, b"0" * 64, *good[2:]])  # a wrong signature
    not_json = [b"{not json", b"{}", b"{}", b"{}"]
    rig.client.send_multipart([DELIMITER, CODEC.sign(not_json), *not_json])  # signed, though
    rig.client.send_multipart(good)
    rig.client.send_multipart(good)  # a replay
    with caplog.at_level(logging.WARNING, logger="async_kernel.transport"):
        assert rig.reader.read_and_deliver("shell", rig.shell) is False
    assert rig.texts() == ["good"]
    assert caplog.text.count("dropped a message on shell") == 5


def test_a_deliver_that_raises_is_logged_and_the_next_message_delivered(
    rig: _Rig, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def deliver(channel: Channel, identities: list[bytes], msg: Message) -> None:
        calls.append(msg["content"]["t"])
        if len(calls) == 1:
            raise RuntimeError("a broken handler")

    rig.reader.deliver = deliver
    rig.request("first")
    rig.request("second")
    with caplog.at_level(logging.ERROR, logger="async_kernel.transport"):
        rig.reader.read_and_deliver("shell", rig.shell)
    assert calls == ["first", "second"]
    assert "delivering kernel_info_request on shell failed" in caplog.text


def test_a_batch_is_bounded_and_the_rest_left_for_the_io_thread(
    rig: _Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "RECV_BATCH", 2)
    for i in range(5):
        rig.request(str(i))
    assert rig.reader.read_and_deliver("shell", rig.shell) is True
    assert rig.texts() == ["0", "1"]
    rig.reader.read_here("shell")  # a loop reading its own channel leaves the rest
    assert rig.texts() == ["0", "1", "2", "3"]
    assert rig.wakes == 1, "the I/O thread was not told of the batch left behind"
    assert rig.reader.read_and_deliver("shell", rig.shell) is False
    assert rig.texts() == ["0", "1", "2", "3", "4"]
    assert rig.delivered[0][1], "the client's identity was not handed on"


def test_nothing_is_read_once_the_sockets_are_closed(rig: _Rig) -> None:
    rig.request()
    rig.sockets.closed = True
    assert rig.reader.read_and_deliver("shell", rig.shell) is False
    assert rig.delivered == []


def test_a_delivered_message_holds_the_lock(rig: _Rig) -> None:
    """Two readers of a channel each deliver a whole batch before the other reads: the lock
    is held from the first read to the last hand-over."""
    held: list[bool] = []

    def deliver(channel: Channel, identities: list[bytes], msg: Message) -> None:
        free = threading.Thread(target=lambda: held.append(not rig.sockets.lock.acquire(False)))
        free.start()
        free.join(10)

    rig.reader.deliver = deliver
    rig.request()
    rig.reader.read_and_deliver("shell", rig.shell)
    assert held == [True]


def test_every_new_subscriber_is_welcomed_on_its_topic(rig: _Rig) -> None:
    pub = rig.sockets.by_channel["iopub"]
    sub = rig.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"kernel.")
    sub.connect(rig.sockets.url("iopub"))
    assert pub.poll(10_000)
    sub.setsockopt(zmq.UNSUBSCRIBE, b"kernel.")  # an unsubscription gets no welcome
    rig.reader.reader_for("iopub")(pub)
    rig.reader.reader_for("iopub")(pub)
    assert [(c, m["msg_type"], m["content"], i) for c, m, i in rig.sent] == [
        ("iopub", "iopub_welcome", {"subscription": "kernel."}, [b"kernel.iopub_welcome"])
    ]


def test_a_loan_is_asked_for_and_its_end_wakes_the_io_thread(rig: _Rig) -> None:
    def free() -> bool:
        return True

    assert rig.reader.lender("shell") is None
    rig.reader.lend("shell", free)
    assert rig.reader.lender("shell") is free
    assert rig.wakes == 0
    rig.reader.lend("shell", None)
    assert rig.reader.lender("shell") is None
    assert rig.wakes == 1  # the I/O thread may be standing aside for that loop


def test_a_loop_reads_its_own_channel_while_it_is_free(rig: _Rig, backend: str) -> None:
    loans: list[bool] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rig.reader.read_while_free, "shell", lambda: True)
            with anyio.fail_after(20):
                while rig.reader.lender("shell") is None:
                    await anyio.sleep(0.001)
                loans.append(True)
                for i in range(3):
                    rig.request(str(i))
                    while len(rig.delivered) <= i:
                        await anyio.sleep(0.001)
            tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    assert loans == [True]
    assert rig.texts() == ["0", "1", "2"]
    assert {thread for *_, thread in rig.delivered} == {threading.current_thread().name}
    assert rig.reader.lender("shell") is None, "the loan outlived the loop's reading"
