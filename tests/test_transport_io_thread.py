"""The ZMQ transport's I/O-thread machinery on its own: timers (order, due ones only, run
outside the lock, a failing one logged), the wake-up (one byte however many ask), stepping
aside for a loop's grace period, and a whole transport whose I/O thread serves a request,
a timer and a reply in one go."""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest
import zmq

from async_kernel.transport import io_thread
from async_kernel.transport.connection import ConnectionInfo
from async_kernel.transport.io_thread import SteppedAside, Waker
from async_kernel.transport.timers import Timers
from async_kernel.transport.wire import Channel, Codec, Message, new_message
from async_kernel.transport.zmq_transport import ZmqTransport

pytestmark = pytest.mark.timeout(60)


class _Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_timers_run_in_deadline_order_and_ties_in_the_order_asked() -> None:
    wakes = _Wakes()
    timers = Timers(threading.RLock(), wakes)
    ran: list[str] = []
    timers.call_later(3600, lambda: ran.append("late"))
    timers.call_later(0, lambda: ran.append("a"))
    timers.call_later(-1, lambda: ran.append("earlier"))
    timers.call_later(0, lambda: ran.append("b"))
    assert wakes.count == 4  # each may be sooner than what the I/O thread waits for
    timers.fire()
    assert ran == ["earlier", "a", "b"]
    timeout = timers.timeout()
    assert timeout is not None and 3000 < timeout <= 3600
    timers.fire(everything=True)  # the last turn before the thread ends
    assert ran == ["earlier", "a", "b", "late"]
    assert timers.timeout() is None


def test_a_failing_timer_is_logged_and_the_others_run(caplog: pytest.LogCaptureFixture) -> None:
    timers = Timers(threading.RLock(), _Wakes())
    ran: list[int] = []
    timers.call_later(0, lambda: 1 / 0)
    timers.call_later(0, lambda: ran.append(1))
    with caplog.at_level(logging.ERROR, logger="async_kernel.transport"):
        timers.fire()
    assert ran == [1]
    assert "timer callback" in caplog.text


def test_timers_run_outside_the_lock() -> None:
    """A timer may take another lock that a thread holds while it waits for this one
    (git 4ba548c: an answer flushed the output streams under the transport's lock)."""
    lock = threading.RLock()
    timers = Timers(lock, _Wakes())
    free: list[bool] = []

    def from_another_thread() -> None:
        got = lock.acquire(timeout=5)
        free.append(got)
        if got:
            lock.release()

    def callback() -> None:
        other = threading.Thread(target=from_another_thread)
        other.start()
        other.join(10)
        timers.call_later(0, lambda: None)  # and asking for another timer works

    timers.call_later(0, callback)
    timers.fire()
    assert free == [True]


def test_the_waker_writes_one_byte_however_many_ask() -> None:
    waker = Waker(threading.RLock())
    try:
        for _ in range(3):
            waker.wake()
        assert waker.pending
        assert waker.socket.recv(16) == b"\0"
        waker.wake()  # still pending: nothing more to read
        with pytest.raises(BlockingIOError):
            waker.socket.recv(16)
        waker.drain()
        assert not waker.pending
        waker.wake()
        waker.drain()
        assert not waker.pending
        with pytest.raises(BlockingIOError):
            waker.socket.recv(16)
    finally:
        waker.close()


@pytest.fixture
def notices() -> Iterator[tuple[selectors.BaseSelector, socket.socket, socket.socket]]:
    """A selector watching one "notice" descriptor (index 0), and its other end."""
    selector = selectors.DefaultSelector()
    watched, other = socket.socketpair()
    selector.register(watched, selectors.EVENT_READ, 0)
    try:
        yield selector, watched, other
    finally:
        selector.close()
        watched.close()
        other.close()


def test_stepping_aside_leaves_the_notice_to_the_loop_for_the_grace(
    notices: tuple[selectors.BaseSelector, socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    selector, watched, other = notices
    monkeypatch.setattr(io_thread, "LOAN_GRACE", 3600.0)
    aside = SteppedAside(selector)
    assert aside.shorten(None) is None
    assert aside.shorten(1.0) == 1.0
    other.send(b"x")  # a notice
    aside.begin(0, watched.fileno())
    assert selector.select(0) == [], "a stepped-aside notice still wakes the thread"
    shortened = aside.shorten(None)
    assert shortened is not None and 3000 < shortened <= 3600
    assert aside.shorten(0.5) == 0.5
    assert aside.end_overdue() == set()
    aside.end_all()  # a wake-up: look at everything again
    assert [key.data for key, _ in selector.select(0)] == [0]


def test_once_the_grace_is_over_the_socket_is_read(
    notices: tuple[selectors.BaseSelector, socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    selector, watched, other = notices
    monkeypatch.setattr(io_thread, "LOAN_GRACE", 0.0)
    aside = SteppedAside(selector)
    other.send(b"x")
    aside.begin(0, watched.fileno())
    assert aside.shorten(None) == 0.0
    assert aside.end_overdue() == {0}  # read now, whatever its descriptor says
    assert aside.shorten(None) is None
    assert [key.data for key, _ in selector.select(0)] == [0]


class _Replier:
    """Delivers on the I/O thread; answers each request from a timer, as the router does."""

    def __init__(self) -> None:
        self.transport: ZmqTransport | None = None
        self.threads: list[str] = []

    def __call__(self, channel: Channel, identities: list[bytes], msg: Message) -> None:
        self.threads.append(threading.current_thread().name)
        assert self.transport is not None
        transport = self.transport
        reply = new_message("kernel_info_reply", {"status": "ok"})
        transport.call_later(0, lambda: transport.send(channel, reply, identities))


def test_the_io_thread_reads_fires_the_timer_and_the_reply_goes_out() -> None:
    info = ConnectionInfo()
    codec = Codec(info.key.encode())
    replier = _Replier()
    transport = ZmqTransport(info, codec)
    replier.transport = transport
    transport.start(replier)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client = ctx.socket(zmq.DEALER)
    client.linger = 0
    try:
        client.connect(info.url("control"))
        for _ in range(20):
            client.send_multipart(codec.encode(new_message("kernel_info_request", {})))
            assert client.poll(10_000), "no reply"
            assert codec.decode(client.recv_multipart())[1]["msg_type"] == "kernel_info_reply"
        assert set(replier.threads) == {"async-kernel-io"}
    finally:
        client.close()
        ctx.term()
        transport.close()
    transport.close()  # twice: nothing left to do
