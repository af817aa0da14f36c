"""The kernel's settings, fixed before it starts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, get_args

__all__ = ["Backend", "HostLoop", "InterfaceSettings", "SettingsError"]

Backend = Literal["asyncio", "trio"]
HostLoop = Literal["plain", "tk", "qt"]


_CHOICES: dict[str, tuple[str, ...]] = {"backend": get_args(Backend), "loop": get_args(HostLoop)}


class SettingsError(ValueError):
    """A setting that does not exist or has a value it cannot take."""


@dataclass
class InterfaceSettings:
    """``--interface.NAME=VALUE`` on the command line.

    The host loop is chosen once, at start-up: a GUI loop must own the main thread from the
    first instruction, and switching loops inside a live kernel is where other kernels lose
    events or deadlock.
    """

    backend: Backend = "asyncio"
    loop: HostLoop = "plain"

    def set(self, name: str, value: str) -> None:
        known = {f.name: f for f in fields(self)}
        if name not in known:
            raise SettingsError(
                f"unknown setting 'interface.{name}' (known: {', '.join(sorted(known))})"
            )
        allowed = _CHOICES[name]
        if value not in allowed:
            raise SettingsError(
                f"interface.{name} must be one of {', '.join(allowed)}, not {value!r}"
            )
        setattr(self, name, value)

    def as_args(self) -> list[str]:
        return [f"--interface.{f.name}={getattr(self, f.name)}" for f in fields(self)]
