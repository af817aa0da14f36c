"""The user's IPython profile: ``ipython_config.py`` and ``startup/`` scripts, as in IPython.

Users keep their magics, extensions and imports there; a kernel that ignored them would
behave unlike the IPython they know.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from IPython.core.profiledir import ProfileDir, ProfileDirError
from IPython.paths import get_ipython_dir
from traitlets.config import Config

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["load_profile_config", "run_startup_files"]

log = logging.getLogger("async_kernel.shell.profile")


@functools.cache  # asked twice at start-up (config, then startup files)
def _profile_dir() -> Path | None:
    try:
        return Path(ProfileDir.find_profile_dir_by_name(get_ipython_dir(), "default").location)
    except (ProfileDirError, OSError):
        return None


def load_profile_config() -> Config:
    """The default profile's ``ipython_config.py`` and ``ipython_kernel_config.py``."""
    config = Config()
    # Libraries (tqdm.autonotebook among them) tell a notebook kernel from a terminal by
    # this section's presence, as IPython's own kernel application creates it.
    config.IPKernelApp = Config()
    profile = _profile_dir()
    if profile is None:
        return config
    from traitlets.config.loader import PyFileConfigLoader

    for name in ("ipython_config.py", "ipython_kernel_config.py"):
        if (profile / name).is_file():
            try:
                config.merge(PyFileConfigLoader(name, path=str(profile)).load_config())
            except Exception:
                log.exception("could not load %s", profile / name)
    return config


def run_startup_files(shell: InteractiveShell) -> None:
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
