"""The user's IPython profile: ``ipython_config.py`` and ``startup/`` scripts, as in IPython.

Users keep their magics, extensions and imports there; a kernel that ignored them would
behave unlike the IPython they know.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from IPython.paths import locate_profile
from traitlets.config import Config

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["StartupShell", "load_profile_config", "run_startup_files"]

log = logging.getLogger("async_kernel.shell.profile")


@functools.cache  # asked twice at start-up (config, then startup files)
def _profile_dir() -> Path | None:
    try:
        return Path(locate_profile("default"))
    except OSError:  # none (IPython's ProfileDirError becomes an OSError here)
        return None


def load_profile_config(command_line: Sequence[str] = ()) -> Config:
    """The default profile's ``ipython_config.py`` and ``ipython_kernel_config.py``, then
    ``command_line``'s ``--Class.trait=value`` arguments over them (as in IPython)."""
    config = Config()
    # Libraries (tqdm.autonotebook among them) tell a notebook kernel from a terminal by
    # this section's presence, as IPython's own kernel application creates it.
    config.IPKernelApp = Config()
    profile = _profile_dir()
    if profile is not None:
        from traitlets.config.loader import PyFileConfigLoader

        for name in ("ipython_config.py", "ipython_kernel_config.py"):
            if (profile / name).is_file():
                try:
                    config.merge(PyFileConfigLoader(name, path=str(profile)).load_config())
                except Exception:
                    log.exception("could not load %s", profile / name)
    if command_line:
        from traitlets.config.loader import KVArgParseConfigLoader

        config.merge(KVArgParseConfigLoader(argv=list(command_line)).load_config())
    return config


class StartupShell(Protocol):
    """What running startup files needs from the shell (IPython leaves these untyped)."""

    @property
    def user_ns(self) -> dict[str, Any]:
        """The namespace the files run in."""
        ...

    def safe_execfile(self, fname: str, *where: dict[str, Any]) -> None:
        """Run a Python file in ``where``, reporting (not raising) its errors."""
        ...

    def safe_execfile_ipy(self, fname: str) -> None:
        """Run an IPython script (magics allowed), reporting its errors."""
        ...


def run_startup_files(shell: StartupShell) -> None:
    """Run the profile's ``startup/*.py`` and ``*.ipy`` files, in name order."""
    profile = _profile_dir()
    if profile is None:
        return
    startup = profile / "startup"
    if not startup.is_dir():
        return
    # Not glob("*.py*"): that pattern misses "x.ipy" (and compiles a regex at start-up).
    for path in sorted(p for p in startup.iterdir() if p.suffix in (".py", ".ipy")):
        try:
            if path.suffix == ".ipy":
                shell.safe_execfile_ipy(str(path))
            else:
                shell.safe_execfile(str(path), shell.user_ns)
        except Exception:
            log.exception("startup file %s failed", path)
