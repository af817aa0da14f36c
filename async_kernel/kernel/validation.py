"""Content checks for incoming messages, before any handler sees them.

A signed message can still carry nonsense (``cursor_pos: "x"``, ``code: null``).  Handlers
may then assume the types the protocol promises; a request that breaks them gets an error
reply naming the field, so the client learns what it got wrong instead of a stack trace.
Fields the protocol marks optional may be missing; a present field must have its type.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["invalid_content"]

_JSON_TYPES: Final = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    dict: "an object",
    list: "an array",
}

# msg_type -> (required fields, optional fields), each field name -> expected type.
_SCHEMAS: Final[dict[str, tuple[dict[str, type], dict[str, type]]]] = {
    "execute_request": (
        {"code": str},
        {
            "silent": bool,
            "store_history": bool,
            "user_expressions": dict,
            "allow_stdin": bool,
            "stop_on_error": bool,
        },
    ),
    "complete_request": ({"code": str}, {"cursor_pos": int}),
    "inspect_request": ({"code": str}, {"cursor_pos": int, "detail_level": int}),
    "history_request": (
        {},
        {
            "output": bool,
            "raw": bool,
            "hist_access_type": str,
            "session": int,
            "start": int,
            "stop": int,
            "n": int,
            "pattern": str,
            "unique": bool,
        },
    ),
    "is_complete_request": ({"code": str}, {}),
    "comm_info_request": ({}, {"target_name": str}),
    "shutdown_request": ({}, {"restart": bool}),
    "comm_open": ({"comm_id": str, "target_name": str}, {"data": dict}),
    "comm_msg": ({"comm_id": str}, {"data": dict}),
    "comm_close": ({"comm_id": str}, {"data": dict}),
    "input_reply": ({}, {"value": str}),
}


def _has_type(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def invalid_content(msg_type: str, content: dict[str, Any]) -> str | None:
    """Why ``content`` is not acceptable for ``msg_type``, or None if it is (or is unknown)."""
    schema = _SCHEMAS.get(msg_type)
    if schema is None:
        return None
    required, optional = schema
    for name, expected in required.items():
        if name not in content:
            return f"{msg_type}: field {name!r} is required"
        if not _has_type(content[name], expected):
            return f"{msg_type}: field {name!r} must be {_JSON_TYPES[expected]}"
    for name, expected in optional.items():
        value = content.get(name)
        if value is not None and not _has_type(value, expected):
            return f"{msg_type}: field {name!r} must be {_JSON_TYPES[expected]}"
    return None
