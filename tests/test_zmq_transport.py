"""The ZMQ transport on its own: whole messages in order, sent from any thread, no
incoming message lost to a send that read its notice, and a lent channel read by its loop."""

from __future__ import annotations

import ctypes
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest
import zmq

from async_kernel.transport import io_thread, iopub, outbox
from async_kernel.transport.connection import Channel, ConnectionInfo
from async_kernel.transport.frames import ZERO_COPY_SEND_FROM
from async_kernel.transport.wire import Codec, Message, new_message
from async_kernel.transport.zmq_transport import ZmqTransport

pytestmark = pytest.mark.timeout(30)


class _Inbox:
    """Collects what the transport delivers (called on its I/O thread)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[bytes], Message]] = []
        self.changed = threading.Condition()

    def __call__(self, channel: Channel, identities: list[bytes], msg: Message) -> None:
        with self.changed:
            self.messages.append((identities, msg))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.messages) >= count, timeout)


@pytest.fixture
def transport() -> Iterator[ZmqTransport]:
    info = ConnectionInfo()
    t = ZmqTransport(info, Codec(info.key.encode()))
    t.start(_Inbox())
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
    big = bytes(range(256)) * (ZERO_COPY_SEND_FROM // 256)  # sent without a copy
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


def _drain(sock: zmq.Socket[bytes], count: int, transport: ZmqTransport) -> list[Message]:
    received: list[Message] = []
    while len(received) < count and sock.poll(10_000):
        received.append(transport.codec.decode(sock.recv_multipart())[1])
    return received


def test_sends_from_many_threads_arrive_whole(
    transport: ZmqTransport, subscriber: zmq.Socket[bytes]
) -> None:
    def spam(name: str) -> None:
        for i in range(300):
            transport.send("iopub", new_message("stream", {"name": name, "text": str(i)}))

    threads = [threading.Thread(target=spam, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    received = _drain(subscriber, 1200, transport)
    assert len(received) == 1200
    for n in range(4):  # each thread's messages in its own order
        texts = [m["content"]["text"] for m in received if m["content"]["name"] == f"t{n}"]
        assert texts == [str(i) for i in range(300)]


class _Reader:
    """Reads a subscriber on a thread of its own, collecting each message's text."""

    def __init__(self, sock: zmq.Socket[bytes], codec: Codec) -> None:
        self._sock, self._codec = sock, codec
        self._texts: list[str] = []
        self._changed = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)

    def _read(self) -> None:
        while self._running:
            if not self._sock.poll(50):
                continue
            frames = self._sock.recv_multipart()
            with self._changed:
                self._texts.append(self._codec.decode(frames)[1]["content"]["text"])
                self._changed.notify_all()

    def until(self, last: str) -> list[str]:
        """The texts read since the previous call, up to ``last`` (bounded wait)."""
        with self._changed:
            self._changed.wait_for(lambda: last in self._texts, 30)
            taken = self._texts[: self._texts.index(last) + 1] if last in self._texts else []
            del self._texts[: len(taken)]
            return taken


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_asynchronous_exception_never_splits_a_message(
    transport: ZmqTransport, subscriber: zmq.Socket[bytes]
) -> None:
    """A subshell interrupt (PyThreadState_SetAsyncExc) lands on a thread that is sending."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    # The subscriber reads all the time, as a front end does: one that stops reading while
    # the thread sends flat out is a stalled client, whose output the transport drops.
    reader = _Reader(subscriber, transport.codec)
    try:
        for round_ in range(8):  # each interrupt lands at a random point of the send path
            sent: list[str] = []
            started = threading.Event()

            def spam(
                sent: list[str] = sent, started: threading.Event = started, round_: int = round_
            ) -> None:
                started.set()
                try:
                    for i in range(1_000_000):
                        text = f"{round_}.{i}"
                        transport.send("iopub", new_message("stream", {"name": "x", "text": text}))
                        sent.append(text)
                except KeyboardInterrupt:
                    pass

            drops_before = transport.iopub_drops.total
            thread = threading.Thread(target=spam)
            thread.start()
            assert started.wait(10)
            time.sleep(0.02)
            # Raised asynchronously, the exception may land in a gc callback, where CPython
            # ignores it ("Exception ignored in ..."): then it is raised again.
            for _ in range(20):
                set_async_exc(
                    ctypes.c_ulong(thread.ident or 0), ctypes.py_object(KeyboardInterrupt)
                )
                thread.join(timeout=1)
                if not thread.is_alive():
                    break
            assert not thread.is_alive()
            transport.send("iopub", new_message("stream", {"name": "x", "text": f"{round_}.after"}))
            # Every message decodes (a split one fails its signature or frame count: the
            # reader stops), in order, and the one after the interrupt arrives whole.  The
            # message being sent when the interrupt struck may or may not have gone.  The
            # reader shares this process's GIL with the sender: should it fall behind for
            # IOPUB_STALL, the transport drops for it (counted), and libzmq then skips it
            # until it has caught up (one suite run beside another: 14,773 missed after 65
            # counted drops).  So messages are missing only where drops were counted.
            received = reader.until(f"{round_}.after")
            assert received, f"round {round_}: the last message never came"
            interrupted = f"{round_}.{len(sent)}"
            candidates = [*sent, interrupted]
            assert _in_order_within(received[:-1], candidates)
            missing = set(candidates) - set(received)
            dropped = transport.iopub_drops.total - drops_before
            if not dropped:
                assert missing <= {interrupted}, missing
            else:
                assert missing, f"round {round_}: {dropped} drops counted, nothing missing"
    finally:
        reader.stop()


def _in_order_within(texts: list[str], sent: list[str]) -> bool:
    """Whether ``texts`` are some of ``sent``, each once, in ``sent``'s order."""
    remaining = iter(sent)
    return all(any(text == candidate for candidate in remaining) for text in texts)


def test_a_send_that_reads_the_notice_of_a_request_wakes_the_reader(
    transport: ZmqTransport,
) -> None:
    """A send may consume the notice (``zmq.FD``) of a message that just arrived; the I/O
    thread must still read it.  Peers lost requests to a send eating the poller's wake-up.

    White-box: the I/O thread is parked in a timer and marked as waiting, the state in which
    another thread sends directly; the request then arrives and a send reads its notice.
    """
    inbox = transport._reader.deliver  # pyright: ignore[reportPrivateUsage]
    assert isinstance(inbox, _Inbox)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client = ctx.socket(zmq.DEALER)
    client.connect(transport.info.url("shell"))
    parked, release = threading.Event(), threading.Event()
    try:
        client.send_multipart(transport.codec.encode(new_message("kernel_info_request", {})))
        assert inbox.wait_for(1, timeout=10)
        identities = inbox.messages[0][0]
        transport.call_later(0, lambda: (parked.set(), release.wait(10)))
        assert parked.wait(10)
        transport._outbox.io_waits()  # pyright: ignore[reportPrivateUsage]
        client.send_multipart(transport.codec.encode(new_message("kernel_info_request", {})))
        time.sleep(0.2)  # the request is in the socket, its notice on the descriptor
        shell = transport._sockets.by_channel["shell"]  # pyright: ignore[reportPrivateUsage]
        notice = cast(int, shell.getsockopt(zmq.FD))
        assert select.select([notice], [], [], 0)[0], "no notice of the request"
        transport.send("shell", new_message("kernel_info_reply", {}), identities)
        # The send read the notice (the descriptor may be re-armed a moment later by the
        # reply's own traffic, but nothing promises that): only a wake-up tells the I/O
        # thread now.
        assert transport._waker.pending  # pyright: ignore[reportPrivateUsage]
        release.set()
        assert inbox.wait_for(2, timeout=5), "the request whose notice a send read was lost"
    finally:
        release.set()
        client.close(linger=0)
        ctx.term()


class _ThreadInbox(_Inbox):
    """Also records which thread delivered each message."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, channel: Channel, identities: list[bytes], msg: Message) -> None:
        self.threads.append(threading.current_thread().name)
        super().__call__(channel, identities, msg)


@pytest.fixture
def lent() -> Iterator[tuple[ZmqTransport, _ThreadInbox, zmq.Socket[bytes]]]:
    """A transport whose shell channel will be lent, and a client connected to it."""
    info = ConnectionInfo()
    inbox = _ThreadInbox()
    t = ZmqTransport(info, Codec(info.key.encode()))
    t.start(inbox)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client = ctx.socket(zmq.DEALER)
    client.connect(info.url("shell"))
    try:
        yield t, inbox, client
    finally:
        client.close(linger=0)
        ctx.term()
        t.close()


def _request(transport: ZmqTransport, client: zmq.Socket[bytes]) -> None:
    client.send_multipart(transport.codec.encode(new_message("kernel_info_request", {})))


def test_a_free_loop_reads_its_lent_channel_alone(
    lent: tuple[ZmqTransport, _ThreadInbox, zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken by a request for a free loop, the I/O thread steps aside: every request is
    delivered by the loop (without the loan the two threads race, and each wins some)."""
    transport, inbox, client = lent
    monkeypatch.setattr(io_thread, "LOAN_GRACE", 5.0)  # a slow machine's loop still wins
    stop = threading.Event()

    def loop() -> None:  # stands in for the kernel's main loop and its shell reader
        notice = transport.notice_fd("shell")
        while not stop.is_set():
            if select.select([notice], [], [], 0.05)[0]:
                transport.read_here("shell")

    _request(transport, client)  # read by the I/O thread, once it has started
    assert inbox.wait_for(1, timeout=10)
    reader = threading.Thread(target=loop, name="the-loop")
    transport.lend("shell", lambda: True)
    reader.start()
    try:
        for count in range(2, 22):
            _request(transport, client)
            assert inbox.wait_for(count, timeout=10)
    finally:
        stop.set()
        reader.join(timeout=10)
    assert inbox.threads[1:] == ["the-loop"] * 20


def test_a_request_for_a_blocked_loop_is_read_after_the_grace(
    lent: tuple[ZmqTransport, _ThreadInbox, zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop that says it is free but never reads (blocked outside any request) delays
    its requests by the grace period only."""
    transport, inbox, client = lent
    monkeypatch.setattr(io_thread, "LOAN_GRACE", 0.05)
    transport.lend("shell", lambda: True)
    for count in range(1, 4):
        _request(transport, client)
        assert inbox.wait_for(count, timeout=10), "a request for a blocked loop was never read"
    assert set(inbox.threads) == {"async-kernel-io"}


def test_a_busy_loop_leaves_its_lent_channel_to_the_io_thread(
    lent: tuple[ZmqTransport, _ThreadInbox, zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a request in hand the loop may block at any moment: no grace then."""
    transport, inbox, client = lent
    monkeypatch.setattr(io_thread, "LOAN_GRACE", 60.0)  # a grace would outlast the test
    transport.lend("shell", lambda: False)
    _request(transport, client)
    assert inbox.wait_for(1, timeout=10)
    transport.lend("shell", None)  # the loan ended: read at once as well
    transport.lend("shell", lambda: True)
    transport.lend("shell", None)
    _request(transport, client)
    assert inbox.wait_for(2, timeout=10)
    assert inbox.threads == ["async-kernel-io"] * 2


@pytest.mark.skipif(sys.platform != "linux", reason="the CPU is yielded on Linux only")
def test_waiting_for_sent_replies_yields_the_cpu(
    lent: tuple[ZmqTransport, _ThreadInbox, zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before heavy work, libzmq's I/O thread (woken on this CPU by our sends) runs first."""
    transport, _, _ = lent
    yields: list[int] = []
    monkeypatch.setattr(outbox.os, "sched_yield", lambda: yields.append(1))
    transport.send("iopub", new_message("status", {"execution_state": "idle"}))
    assert transport.wait_sent(timeout=5)
    assert yields == [1]


@pytest.mark.parametrize("channel", ["shell", "control", "stdin"])
def test_a_reconnect_with_the_same_identity_gets_the_replies(
    transport: ZmqTransport, channel: Channel
) -> None:
    """ROUTER_HANDOVER: a server's new connection for the same session (JupyterLab's second
    websocket) takes the identity over from the old one, which the kernel still holds."""
    inbox = transport._reader.deliver  # pyright: ignore[reportPrivateUsage]
    assert isinstance(inbox, _Inbox)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    old, new = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    try:
        for sock in (old, new):
            sock.setsockopt(zmq.IDENTITY, b"session-1")
        old.connect(transport.info.url(channel))
        old.send_multipart(transport.codec.encode(new_message("kernel_info_request", {})))
        assert inbox.wait_for(1, timeout=10)
        assert inbox.messages[0][0] == [b"session-1"]
        new.connect(transport.info.url(channel))  # the old connection is still open
        new.send_multipart(transport.codec.encode(new_message("kernel_info_request", {})))
        assert inbox.wait_for(2, timeout=10)
        transport.send(channel, new_message("kernel_info_reply", {}), [b"session-1"])
        assert new.poll(10_000), "the new connection got no reply"
        _, reply = transport.codec.decode(new.recv_multipart())
        assert reply["msg_type"] == "kernel_info_reply"
        assert not old.poll(0)
    finally:
        old.close(linger=0)
        new.close(linger=0)
        ctx.term()


def _subscribe(
    ctx: zmq.Context[zmq.Socket[bytes]], url: str, *, small: bool = False
) -> zmq.Socket[bytes]:
    sub = ctx.socket(zmq.SUB)
    if small:  # the client's own queue holds little: the kernel's bound is what is tested
        sub.rcvhwm = 1
        sub.setsockopt(zmq.RCVBUF, 64 * 1024)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(url)
    assert sub.poll(10_000), "no iopub_welcome"
    sub.recv_multipart()
    return sub


# Messages a reader may lag behind the sender and still never fill its queue at iopub
# (IOPUB_HWM, counted as libzmq counts, in steps of half of it), while more than the test's
# budget (8 messages) waits for the stalled client.
_KEEP_UP = 12


def test_output_for_a_client_that_does_not_read_is_bounded_and_counted(
    transport: ZmqTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stalled subscriber costs the kernel a bounded backlog; past it its messages are
    dropped, counted and logged, while a subscriber that keeps up gets every one, in order;
    once the stalled one has caught up it gets new messages again."""
    # The production stall: a reader on a loaded machine can pause for a fifth of a second
    # and would then count as stalled.
    monkeypatch.setattr(iopub, "IOPUB_STALL", 1.0)
    monkeypatch.setattr(iopub, "IOPUB_BACKLOG", 2 * 1024 * 1024)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    stalled = _subscribe(ctx, transport.info.url("iopub"), small=True)
    reader = _subscribe(ctx, transport.info.url("iopub"))
    chunk = "x" * (256 * 1024)
    got: list[str] = []

    def read() -> None:
        while len(got) < 200 and reader.poll(20_000):
            got.append(transport.codec.decode(reader.recv_multipart())[1]["content"]["text"][:8])

    thread = threading.Thread(target=read)
    thread.start()
    try:
        peak = 0
        for i in range(200):  # 50 MiB of output, far past the bound
            # The reader keeps up: at most _KEEP_UP messages behind.  Sent flat out, the
            # output outran the network beside a CPU hog (2 runs in 10), the reader's own
            # queue filled too, and past the budget it missed messages like the stalled one:
            # by design, as the budget bounds the kernel's memory whoever is slow.
            deadline = time.monotonic() + 20
            while len(got) < i - _KEEP_UP and time.monotonic() < deadline:
                time.sleep(0.001)
            transport.send(
                "iopub", new_message("stream", {"name": "stdout", "text": f"{i:08}{chunk}"})
            )
            with transport._sockets.lock:  # pyright: ignore[reportPrivateUsage]
                peak = max(peak, transport._outbox.iopub.backlog_bytes)  # pyright: ignore[reportPrivateUsage]
            if i == 100:
                time.sleep(1.5)  # past the stall: from here the stalled client loses messages
        thread.join(timeout=30)
        assert got == [f"{i:08}" for i in range(200)]
        assert peak <= 2 * 1024 * 1024 + 300 * 1024
        assert transport.iopub_drops.total > 0
        assert "has not read its output" in caplog.text
        # The stalled client reads again: what was queued for it arrives, then new output.
        texts: list[str] = []
        deadline = time.monotonic() + 20
        while "back" not in texts and time.monotonic() < deadline:
            transport.send("iopub", new_message("stream", {"name": "stdout", "text": "back"}))
            while stalled.poll(100):
                texts.append(Codec().decode(stalled.recv_multipart())[1]["content"].get("text", ""))
        assert "back" in texts
        assert len(texts) < 200  # it missed some
    finally:
        thread.join(timeout=30)
        stalled.close(linger=0)
        reader.close(linger=0)
        ctx.term()
