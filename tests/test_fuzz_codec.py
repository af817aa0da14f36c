"""Fuzzing the wire codec in process: decode returns a message or raises ProtocolError.

Nothing else may escape ``Codec.decode``: the transport's I/O thread only catches
ProtocolError, and any other exception there would be a dropped socket loop.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_kernel.transport.wire import DELIMITER, Codec, ProtocolError, dumps, new_message

KEY = b"fuzz-key"
EXAMPLES = 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
header_values = json_values | st.text(max_size=30)


def _sign(parts: list[bytes], key: bytes = KEY, digest: str = "sha256") -> bytes:
    mac = hmac.new(key, digestmod=digest)
    for part in parts:
        mac.update(part)
    return mac.hexdigest().encode()


def _frames(parts: list[bytes], *, identities: list[bytes] | None = None) -> list[bytes]:
    return [*(identities or [b"client"]), DELIMITER, _sign(parts), *parts]


def _decode_or_protocol_error(codec: Codec, frames: list[bytes]) -> dict[str, Any] | None:
    try:
        _, msg = codec.decode(frames)
    except ProtocolError:
        return None
    assert isinstance(msg["header"], dict)
    assert isinstance(msg["msg_id"], str)
    assert isinstance(msg["msg_type"], str)
    assert isinstance(msg["content"], dict)
    assert isinstance(msg["parent_header"], dict)
    assert isinstance(msg["metadata"], dict)
    # Whatever was accepted can be answered: encoding it back must not fail either.
    codec.encode(new_message("x_reply", msg["content"], msg))
    return msg


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=10))
def test_random_frames(frames: list[bytes]) -> None:
    _decode_or_protocol_error(Codec(KEY), frames)
    _decode_or_protocol_error(Codec(b""), frames)


@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=4, max_size=4), st.lists(st.binary(), max_size=3))
def test_random_bytes_correctly_signed(parts: list[bytes], buffers: list[bytes]) -> None:
    _decode_or_protocol_error(Codec(KEY), [*_frames(parts), *buffers])


@FUZZ
@given(st.lists(json_values, min_size=4, max_size=4))
def test_random_json_correctly_signed(values: list[Any]) -> None:
    parts = [json.dumps(v).encode() for v in values]
    _decode_or_protocol_error(Codec(KEY), _frames(parts))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["msg_id", "msg_type", "session", "username", "date", "version"])
        | st.text(max_size=6),
        header_values,
        max_size=7,
    ),
    json_values,
    json_values,
    json_values,
)
def test_wrong_types_in_header_and_content(
    header: dict[str, Any], parent: Any, metadata: Any, content: Any
) -> None:
    parts = [json.dumps(x).encode() for x in (header, parent, metadata, content)]
    msg = _decode_or_protocol_error(Codec(KEY), _frames(parts))
    wellformed = (
        isinstance(header.get("msg_id"), str)
        and isinstance(header.get("msg_type"), str)
        and isinstance(content, dict)
    )
    assert (msg is not None) == wellformed


@FUZZ
@given(st.text(max_size=40))
def test_unicode_oddities_round_trip(text: str) -> None:
    """Lone surrogates (which Python's json escapes) survive decode and re-encode."""
    content = {"code": text, "list": [text]}
    parts = [json.dumps(x).encode() for x in ({"msg_id": "a", "msg_type": "t"}, {}, {}, content)]
    msg = _decode_or_protocol_error(Codec(KEY), _frames(parts))
    assert msg is not None and msg["content"] == content


def test_huge_and_empty_messages() -> None:
    codec = Codec(KEY)
    big = {"code": "x" * (8 * 1024 * 1024), "data": list(range(100_000))}
    frames = codec.encode(new_message("execute_request", big), [b"id"])
    _, msg = codec.decode(frames)
    assert msg["content"] == big
    deep: Any = []
    for _ in range(600):
        deep = [deep]
    frames = codec.encode(new_message("comm_msg", {"data": {"deep": deep}}), [b"id"])
    assert codec.decode(frames)[1]["content"]["data"]["deep"] == deep
    for frames in ([], [DELIMITER], [DELIMITER, b"", b"", b"", b"", b""], [b""] * 1000):
        with pytest.raises(ProtocolError):
            codec.decode(frames)
    too_deep = b"[" * 100_000 + b"]" * 100_000
    parts = [b'{"msg_id":"a","msg_type":"t"}', b"{}", b"{}", too_deep]
    with pytest.raises(ProtocolError):
        codec.decode(_frames(parts))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda sig, parts: b"", id="missing"),
        pytest.param(lambda sig, parts: b"0" * len(sig), id="wrong"),
        pytest.param(lambda sig, parts: sig[:-2], id="truncated"),
        pytest.param(lambda sig, parts: sig.upper(), id="case"),
        pytest.param(lambda sig, parts: _sign(parts, digest="sha512"), id="other-scheme"),
        pytest.param(lambda sig, parts: _sign(parts, key=b"other"), id="other-key"),
    ],
)
def test_bad_signatures_are_refused(mangle: Any) -> None:
    codec = Codec(KEY)
    frames = codec.encode(new_message("kernel_info_request", {}), [b"id"])
    parts = frames[3:7]
    frames[2] = mangle(frames[2], parts)
    with pytest.raises(ProtocolError):
        codec.decode(frames)


def test_replayed_signature_is_refused() -> None:
    codec = Codec(KEY)
    frames = codec.encode(new_message("kernel_info_request", {}), [b"id"])
    codec.decode(list(frames))
    with pytest.raises(ProtocolError, match="replayed"):
        codec.decode(list(frames))
    # Another identity in front of the same signed parts is still a replay.
    with pytest.raises(ProtocolError, match="replayed"):
        codec.decode([b"someone-else", *frames[1:]])


@FUZZ
@given(st.binary(max_size=64), st.sampled_from(["hmac-sha256", "hmac-sha512", "hmac-md5"]))
def test_schemes_only_accept_their_own(noise: bytes, scheme: str) -> None:
    codec = Codec(KEY, scheme)
    parts = [dumps({"msg_id": noise.hex(), "msg_type": "t"}), b"{}", b"{}", b"{}"]
    digest = scheme.removeprefix("hmac-")
    others = {"sha256", "sha512", "md5"} - {digest}
    for other in sorted(others):
        with pytest.raises(ProtocolError):
            codec.decode([DELIMITER, _sign(parts, digest=other), *parts])
    sig = hmac.new(KEY, b"".join(parts), getattr(hashlib, digest)).hexdigest().encode()
    codec.decode([DELIMITER, sig, *parts])
