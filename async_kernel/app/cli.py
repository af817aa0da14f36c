"""``async-kernel``: start a kernel, or write, remove and list kernel specs.

Settings use the dotted ``--section.name=value`` form Jupyter users know from traitlets;
every one is described in :data:`async_kernel.settings.SETTINGS`, which ``--help-all`` prints
as a table (docs/cli.md has the same table; a test keeps them equal).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from .._version import __version__
from ..settings import SETTINGS, InterfaceSettings, SettingsError

__all__ = ["help_all_table", "main"]

DEFAULT_LOG_LEVEL = "WARNING"
_LOG_LEVEL_HELP = (
    "level of the kernel's own log, written to stderr (the terminal of the server that "
    "started it, also while fd output is captured)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="async-kernel",
        description="A concurrent Jupyter kernel on asyncio or trio, with tk/qt host loops.",
        epilog="Example: async-kernel -a async-tk --interface.loop=tk --interface.backend=trio"
        "  (--help-all lists every setting with its default)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-f", "--connection-file", metavar="FILE", help="start a kernel on FILE")
    action.add_argument("-a", "--add", metavar="NAME", help="write a kernel spec named NAME")
    action.add_argument("-r", "--remove", metavar="NAME", help="remove the kernel spec NAME")
    action.add_argument("-l", "--list", action="store_true", help="list this kernel's specs")
    parser.add_argument("-V", "--version", action="version", version=f"async-kernel {__version__}")
    parser.add_argument(
        "--help-all", action="store_true", help="show every setting with its default, and exit"
    )
    parser.add_argument("--display_name", "--display-name", help="display name of a new spec")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable the new spec sets for the kernel (repeatable)",
    )
    parser.add_argument("--user", action="store_true", help="use the per-user kernel directory")
    parser.add_argument("--prefix", help="use PREFIX/share/jupyter/kernels")
    defaults = InterfaceSettings()
    for setting in SETTINGS:
        parser.add_argument(
            setting.option,
            dest=setting.name,
            metavar="VALUE" if _is_bool(setting.name) else None,
            choices=None if _is_bool(setting.name) else setting.choices,
            help=f"{_plain(setting.help)} (default: {getattr(defaults, setting.name)})",
        )
    parser.add_argument(
        "--log_level", "--log-level", default=DEFAULT_LOG_LEVEL, help=_LOG_LEVEL_HELP
    )
    return parser


def _is_bool(name: str) -> bool:
    return isinstance(getattr(InterfaceSettings(), name), bool)


def _plain(text: str) -> str:
    return text.replace("`", "")


def help_all_table() -> str:
    """Every setting with its values and default, as the Markdown table docs/cli.md shows."""
    defaults = InterfaceSettings()
    rows = [
        "| setting | values | default | meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        values = ", ".join(f"`{c}`" for c in setting.choices)
        default = getattr(defaults, setting.name)
        rows.append(f"| `{setting.option}` | {values} | `{default}` | {setting.help} |")
    rows.append(
        "| `--log_level` (or `--log-level`) | a `logging` level name | "
        f"`{DEFAULT_LOG_LEVEL}` | {_LOG_LEVEL_HELP} |"
    )
    return "\n".join(rows)


def _settings(args: argparse.Namespace) -> InterfaceSettings:
    settings = InterfaceSettings()
    for setting in SETTINGS:
        value = getattr(args, setting.name)
        if value is not None:
            settings.set(setting.name, value)
    return settings


def _env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingsError(f"--env takes KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


# IPython's own configuration, ``--Class.trait=value`` as ipykernel takes it on its command
# line (nbclient, papermill and nbconvert add ``--HistoryManager.hist_file=:memory:`` for a
# spec named python3): given to the shell over the profile's files.
_IPYTHON_CONFIG = re.compile(r"--[A-Z]\w*\.\w+=")


def _ipython_config(extra: list[str]) -> tuple[list[str], list[str]]:
    """``extra`` split into IPython configuration and the rest."""
    config = [arg for arg in extra if _IPYTHON_CONFIG.match(arg)]
    return config, [arg for arg in extra if not _IPYTHON_CONFIG.match(arg)]


def _reject_unknown(extra: list[str]) -> None:
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name.startswith("--interface."):
            known = ", ".join(f"interface.{s.name}" for s in SETTINGS)
            raise SettingsError(f"unknown setting '{name[2:]}' (known: {known})")
        raise SettingsError(f"unknown argument {arg!r} (see async-kernel --help)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.help_all:
        parser.print_help()
        print("\nSettings (--interface.NAME=VALUE; fixed when the kernel starts):\n")
        print(help_all_table())
        return
    ipython_config, extra = _ipython_config(extra)
    try:
        _reject_unknown(extra)
        settings = _settings(args)
        env = _env(args.env)
        if env and not args.add:
            raise SettingsError("--env sets a kernel spec's environment: use it with -a NAME")
    except SettingsError as err:
        parser.exit(2, f"async-kernel: error: {err}\n")
    _log_to_terminal(str(args.log_level).upper())
    if args.add or args.remove or args.list:
        _manage_specs(args, settings, env, ipython_config)
        return
    _import_from_the_working_directory()
    from .launch import run_kernel

    run_kernel(args.connection_file, settings, ipython_config)


def _log_to_terminal(level: str) -> None:
    """The kernel's own log (``async_kernel`` and its children) goes to the terminal, at
    ``level``.  The root logger is the user's, as in a Python script: a cell's ``logging``
    calls (and ``logging.basicConfig``) write to the cell's ``sys.stderr``, and no kernel
    warning passes through a handler a cell has set there.  IPython's traitlets log (config
    warnings) is the kernel's too, as it is ipykernel's application log."""
    handler = logging.StreamHandler(sys.__stderr__)  # fdcapture.py keeps it on the terminal
    handler.setFormatter(logging.Formatter("[async-kernel %(levelname)s %(name)s] %(message)s"))
    for name in ("async_kernel", "traitlets"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False


def _import_from_the_working_directory() -> None:
    """Imports follow the working directory (``%cd``, ``os.chdir``), as in IPython.

    ``python -m`` put the start directory first on ``sys.path``: taken off before the
    kernel imports its libraries, so a file there (``zmq.py``, ``signal.py``) cannot stand
    in for one.  ``''`` (the working directory at each import) goes where IPython puts it:
    after the standard library, before the installed packages (IPython's ``init_path``), so
    the user's files never shadow the standard library the kernel imports later either.
    The kernel's own modules are found through its package, already imported, not
    ``sys.path``.  Nothing is added under ``-P``/``PYTHONSAFEPATH``.
    """
    if sys.path and sys.path[0] and Path(sys.path[0]) == Path.cwd():
        del sys.path[0]
    if "" in sys.path or sys.flags.safe_path:
        return
    where = next(
        (
            index
            for index, entry in enumerate(sys.path)
            if Path(entry).name in ("site-packages", "dist-packages")
        ),
        0,
    )
    sys.path.insert(where, "")


def _manage_specs(
    args: argparse.Namespace,
    settings: InterfaceSettings,
    env: dict[str, str],
    ipython_config: list[str],
) -> None:
    from . import kernelspec

    where = {"user": args.user, "prefix": args.prefix}
    if args.add:
        settings_args = [a for a in settings.as_args() if a not in InterfaceSettings().as_args()]
        settings_args += ipython_config
        spec = kernelspec.make_spec(args.add, args.display_name, settings_args, env=env)
        path = kernelspec.write_spec(args.add, spec, **where)
        print(f"Wrote kernel spec {args.add!r} to {path}")
    elif args.remove:
        try:
            path = kernelspec.remove_spec(args.remove, **where)
        except FileNotFoundError as err:
            sys.exit(f"async-kernel: error: {err}")
        print(f"Removed kernel spec {args.remove!r} from {path}")
    else:
        specs = kernelspec.list_specs(**where)
        if not specs:
            print(f"No async-kernel specs in {kernelspec.kernel_dirs(**where)}")
        for name, path in specs.items():
            print(f"  {name:<24}{path}")
