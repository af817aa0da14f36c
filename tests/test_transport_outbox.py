"""The ZMQ transport's sending on its own: iopub's bound (held back, then dropped past the
stall or the budget, counted) and the outbox (direct or queued, in order, a full queue waited
for on a Latch that an interrupt leaves intact), with real sockets and no I/O thread: the
test plays that thread where one is needed."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from async_kernel.transport import iopub, outbox
from async_kernel.transport.binding import Sockets
from async_kernel.transport.connection import ConnectionInfo
from async_kernel.transport.iopub import IopubBound, IopubDrops, configure_iopub
from async_kernel.transport.outbox import SEND_BATCH, Outbox
from async_kernel.transport.wire import Codec, new_message

pytestmark = pytest.mark.timeout(60)

Context = zmq.Context[zmq.Socket[bytes]]


# -- iopub's bound, over inproc: a subscriber's queue fills after a known, small number ----
class _Iopub:
    """An XPUB set up as the kernel's iopub, and the subscribers the test connects."""

    def __init__(self) -> None:
        self.ctx: Context = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        configure_iopub(self.pub)
        self._url = f"inproc://iopub-{id(self)}"
        self.pub.bind(self._url)
        self._subs: list[zmq.Socket[bytes]] = []

    def subscribe(self) -> zmq.Socket[bytes]:
        sub = self.ctx.socket(zmq.SUB)
        self._subs.append(sub)
        sub.rcvhwm = 1  # the client's own queue holds little: the kernel's bound is tested
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self._url)
        assert self.pub.poll(10_000), "the subscription never reached the XPUB"
        assert self.pub.recv() == b"\x01"
        return sub

    def read_all(self, sub: zmq.Socket[bytes]) -> list[int]:
        """What ``sub`` holds now; then the XPUB learns that it read (libzmq's commands
        between the two ends, which a send takes in only about once a millisecond)."""
        got: list[int] = []
        while True:
            try:
                got.append(int(sub.recv_multipart(zmq.NOBLOCK)[1]))
            except zmq.Again:
                self.pub.get(zmq.EVENTS)
                return got

    def close(self) -> None:
        for sock in [*self._subs, self.pub]:
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def xpub() -> Iterator[_Iopub]:
    iopub_ = _Iopub()
    try:
        yield iopub_
    finally:
        iopub_.close()


def _frames(i: int, size: int = 8) -> list[bytes]:
    return [b"topic", str(i).encode().ljust(size, b" ")]


def test_a_full_subscriber_is_waited_for_and_loses_nothing(
    xpub: _Iopub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iopub, "IOPUB_STALL", 3600.0)  # never stalled within the test
    sub = xpub.subscribe()
    bound = IopubBound(xpub.pub)
    held = [bound.put(_frames(i)) for i in range(100)]
    assert held[0] is False
    assert held[-1] is True, "100 messages fit a queue bounded at IOPUB_HWM"
    assert held.index(True) >= iopub.IOPUB_HWM  # held back only once the queue was full
    assert all(held[held.index(True) :]), "a message overtook the backlog"
    assert bound.holding
    assert bound.backlog_bytes > 0
    got: list[int] = []
    for _ in range(1000):  # the client reads, the I/O thread retries (bounded)
        got += xpub.read_all(sub)
        bound.retry()
        if len(got) == 100:
            break
    assert got == list(range(100))
    assert not bound.holding
    assert bound.backlog_bytes == 0
    assert bound.drops.total == 0


def test_past_the_stall_the_full_subscriber_misses_output_and_the_reader_gets_it_all(
    xpub: _Iopub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iopub, "IOPUB_STALL", 0.0)  # every wait counts as a stall
    stalled = xpub.subscribe()
    reader = xpub.subscribe()
    bound = IopubBound(xpub.pub)
    got: list[int] = []
    for i in range(100):
        bound.put(_frames(i))
        bound.retry()
        got += xpub.read_all(reader)
    assert got == list(range(100))
    assert not bound.holding
    assert bound.drops.total > 0
    missed = xpub.read_all(stalled)
    assert missed == list(range(len(missed))), "the stalled client got a gap, not a prefix"
    assert 0 < len(missed) < 100
    bound.put(_frames(1000))  # caught up: it gets new output again
    assert xpub.read_all(stalled) == [1000]
    assert xpub.read_all(reader) == [1000]


def test_after_a_drop_the_stalled_client_gets_each_requests_last_status_again(
    xpub: _Iopub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libzmq skips a client it dropped for until it has caught up, whatever is sent: a
    request's idle sent meanwhile would be lost to it for good (a front end showing the
    kernel busy).  The last status of each request goes again once the drops are over."""
    monkeypatch.setattr(iopub, "IOPUB_STALL", 0.0)  # every wait counts as a stall
    monkeypatch.setattr(iopub, "IOPUB_RESYNC", 0.05)
    stalled = xpub.subscribe()
    bound = IopubBound(xpub.pub, CODEC.renew)
    request = new_message("execute_request", {"code": "print(1)"})

    def status(state: str) -> list[bytes]:
        return CODEC.encode(new_message("status", {"execution_state": state}, request), [TOPIC])

    for i in range(100):  # a flood the client does not read: drops
        bound.put(_frames(i))
        bound.retry()
    assert bound.drops.total > 0
    bound.put(status("idle"))  # while libzmq still skips the client: lost to it
    before = _read_messages(stalled)
    assert "idle" not in [m["content"].get("execution_state") for m in before]
    xpub.pub.get(zmq.EVENTS)  # the XPUB learns that the client has caught up
    assert bound.holding  # the status waits to go again: the I/O thread retries
    time.sleep(0.06)
    bound.retry()  # IOPUB_RESYNC after the last drop: the last status goes again
    again = _read_messages(stalled)
    states = [m for m in again if m["header"]["msg_type"] == "status"]
    assert [m["content"]["execution_state"] for m in states] == ["idle"]
    assert states[0]["parent_header"]["msg_id"] == request["header"]["msg_id"]
    assert states[0]["header"]["msg_id"] != CODEC.decode(status("idle"))[1]["header"]["msg_id"]
    resent = 1
    deadline = time.monotonic() + 10
    while bound.holding:  # twice more, at doubling intervals, then it is forgotten
        assert time.monotonic() < deadline
        time.sleep(bound.retry_in())
        bound.retry()
        resent += len(_read_messages(stalled))
    assert resent == iopub.RESYNC_TIMES


TOPIC = b"kernel.status"


def _read_messages(sub: zmq.Socket[bytes]) -> list[dict[str, Any]]:
    """The real messages ``sub`` holds now (the flood's bare frames left out)."""
    got: list[dict[str, Any]] = []
    while sub.poll(50):
        frames = sub.recv_multipart()
        if frames[0] == TOPIC:
            got.append(CODEC.decode(frames)[1])
    return got


def test_past_the_budget_output_is_dropped_without_waiting_for_the_stall(
    xpub: _Iopub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iopub, "IOPUB_STALL", 3600.0)
    monkeypatch.setattr(iopub, "IOPUB_BACKLOG", 10 * 1024)
    xpub.subscribe()
    bound = IopubBound(xpub.pub)
    peak = 0
    for i in range(200):
        bound.put(_frames(i, size=1024))
        peak = max(peak, bound.backlog_bytes)
    assert peak <= 10 * 1024 + 1024 + 16  # the budget, and the message that passed it
    assert bound.drops.total > 0


def test_with_no_subscriber_nothing_is_held() -> None:
    ctx: Context = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    configure_iopub(pub)
    pub.bind(f"inproc://nobody-{id(pub)}")
    try:
        bound = IopubBound(pub)
        assert not any(bound.put(_frames(i)) for i in range(1000))
        assert bound.drops.total == 0
    finally:
        pub.close(linger=0)
        ctx.term()


def test_drops_are_counted_each_and_logged_once_in_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = IopubDrops()
    with caplog.at_level(logging.WARNING, logger="async_kernel.transport"):
        for _ in range(5):
            drops.dropped()
    assert drops.total == 5
    assert caplog.text.count("has not read its output") == 1


# -- the outbox, on a transport's real sockets ---------------------------------------------
class _Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def bound_sockets() -> Iterator[Sockets]:
    info = ConnectionInfo()
    sockets = Sockets(info, None)
    try:
        yield sockets
    finally:
        sockets.close()


@pytest.fixture
def subscriber(bound_sockets: Sockets) -> Iterator[zmq.Socket[bytes]]:
    ctx: Context = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    pub = bound_sockets.by_channel["iopub"]
    sub.connect(pub.get_string(zmq.LAST_ENDPOINT))
    assert pub.poll(10_000), "the subscription never reached iopub"
    pub.recv()
    try:
        yield sub
    finally:
        sub.close(linger=0)
        ctx.term()


CODEC = Codec(b"key")


def _texts(sub: zmq.Socket[bytes], count: int, box: Outbox) -> list[str]:
    """Up to ``count`` texts read on ``sub``; meanwhile the test plays the I/O thread,
    which retries what a full subscriber queue held back (bounded wait)."""
    texts: list[str] = []
    deadline = time.monotonic() + 20
    while len(texts) < count and time.monotonic() < deadline:
        if sub.poll(10):
            texts.append(CODEC.decode(sub.recv_multipart())[1]["content"]["text"])
        else:
            box.drain()
    return texts


def _stream(text: str) -> dict[str, object]:
    return new_message("stream", {"name": "stdout", "text": text})


def _an_io_thread() -> threading.Thread:
    """Stands for the I/O thread (never started): the test drains the outbox itself."""
    return threading.Thread(target=lambda: None, name="stand-in-io")


def test_a_message_goes_out_directly_while_the_io_thread_waits(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes]
) -> None:
    wakes = _Wakes()
    box = Outbox(bound_sockets, CODEC, wakes)
    box.send("iopub", _stream("before start"))  # no I/O thread yet: sent directly
    box.start(_an_io_thread())
    assert box.io_waits() is False
    box.send("iopub", _stream("while it waits"))
    assert _texts(subscriber, 2, box) == ["before start", "while it waits"]
    assert box.drain() == set()  # nothing was queued
    assert wakes.count == 0


def test_while_the_io_thread_is_busy_messages_queue_and_go_in_order(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes]
) -> None:
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())  # busy until it first waits
    for i in range(300):
        box.send("iopub", _stream(str(i)))
    assert box.drain() == {"iopub"}  # one batch: reading goes on during a flood
    assert box.io_waits() is True, "the rest of the queue was not left for the next turn"
    box.send("iopub", _stream("behind the queue"))  # queued too, though the thread waits
    assert box.drain() == {"iopub"}
    assert box.drain() == set()
    assert _texts(subscriber, 301, box) == [*map(str, range(300)), "behind the queue"]


def test_the_last_turn_sends_everything_queued(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes]
) -> None:
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())  # busy: everything queues
    for i in range(3 * SEND_BATCH + 5):
        box.send("iopub", _stream(str(i)))
    box.stop()
    box.drain_all()  # the I/O thread's last turn: not one batch of them, all
    assert box.drain() == set()
    assert _texts(subscriber, 3 * SEND_BATCH + 5, box) == [*map(str, range(3 * SEND_BATCH + 5))]


def _waits_for_room(box: Outbox, text: str) -> None:
    """Sending ``text`` from another thread waits (for 0.3 s at least) until the I/O thread's
    next turn makes room; then it goes."""
    sender = threading.Thread(target=box.send, args=("iopub", _stream(text)))
    sender.start()
    sender.join(0.3)
    assert sender.is_alive(), "a sender did not wait for room in a full queue"
    box.drain()  # the I/O thread's turn makes room
    sender.join(10)
    assert not sender.is_alive()


def test_a_sender_finding_the_queue_full_waits_for_room(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "OUTBOX_LIMIT", 2)
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())
    box.send("iopub", _stream("0"))
    box.send("iopub", _stream("1"))
    _waits_for_room(box, "2")
    box.drain()
    assert _texts(subscriber, 3, box) == ["0", "1", "2"]


def test_queued_bytes_bound_the_queue_too_and_any_message_goes_once_there_is_room(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room is counted in bytes as well as messages (a starved I/O thread must not let large
    output pile up): past OUTBOX_BYTES a sender waits.  Once there is room, a message of any
    size goes in (one larger than the whole bound included): smaller ones never starve it."""
    monkeypatch.setattr(outbox, "OUTBOX_BYTES", 4096)
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())
    texts = ["x" * 5000, "y" * 10, "z" * 10_000]
    box.send("iopub", _stream(texts[0]))  # room: the queue was empty; now it is past the bound
    _waits_for_room(box, texts[1])
    large = threading.Thread(target=box.send, args=("iopub", _stream(texts[2])))
    large.start()  # 10 bytes queued: room, for a message larger than the whole bound too
    large.join(10)
    assert not large.is_alive(), "a message larger than the bound waited though there was room"
    box.drain()
    assert _texts(subscriber, 3, box) == texts


def test_a_frame_that_is_no_buffer_is_not_the_senders_error_on_the_queued_path(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes]
) -> None:
    """Queued while the I/O thread is busy (which a loaded machine makes likely), a message
    with a frame that is no buffer is refused when sent, and logged, as on the direct path:
    counting its bytes for the queue's bound raises nothing to the cell that sent it."""
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())  # busy: everything queues
    bad = _stream("bad")
    bad["buffers"] = [object()]
    box.send("iopub", bad)
    box.send("iopub", _stream("after"))
    box.drain()
    assert _texts(subscriber, 1, box) == ["after"]


def test_the_io_thread_and_a_stopping_transport_never_wait_for_room(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the I/O thread drains the queue: it would wait for itself.  Once stopping,
    nobody drains it."""
    monkeypatch.setattr(outbox, "OUTBOX_LIMIT", 2)
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(threading.current_thread())  # this thread is the I/O thread
    for i in range(5):
        box.send("iopub", _stream(str(i)))
    box.start(_an_io_thread())
    box.stop()
    box.send("iopub", _stream("5"))
    while box.drain():
        pass
    assert _texts(subscriber, 6, box) == [str(i) for i in range(6)]


def _raise_in(thread: threading.Thread) -> None:
    """A KeyboardInterrupt raised asynchronously in ``thread`` (a subshell's interrupt);
    raised again if CPython swallowed it (in a gc callback, say)."""
    for _ in range(50):
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident or 0), ctypes.py_object(KeyboardInterrupt)
        )
        thread.join(timeout=0.2)
        if not thread.is_alive():
            return
    pytest.fail("the interrupt never ended the sender")


def test_an_interrupt_while_waiting_for_room_leaves_the_outbox_working(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait for room is on a Latch, outside the lock: an interrupt striking it leaves
    no lock held and no condition half updated (seen in CI as output that never came)."""
    monkeypatch.setattr(outbox, "OUTBOX_LIMIT", 1)
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.start(_an_io_thread())
    box.send("iopub", _stream("queued"))
    interrupted: list[bool] = []

    def send_into_a_full_queue() -> None:
        try:
            box.send("iopub", _stream("never sent"))
        except KeyboardInterrupt:
            interrupted.append(True)

    sender = threading.Thread(target=send_into_a_full_queue)
    sender.start()
    sender.join(0.2)
    assert sender.is_alive()
    _raise_in(sender)
    assert interrupted == [True]
    assert bound_sockets.lock.acquire(timeout=5), "the interrupt left the lock held"
    bound_sockets.lock.release()
    box.drain()
    box.send("iopub", _stream("after"))
    box.drain()
    assert _texts(subscriber, 2, box) == ["queued", "after"]


def test_wait_sent_waits_for_what_is_queued_now(
    bound_sockets: Sockets, subscriber: zmq.Socket[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox.os, "sched_yield", lambda: None)
    box = Outbox(bound_sockets, CODEC, _Wakes())
    assert box.wait_sent(5) is False  # no I/O thread: nothing will ever drain
    box.start(_an_io_thread())
    for i in range(3):
        box.send("iopub", _stream(str(i)))
    assert box.wait_sent(0.01) is False  # bounded: nobody drained
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(box.wait_sent(30)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:
        box.drain()  # as the I/O thread's turns would, until the waiter has seen them
        waiter.join(0.01)
    waiter.join(10)
    assert results == [True]
    assert _texts(subscriber, 3, box) == ["0", "1", "2"]


def test_after_close_a_message_is_dropped_quietly(bound_sockets: Sockets) -> None:
    box = Outbox(bound_sockets, CODEC, _Wakes())
    bound_sockets.close()
    box.send("iopub", _stream("too late"))
    box.send("shell", new_message("kernel_info_reply", {}), [b"someone"])
    assert box.drain() == set()


class _Holding(IopubBound):
    """A bound that says a backlog waits; its retry sends nothing."""

    holding = True  # pyright: ignore[reportAssignmentType]

    def retry(self) -> None:
        pass


def test_a_retry_on_iopub_passes_on_a_subscription_that_waits(bound_sockets: Sockets) -> None:
    """Each retry of iopub's backlog is a send, which may read the notice of a subscription
    that just arrived: the I/O thread is then told to read iopub, as after any send."""
    box = Outbox(bound_sockets, CODEC, _Wakes())
    box.iopub = _Holding(bound_sockets.by_channel["iopub"])
    box.start(_an_io_thread())
    assert box.drain() == set()  # nothing waits: the thread may wait for the descriptor
    ctx: Context = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(bound_sockets.by_channel["iopub"].get_string(zmq.LAST_ENDPOINT))
        # Waiting on the socket reads its notice, as a send of the retry may.
        assert bound_sockets.by_channel["iopub"].poll(10_000)
        assert box.drain() == {"iopub"}
    finally:
        sub.close(linger=0)
        ctx.term()
