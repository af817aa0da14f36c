"""Shared fixtures: real kernel subprocesses driven by jupyter_client.

``kernel`` is one running kernel per backend for a whole test module (start-up costs about
a second); tests that break a kernel on purpose start their own with ``start_kernel``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

BACKENDS = ["asyncio", "trio"]
TIMEOUT = 15  # seconds any single reply may take in a test


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def kernel_argv(*settings: str) -> list[str]:
    return [sys.executable, "-m", "async_kernel", "-f", "{connection_file}", *settings]


@contextmanager
def start_kernel(
    *settings: str,
    env: dict[str, str] | None = None,
    argv: list[str] | None = None,
    stderr: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A fresh kernel with ``settings`` (e.g. ``--interface.backend=trio``), shut down after.

    ``argv`` replaces the whole command line (a wrapper around the kernel); ``stderr``
    receives the kernel's own stderr (its log, a crash's stack dump); ``cwd`` is where it
    starts."""
    km = KernelManager(kernel_name="async")
    km.kernel_spec.argv = argv or kernel_argv(*settings)  # the spec's argv, with our settings
    launch: dict[str, Any] = {"env": {**os.environ, **(env or {})}}
    if cwd is not None:
        launch["cwd"] = str(cwd)
    with contextlib.ExitStack() as files:
        if stderr is not None:
            launch["stderr"] = files.enter_context(stderr.open("w"))
        km.start_kernel(**launch)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        if km.has_kernel:
            km.shutdown_kernel(now=True)


@contextmanager
def inproc_pair(address: str) -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """Two connected PAIR sockets in this process (sender, receiver) on ``inproc://address``:
    inproc hands libzmq's messages over as they are, so a frame that was not copied arrives
    at the very address it was sent from."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    receiver.bind(f"inproc://{address}")
    sender.connect(f"inproc://{address}")
    try:
        yield sender, receiver
    finally:
        sender.close(linger=0)
        receiver.close(linger=0)
        context.term()


@pytest.fixture(scope="module")
def kernel(backend: str) -> Generator[tuple[KernelManager, BlockingKernelClient]]:
    with start_kernel(f"--interface.backend={backend}") as pair:
        yield pair


@pytest.fixture
def kc(kernel: tuple[KernelManager, BlockingKernelClient]) -> BlockingKernelClient:
    client = kernel[1]
    drain(client)
    return client


def drain(kc: BlockingKernelClient) -> None:
    """Forget messages left over from an earlier test."""
    for channel in (kc.iopub_channel, kc.shell_channel, kc.stdin_channel, kc.control_channel):
        while True:
            try:
                channel.get_msg(timeout=0.01)
            except Exception:
                break


def collect_outputs(
    kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Every iopub message whose parent is ``msg_id``, up to and including its idle status."""
    found: list[dict[str, Any]] = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        found.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return found


def shell_reply(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The shell reply to ``msg_id`` (other replies are skipped)."""
    while True:
        msg = kc.get_shell_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


def shell_replies(
    kc: BlockingKernelClient, msg_ids: list[str], timeout: float = TIMEOUT
) -> dict[str, dict[str, Any]]:
    """The shell replies to every one of ``msg_ids``, in whatever order they come.

    Replies to different requests need not keep the requests' order: one answered while its
    lane's loop is blocked may overtake one answered on that loop.
    """
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(set(msg_ids)):
        msg = kc.get_shell_msg(timeout=timeout)
        parent = msg["parent_header"].get("msg_id")
        if parent in msg_ids:
            found[parent] = msg
    return found


def execute(
    kc: BlockingKernelClient, code: str, **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``code``; returns (execute_reply, iopub messages of that request)."""
    msg_id = kc.execute(code, **kwargs)
    reply = shell_reply(kc, msg_id)
    outputs = collect_outputs(kc, msg_id)
    return reply, outputs


def execute_ok(kc: BlockingKernelClient, code: str) -> list[dict[str, Any]]:
    """Run ``code``, insist on success; its iopub messages."""
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return outputs


def run_ok(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code``, insist on success; its stdout."""
    return stream_text(execute_ok(kc, code))


def stream_text(outputs: list[dict[str, Any]], name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == name
    )


def wait_for_stream(kc: BlockingKernelClient, msg_id: str, text: str) -> None:
    """Block (bounded) until the cell ``msg_id`` has printed ``text``: it is running."""
    deadline = time.monotonic() + TIMEOUT
    seen = ""
    while text not in seen:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
