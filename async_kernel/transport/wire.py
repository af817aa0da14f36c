"""The Jupyter wire format: multipart frames <-> message dicts, with HMAC signing.

A message on the wire is ``[*identities, b"<IDS|MSG>", signature, header, parent_header,
metadata, content, *buffers]``.  The signature is an HMAC over the four JSON frames with the
key and scheme of the connection file; an empty key means messages are unsigned.

This module owns only the encoding.  It never touches a socket, so the same codec serves the
ZMQ transport and the fuzz tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, Literal, SupportsFloat, cast

import orjson

__all__ = [
    "DELIMITER",
    "PROTOCOL_VERSION",
    "Channel",
    "Codec",
    "Message",
    "ProtocolError",
    "error_content",
    "new_message",
]

DELIMITER: Final = b"<IDS|MSG>"
PROTOCOL_VERSION: Final = "5.5"

Message = dict[str, Any]
Channel = Literal["shell", "control", "stdin", "iopub", "hb"]
"""The kernel's channels (the heartbeat's carries no messages, only echoes)."""
"""A message as jupyter_client and the ``comm`` package see it: header, parent_header,
metadata, content and buffers, plus msg_id and msg_type copied from the header."""

_REQUIRED_HEADER_FIELDS: Final = ("msg_id", "msg_type")
_DUMPS_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SESSION: Final = uuid.uuid4().hex
_message_numbers = itertools.count(1)


class ProtocolError(ValueError):
    """A message that cannot be accepted; the text says why (it is logged, never raised on)."""


def _json_default(obj: object) -> Any:
    """Encode what orjson does not know the way jupyter_client does."""
    if isinstance(obj, bytes | bytearray | memoryview):
        data = cast("bytes | bytearray | memoryview[int]", obj)  # memoryview of any format
        return base64.b64encode(data).decode("ascii")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(cast("Iterable[object]", obj))
    if isinstance(obj, SupportsFloat):  # has __float__
        return float(obj)
    return repr(obj)


def dumps(obj: object) -> bytes:
    """Serialize to JSON bytes; dates become ISO-8601 strings.

    orjson refuses what a client may legally have sent us (lone surrogates, integers beyond
    64 bits, nesting deeper than 254); the standard library, escaping to ASCII, does not.
    """
    try:
        return orjson.dumps(obj, default=_json_default, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(obj, default=_json_default, ensure_ascii=True).encode("ascii")


def loads(data: bytes) -> Any:
    """Parse JSON; what orjson rejects but Python's json reads (e.g. an escaped lone
    surrogate, which jupyter_client can send) gets a second chance."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as err:
            raise ProtocolError(f"invalid JSON: {err}") from None


def new_header(
    msg_type: str, *, session: str = _SESSION, username: str = "kernel"
) -> dict[str, Any]:
    return {
        # Unique without a system call per message: this process's session plus a counter.
        "msg_id": f"{session}_{next(_message_numbers)}",
        "msg_type": msg_type,
        "username": username,
        "session": session,
        "date": datetime.now(UTC),
        "version": PROTOCOL_VERSION,
    }


def new_message(
    msg_type: str,
    content: dict[str, Any],
    parent: Message | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    buffers: list[bytes] | None = None,
) -> Message:
    """Build a message whose parent_header is ``parent``'s header (empty without a parent)."""
    header = new_header(msg_type)
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": msg_type,
        "parent_header": parent["header"] if parent else {},
        "metadata": metadata if metadata is not None else {},
        "content": content,
        "buffers": buffers or [],
    }


def _json_object(value: object) -> dict[str, Any] | None:
    """A decoded part as a JSON object (whose keys are strings); None if it is not one."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else None


def error_content(ename: str, evalue: str) -> dict[str, Any]:
    """The content of an error reply that has no traceback to show."""
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": []}


def assemble(
    header: dict[str, Any],
    parent_header: object,
    metadata: object,
    content: object,
    buffers: list[Any],
) -> Message:
    """A message dict from checked parts; a parent or metadata that is not an object is empty."""
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": parent_header if isinstance(parent_header, dict) else {},
        "metadata": metadata if isinstance(metadata, dict) else {},
        "content": content,
        "buffers": buffers,
    }


class Codec:
    """Turns messages into signed frames and back, refusing forged and replayed messages.

    ``replay_history`` bounds the memory of seen signatures: a duplicate within that window is
    refused.  Signatures older than the window can no longer be recognised, which is the
    trade-off every Jupyter kernel makes.
    """

    def __init__(
        self, key: bytes = b"", scheme: str = "hmac-sha256", *, replay_history: int = 1 << 16
    ) -> None:
        if key and not scheme.startswith("hmac-"):
            raise ValueError(f"unsupported signature scheme {scheme!r}")
        self._hmac: hmac.HMAC | None = None
        if key:
            digest = scheme.removeprefix("hmac-")
            try:
                hashlib.new(digest)
            except ValueError:
                raise ValueError(f"unsupported signature scheme {scheme!r}") from None
            self._hmac = hmac.new(key, digestmod=digest)
        self._seen: set[bytes] = set()
        self._seen_order: deque[bytes] = deque()
        self._history = replay_history

    def sign(self, parts: list[bytes]) -> bytes:
        if self._hmac is None:
            return b""
        mac = self._hmac.copy()
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode("ascii")

    def encode(self, msg: Message, identities: list[bytes] | None = None) -> list[bytes]:
        """The frames for ``msg``, addressed to ``identities`` (ROUTER) or a topic (PUB)."""
        parts = [
            dumps(msg["header"]),
            dumps(msg.get("parent_header") or {}),
            dumps(msg.get("metadata") or {}),
            dumps(msg.get("content") or {}),
        ]
        frames = [*(identities or []), DELIMITER, self.sign(parts), *parts]
        frames.extend(msg.get("buffers") or [])
        return frames

    def renew(self, frames: list[bytes]) -> list[bytes]:
        """The frames of the same message with a header of its own (a new id and date),
        signed: a message sent again, which clients must not take for a replayed one."""
        identities, rest = self.split_identities(frames)
        header = new_header(loads(rest[1])["msg_type"])
        parts = [dumps(header), *rest[2:5]]
        return [*identities, DELIMITER, self.sign(parts), *parts, *rest[5:]]

    def split_identities(self, frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        try:
            index = frames.index(DELIMITER)
        except ValueError:
            raise ProtocolError("no <IDS|MSG> delimiter in the frames") from None
        return frames[:index], frames[index + 1 :]

    def decode(self, frames: list[bytes]) -> tuple[list[bytes], Message]:
        """Check the signature and parse; raises ProtocolError with the reason on bad input."""
        identities, rest = self.split_identities(frames)
        if len(rest) < 5:
            raise ProtocolError(f"expected at least 5 frames after the delimiter, got {len(rest)}")
        signature, *parts = rest[:5]
        if self._hmac is not None:
            if not signature:
                raise ProtocolError("unsigned message")
            expected = self.sign(parts)
            if not hmac.compare_digest(signature, expected):
                raise ProtocolError("invalid signature")
            if signature in self._seen:
                raise ProtocolError("replayed message (duplicate signature)")
            self._remember(signature)
        header, parent_header, metadata, content = (_json_object(loads(p)) for p in parts)
        if header is None:
            raise ProtocolError("header is not a JSON object")
        for field in _REQUIRED_HEADER_FIELDS:
            if not isinstance(header.get(field), str):
                raise ProtocolError(f"header field {field!r} missing or not a string")
        if content is None:
            raise ProtocolError("content is not a JSON object")
        return identities, assemble(header, parent_header, metadata, content, rest[5:])

    def _remember(self, signature: bytes) -> None:
        self._seen.add(signature)
        self._seen_order.append(signature)
        if len(self._seen_order) > self._history:
            self._seen.discard(self._seen_order.popleft())
