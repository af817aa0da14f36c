"""No Python code runs between the frames of a message being sent, so an asynchronous
exception (an interrupt of a subshell's cell, a cancelled to_thread call) cannot cut one in
two.  For a message with a large frame, which goes out through pyzmq without a copy, the
``zmq.Frame`` wrappers (whose making runs Python code: pyzmq registers the buffer with its
garbage thread) are all made before the first frame is sent.

Checked by order, deterministically: every Python call the send makes is recorded, with the
frames as they go.  (Hammering a sender with asynchronous exceptions instead also lands them
inside pyzmq's own Python code, which does not survive that: seen, a hang and a crash.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from conftest import inproc_pair

from async_kernel.transport import frames
from async_kernel.transport.frames import ZERO_COPY_SEND_FROM, prepare_zero_copy, send_multipart


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    with inproc_pair("frames-order") as pair:
        yield pair


def test_a_large_frames_wrapper_is_made_before_the_first_frame_goes(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sender, receiver = pair
    prepare_zero_copy()
    message = [b"id", b"<IDS|MSG>", b"sig", b"header", b"parent", b"meta"]
    message.append(b"B" * (ZERO_COPY_SEND_FROM + 1))
    message.append(b"END")
    events: list[str] = []
    real_send = frames._send_frame
    gc: Any = zmq.utils.garbage.gc  # pyright: ignore[reportAttributeAccessIssue]
    real_store = gc.store

    def send(sock: zmq.Socket[bytes], frame: Any, flags: int, copy: bool) -> object:
        events.append("send")
        return real_send(sock, frame, flags, copy)

    def store(*args: Any, **kwargs: Any) -> int:
        events.append("python")  # pyzmq's Python code, run for a zero-copy frame
        return real_store(*args, **kwargs)

    monkeypatch.setattr(frames, "_send_frame", send)
    monkeypatch.setattr(gc, "store", store)
    send_multipart(sender, message)
    assert receiver.poll(10_000)
    assert receiver.recv_multipart() == message
    assert "python" in events, "the large frame went without pyzmq's wrapper: nothing checked"
    first_send = events.index("send")
    assert "python" not in events[first_send:], f"Python code between the frames: {events}"
    assert events.count("send") == len(message)
