"""libzmq called with the GIL held (transport/libzmq.py): whole messages, no hand-back.

The point of these calls is that the thread sending or receiving keeps the GIL: a thread
spinning the CPU beside it (a cell's loop) must not run while a message goes out or comes in.
That is checked as cause, not speed: a spinning thread's counter does not move across a send
or a receive (the switch interval is long enough that no forced switch comes due meanwhile).
The same check over pyzmq's calls fails when the spinner gets a CPU at once (a quiet machine,
or ``chrt -f 10`` on a loaded one: the counter moved from 7.0 to 17.6 million across one
send); on a loaded machine the spinner may wake too late to take the GIL at each release.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from conftest import inproc_pair

from async_kernel.transport import frames
from async_kernel.transport.libzmq import LIBZMQ, Libzmq, find_pyzmq_libzmq

pytestmark = pytest.mark.skipif(LIBZMQ is None, reason="pyzmq's libzmq not callable here")

TIMEOUT = 10.0


def libzmq() -> Libzmq:
    assert LIBZMQ is not None
    return LIBZMQ


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    with inproc_pair("libzmq") as pair:
        yield pair


def test_it_is_the_libzmq_pyzmq_loaded() -> None:
    path = find_pyzmq_libzmq()
    assert path is not None and "libzmq" in path
    assert frames.LIBZMQ is LIBZMQ  # the frame calls use it


def test_messages_go_out_and_come_in_whole(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    sender, receiver = pair
    messages = [[b"id", b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", bytes(range(256))], [b""]]
    for message in messages:
        libzmq().send(sender.underlying, message)
    for message in messages:
        assert receiver.poll(TIMEOUT * 1000)
        assert libzmq().recv(receiver.underlying) == message
    # And across to pyzmq's own calls, both ways.
    libzmq().send(sender.underlying, messages[0])
    assert receiver.poll(TIMEOUT * 1000)
    assert receiver.recv_multipart() == messages[0]
    sender.send_multipart(messages[0])
    assert receiver.poll(TIMEOUT * 1000)
    assert libzmq().recv(receiver.underlying) == messages[0]


def test_nothing_waiting_raises_again(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    _, receiver = pair
    with pytest.raises(zmq.Again):
        libzmq().recv(receiver.underlying)


def test_a_refused_message_sends_no_frame_and_the_next_goes_whole() -> None:
    """A full XPUB with NODROP (our iopub) refuses the first frame: nothing of the message
    leaves, and what the subscriber reads is only whole messages."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub, sub = context.socket(zmq.XPUB), context.socket(zmq.SUB)
    try:
        pub.sndhwm = 1
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        sub.rcvhwm = 1
        pub.bind("inproc://full")
        sub.connect("inproc://full")
        sub.subscribe(b"")
        assert pub.poll(TIMEOUT * 1000)
        pub.recv()  # the subscription
        sent = 0
        with pytest.raises(zmq.Again):
            for sent in range(1, 1000):  # the last one is refused
                libzmq().send(pub.underlying, [b"topic", b"%d" % sent, b"end"])
        received: list[list[bytes]] = []
        while sub.poll(200):
            received.append(sub.recv_multipart())
        assert received == [[b"topic", b"%d" % n, b"end"] for n in range(1, sent)]
        libzmq().send(pub.underlying, [b"topic", b"next", b"end"])
        assert sub.poll(TIMEOUT * 1000)
        assert sub.recv_multipart() == [b"topic", b"next", b"end"]
    finally:
        pub.close(linger=0)
        sub.close(linger=0)
        context.term()


def test_a_large_received_frame_is_a_view_of_libzmqs_message(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    """Not copied, kept alive while viewed, closed once the view is gone."""
    sender, receiver = pair
    payload = b"\x05" * (1 << 20)
    sender.send_multipart([b"small", payload], copy=False)
    assert receiver.poll(TIMEOUT * 1000)
    small, large = libzmq().recv(receiver.underlying)
    assert type(small) is bytes
    assert isinstance(large, memoryview)
    owner = large.obj
    assert getattr(owner, "_b_needsfree_", None) == 0  # memory Python did not allocate
    for _ in range(100):  # other messages come and go: the view's stays intact
        sender.send_multipart([b"other", b"\x09" * (1 << 16)])
        assert receiver.poll(TIMEOUT * 1000)
        libzmq().recv(receiver.underlying)
    assert bytes(large) == payload
    del large, owner
    gc.collect()  # the message is closed: libzmq goes on as before
    sender.send_multipart([b"after"])
    assert receiver.poll(TIMEOUT * 1000)
    assert libzmq().recv(receiver.underlying) == [b"after"]


def _spin_counter() -> tuple[list[int], threading.Event, threading.Thread]:
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return count, stop, thread


@pytest.mark.parametrize("direction", ["send", "recv"])
def test_the_gil_is_kept_through_a_message(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]], direction: str
) -> None:
    """A thread spinning beside the sender does not run while a message goes out or comes in:
    the calls keep the GIL (pyzmq's give it up around every frame, and the spinner, waiting
    for it, runs then)."""
    sender, receiver = pair
    # Many frames: each is a release where the spinner, waiting for the GIL, may take it
    # (on a 2-vCPU VM it takes it at most releases; a check over one frame could miss it).
    message = [b"id", b"<IDS|MSG>", b"sig"] + [b"f" * 64] * 300
    before = sys.getswitchinterval()
    # Each turn this thread takes the GIL back from the spinner by force, after one interval;
    # the spinner may force it back only one interval later, long after the message.
    sys.setswitchinterval(0.2)
    count, stop, spinner = _spin_counter()
    try:
        deadline = time.monotonic() + TIMEOUT
        while count[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # a blocking call: the spinner takes the GIL and runs
        for _ in range(8):
            if direction == "recv":
                # Sent with the GIL held too: through pyzmq, each of the 303 frames would wait
                # out the spinner's interval (0.2 s) on a quiet machine, a minute a message.
                frames.send_multipart(sender, message)
                assert receiver.poll(TIMEOUT * 1000)
            time.sleep(0.001)  # the spinner runs; we get the GIL back by force
            seen = count[0]
            if direction == "send":
                frames.send_multipart(sender, message)
            else:
                assert frames.recv_multipart(receiver) == message
            assert count[0] == seen
    finally:
        stop.set()
        sys.setswitchinterval(before)
        spinner.join(TIMEOUT)
    if direction == "send":
        for _ in range(8):
            assert receiver.poll(TIMEOUT * 1000)
            assert receiver.recv_multipart() == message
