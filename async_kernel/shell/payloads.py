"""Reply payloads (pager pages, set_next_input, ask_exit) kept per request.

IPython keeps one list for the whole shell; with cells running at once (subshells, ``# task``
cells) one cell's reply would carry, or clear, another's payload.  Here each execute_request
gets its own list through a ContextVar, which tasks it starts inherit.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, cast

from IPython.core.payload import PayloadManager

__all__ = ["RequestPayloads"]

_payloads: ContextVar[list[dict[str, Any]] | None] = ContextVar(
    "async_kernel_payloads", default=None
)


class RequestPayloads(PayloadManager):
    """IPython's payload manager, with one payload list per request context."""

    def begin(self) -> None:
        """Give the current request (this task and what it starts) an empty list."""
        _payloads.set([])

    def _list(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] | None = _payloads.get()
        if found is None:  # code outside any request: fall back to a list of our own
            found = []
            _payloads.set(found)
        return found

    def write_payload(self, data: object, single: bool = True) -> None:
        # ``object``: IPython's callers and user code pass anything; a dict is checked for.
        if not isinstance(data, dict):
            raise TypeError(f"each payload must be a dict, got {data!r}")
        payload = cast("dict[str, Any]", data)
        payloads = self._list()
        if single and "source" in payload:
            for index, existing in enumerate(payloads):
                if existing.get("source") == payload["source"]:
                    payloads[index] = payload
                    return
        payloads.append(payload)

    def read_payload(self) -> list[dict[str, Any]]:
        return list(self._list())

    def clear_payload(self) -> None:
        self._list().clear()
