"""Fuzzing a live kernel over ZMQ with correctly signed garbage.

Every message type of protocol 5.5 (and some the kernel has never heard of) is sent with
random content and random extra header fields.  After each one the kernel must still answer
a well-formed request; every ``*_request`` must get exactly one reply, and one whose content
breaks the protocol's types must get ``status: "error"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from _raw import RawPeers, parse, raw_peers, recv_for, signed_frames
from conftest import TIMEOUT
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from async_kernel.kernel.validation import invalid_content

CASES = int(os.environ.get("ASYNC_KERNEL_FUZZ_CASES", "500"))  # per backend
# No shrinking: every failing step waits out a reply timeout, so shrinking takes minutes.
PHASES = (Phase.explicit, Phase.generate)

SHELL_TYPES = [
    "execute_request",
    "inspect_request",
    "complete_request",
    "history_request",
    "is_complete_request",
    "comm_info_request",
    "kernel_info_request",
    "connect_request",
    "comm_open",
    "comm_msg",
    "comm_close",
]
CONTROL_TYPES = [
    "kernel_info_request",
    "interrupt_request",
    "debug_request",
    "usage_request",
    "create_subshell_request",
    "list_subshell_request",
    "delete_subshell_request",
]
FIELDS = [
    "code", "cursor_pos", "detail_level", "silent", "store_history", "user_expressions",
    "allow_stdin", "stop_on_error", "hist_access_type", "output", "raw", "session", "start",
    "stop", "n", "pattern", "unique", "target_name", "comm_id", "data", "restart", "value",
    "subshell_id", "command", "arguments", "seq", "type",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
# Code that parses is run: keep it away from calls, magics and shell escapes.
safe_code = st.text(alphabet=st.characters(exclude_characters="()!%?@\\\x00"), max_size=30)
contents = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=5),
    values | safe_code,
    max_size=6,
).map(lambda c: {**c, "code": c["code"]} if isinstance(c.get("code"), str) else c)


def _safe(content: dict[str, Any]) -> dict[str, Any]:
    """Nothing the fuzzer sends may wait for input or lock the kernel up on purpose."""
    content = dict(content)
    content.pop("allow_stdin", None)
    return content


@pytest.fixture(scope="module")
def raw(kernel: tuple[KernelManager, BlockingKernelClient]) -> Iterator[RawPeers]:
    with raw_peers(kernel[0].get_connection_info()) as peers:
        peers.shell = peers.connect("shell")  # type: ignore[attr-defined]
        peers.control = peers.connect("control")  # type: ignore[attr-defined]
        peers.stdin = peers.connect("stdin")  # type: ignore[attr-defined]
        yield peers


def _ask(raw: RawPeers, sock: zmq.Socket[Any], msg_type: str, content: Any) -> dict[str, Any]:
    msg_id, frames = signed_frames(raw.key, msg_type, content)
    sock.send_multipart(frames)
    reply = recv_for(sock, msg_id, TIMEOUT)
    assert reply is not None, f"no reply to {msg_type} {content!r}"
    return reply


def _alive(raw: RawPeers, kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    reply = _ask(raw, raw.shell, "kernel_info_request", {})  # type: ignore[attr-defined]
    assert reply["content"]["status"] == "ok"
    assert kernel[0].is_alive()


def _check_reply(msg_type: str, content: dict[str, Any], reply: dict[str, Any]) -> None:
    assert reply["header"]["msg_type"] == msg_type.removesuffix("_request") + "_reply"
    if msg_type == "debug_request":
        return  # the reply is a DAP response: no status field, by the spec
    status = reply["content"].get("status")
    allowed = {"ok", "error", "aborted"}
    if msg_type == "is_complete_request":  # its status says whether the code is complete
        allowed |= {"complete", "incomplete", "invalid", "unknown"}
    assert status in allowed, reply
    if invalid_content(msg_type, content) is not None:
        assert status == "error", (msg_type, content, reply["content"])


def _cleanup(raw: RawPeers, msg_type: str, reply: dict[str, Any]) -> None:
    subshell = reply["content"].get("subshell_id")
    if msg_type == "create_subshell_request" and isinstance(subshell, str):
        _ask(raw, raw.control, "delete_subshell_request", {"subshell_id": subshell})  # type: ignore[attr-defined]


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck), phases=PHASES)
@given(
    channel_and_type=st.one_of(
        st.tuples(st.just("shell"), st.sampled_from(SHELL_TYPES)),
        st.tuples(st.just("control"), st.sampled_from(CONTROL_TYPES)),
        st.tuples(st.sampled_from(["shell", "control"]), st.text(min_size=1, max_size=12)),
        st.tuples(
            st.sampled_from(["shell", "control"]),
            st.text(min_size=1, max_size=8).map(lambda t: t + "_request"),
        ),
    ),
    content=contents,
)
def test_garbage_content_every_msg_type(
    raw: RawPeers,
    kernel: tuple[KernelManager, BlockingKernelClient],
    channel_and_type: tuple[str, str],
    content: dict[str, Any],
) -> None:
    channel, msg_type = channel_and_type
    content = _safe(content)
    sock: zmq.Socket[Any] = getattr(raw, channel)
    if msg_type.endswith("_request"):
        reply = _ask(raw, sock, msg_type, content)
        _check_reply(msg_type, content, reply)
        _cleanup(raw, msg_type, reply)
    else:
        sock.send_multipart(signed_frames(raw.key, msg_type, content)[1])
    _alive(raw, kernel)


@settings(
    max_examples=CASES // 4, deadline=None, suppress_health_check=list(HealthCheck), phases=PHASES
)
@given(
    header_extra=st.dictionaries(
        st.sampled_from(["subshell_id", "session", "username", "date", "version", "x"]),
        values,
        max_size=3,
    ),
    parent=values,
    metadata=values,
    msg_type=st.sampled_from(SHELL_TYPES),
)
def test_garbage_headers_and_metadata(
    raw: RawPeers,
    kernel: tuple[KernelManager, BlockingKernelClient],
    *,
    header_extra: dict[str, Any],
    parent: Any,
    metadata: Any,
    msg_type: str,
) -> None:
    import hashlib
    import hmac
    import json

    from _raw import header

    head = {**header_extra, **header(msg_type)}
    parts = [json.dumps(x).encode() for x in (head, parent, metadata, {"code": "1"})]
    sig = hmac.new(raw.key, b"".join(parts), hashlib.sha256).hexdigest().encode()
    raw.shell.send_multipart([b"<IDS|MSG>", sig, *parts])  # type: ignore[attr-defined]
    if msg_type.endswith("_request"):
        reply = recv_for(raw.shell, head["msg_id"], TIMEOUT)  # type: ignore[attr-defined]
        assert reply is not None, (head, parent, metadata)
    _alive(raw, kernel)


def test_stdin_garbage_and_non_object_content(
    raw: RawPeers, kernel: tuple[KernelManager, BlockingKernelClient]
) -> None:
    """Unexpected stdin messages and non-object content are dropped, never fatal."""
    for content in ({"value": [1, 2]}, {"value": None}, {}, {"x": {"y": 1}}):
        raw.stdin.send_multipart(signed_frames(raw.key, "input_reply", content)[1])  # type: ignore[attr-defined]
        raw.stdin.send_multipart(signed_frames(raw.key, "execute_request", content)[1])  # type: ignore[attr-defined]
    for content in ([], "text", 3, None):
        msg_id, frames = signed_frames(raw.key, "kernel_info_request", content)
        raw.shell.send_multipart(frames)  # type: ignore[attr-defined]
        assert recv_for(raw.shell, msg_id, 0.1) is None  # type: ignore[attr-defined]
    _alive(raw, kernel)
    assert parse  # the helper module is shared with the other reliability tests
