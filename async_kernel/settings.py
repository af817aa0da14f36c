"""The kernel's settings, fixed before it starts.

Each setting is described once (:data:`SETTINGS`): the command line's parser, its
``--help-all`` table and docs/cli.md all come from that description (a test compares the
last two).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple, get_args

__all__ = ["SETTINGS", "Backend", "HostLoop", "InterfaceSettings", "Setting", "SettingsError"]

Backend = Literal["asyncio", "trio"]
HostLoop = Literal["plain", "tk", "qt"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class Setting(NamedTuple):
    """One ``--interface.NAME=VALUE`` setting, as the command line and the docs show it."""

    name: str
    choices: tuple[str, ...]  # the values shown; booleans also take 1/0, yes/no, on/off
    help: str

    @property
    def option(self) -> str:
        return f"--interface.{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "backend",
        get_args(Backend),
        "the async library cells run on: top-level `await` uses it directly",
    ),
    Setting(
        "loop",
        get_args(HostLoop),
        "the host event loop that owns the main thread; with `tk` or `qt` the backend runs "
        "as a guest of the GUI loop (qt: PySide6, PyQt6 or PyQt5, or the one `QT_API` names)",
    ),
    Setting(
        "capture_fd_output",
        ("True", "False"),
        "show what is written to file descriptors 1 and 2 while a cell runs (`os.system`, "
        "C `printf`, child processes) as that cell's output; `False` leaves it on the "
        "kernel's terminal (ipykernel: `--IPKernelApp.capture_fd_output`)",
    ),
)


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
    # Off in the callback interface whatever this says: its host owns the process's fds.
    capture_fd_output: bool = True

    def set(self, name: str, value: str) -> None:
        known = {f.name: f for f in fields(self)}
        if name not in known:
            raise SettingsError(
                f"unknown setting 'interface.{name}' (known: {', '.join(sorted(known))})"
            )
        if isinstance(getattr(self, name), bool):
            word = value.strip().lower()
            if word not in _TRUE + _FALSE:
                raise SettingsError(f"interface.{name} must be True or False, not {value!r}")
            setattr(self, name, word in _TRUE)
            return
        allowed = _describe(name).choices
        if value not in allowed:
            raise SettingsError(
                f"interface.{name} must be one of {', '.join(allowed)}, not {value!r}"
            )
        setattr(self, name, value)

    def as_args(self) -> list[str]:
        return [f"--interface.{f.name}={getattr(self, f.name)}" for f in fields(self)]


def _describe(name: str) -> Setting:
    return next(s for s in SETTINGS if s.name == name)
