"""An asynchronous exception (an interrupt of a subshell's cell, a cancelled to_thread call)
never cuts a message in two, also one with a large frame, which goes out through pyzmq
without a copy rather than through the GIL-held libzmq calls."""

from __future__ import annotations

import threading
import time

import pytest
import zmq
from conftest import inproc_pair

from async_kernel.async_exceptions import can_raise_in_threads, raise_in_thread
from async_kernel.transport.frames import prepare_zero_copy, send_multipart
from async_kernel.transport.libzmq import ZERO_COPY_FROM

pytestmark = pytest.mark.skipif(
    not can_raise_in_threads(), reason="this interpreter cannot raise in other threads"
)

WAIT = 10.0  # seconds; every wait is bounded
SENDS = 3000  # messages the sender sends while it is interrupted


@pytest.mark.parametrize("large", [False, True], ids=["small-frames", "a-large-frame"])
def test_interrupts_never_cut_a_message(large: bool) -> None:
    body = b"B" * (ZERO_COPY_FROM + 1 if large else 100)
    message = [b"id", b"<IDS|MSG>", b"sig", b"header", b"parent", b"metadata", body, b"END"]
    interrupted = 0
    sent = 0

    prepare_zero_copy()  # as the transport does when it starts
    with inproc_pair("frames-interrupted") as (sender, receiver):
        sender.sndhwm = receiver.rcvhwm = 0  # never full: every message is sent

        def send_all() -> None:
            nonlocal interrupted, sent
            while sent < SENDS:
                try:
                    while sent < SENDS:
                        send_multipart(sender, message)
                        sent += 1
                except KeyboardInterrupt:
                    interrupted += 1

        thread = threading.Thread(target=send_all)
        thread.start()
        assert thread.ident is not None
        deadline = time.monotonic() + 6 * WAIT
        while thread.is_alive():
            assert time.monotonic() < deadline, "the sender never finished"
            raise_in_thread(thread.ident, KeyboardInterrupt)
            time.sleep(0.0002)
        thread.join(WAIT)
        received = 0
        while receiver.poll(0):
            got = receiver.recv_multipart(zmq.NOBLOCK)
            assert got == message, f"a cut or glued message: {len(got)} frames"
            received += 1
    # Every message went out whole or not at all; the one interrupted mid-send (at most
    # one per interrupt, before its first frame) is not counted as sent.
    assert received >= sent
    assert interrupted > 0, "the sender was never interrupted: the test proved nothing"
