"""Outcome values handed to a guest run's ``done_callback``.

Why: trio's guest mode reports results as ``outcome.Value``/``outcome.Error``.
We reuse the ``outcome`` package when it is installed (it comes with trio) so
both backends hand the host the same types, but asyncio-only installs must not
need it, so a minimal fallback pair is provided.
"""

from __future__ import annotations

from typing import Generic, Never, Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Outcome(Protocol[T_co]):
    """What a done_callback receives: ``unwrap()`` returns the value or raises."""

    def unwrap(self) -> T_co: ...


class _Value(Generic[T]):
    """Fallback for ``outcome.Value`` when the package is missing."""

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"Value({self.value!r})"


class _Error:
    """Fallback for ``outcome.Error`` when the package is missing."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def unwrap(self) -> Never:
        raise self.error

    def __repr__(self) -> str:
        return f"Error({self.error!r})"


def value(result: T) -> Outcome[T]:
    """Wrap a return value."""
    try:
        import outcome
    except ImportError:  # pragma: no cover - exercised only without trio
        return _Value(result)
    return outcome.Value(result)


def error(exc: BaseException) -> Outcome[Never]:
    """Wrap a raised exception."""
    try:
        import outcome
    except ImportError:  # pragma: no cover - exercised only without trio
        return _Error(exc)
    return outcome.Error(exc)


class GuestRunCancelled(Exception):
    """The host cancelled the guest run before ``async_fn`` returned."""
