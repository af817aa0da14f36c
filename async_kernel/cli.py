"""``async-kernel``: start a kernel, or write, remove and list kernel specs.

Settings use the dotted ``--section.name=value`` form Jupyter users know from traitlets.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .settings import InterfaceSettings, SettingsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="async-kernel",
        description="A concurrent Jupyter kernel on asyncio or trio, with tk/qt host loops.",
        epilog="Example: async-kernel -a async-tk --interface.loop=tk --interface.backend=trio",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-f", "--connection-file", metavar="FILE", help="start a kernel on FILE")
    action.add_argument("-a", "--add", metavar="NAME", help="write a kernel spec named NAME")
    action.add_argument("-r", "--remove", metavar="NAME", help="remove the kernel spec NAME")
    action.add_argument("-l", "--list", action="store_true", help="list this kernel's specs")
    parser.add_argument("-V", "--version", action="version", version=f"async-kernel {__version__}")
    parser.add_argument("--display_name", "--display-name", help="display name of a new spec")
    parser.add_argument("--user", action="store_true", help="use the per-user kernel directory")
    parser.add_argument("--prefix", help="use PREFIX/share/jupyter/kernels")
    parser.add_argument(
        "--interface.backend", dest="backend", choices=("asyncio", "trio"), help="async backend"
    )
    parser.add_argument(
        "--interface.loop", dest="loop", choices=("plain", "tk", "qt"), help="host event loop"
    )
    parser.add_argument(
        "--log_level", "--log-level", default="WARNING", help="log level of the kernel's log"
    )
    return parser


def _settings(args: argparse.Namespace) -> InterfaceSettings:
    settings = InterfaceSettings()
    if args.backend:
        settings.set("backend", args.backend)
    if args.loop:
        settings.set("loop", args.loop)
    return settings


def _reject_unknown(extra: list[str]) -> None:
    for arg in extra:
        name = arg.split("=", 1)[0]
        if name.startswith("--interface."):
            known = ", ".join(f"interface.{n}" for n in InterfaceSettings.__dataclass_fields__)
            raise SettingsError(f"unknown setting '{name[2:]}' (known: {known})")
        raise SettingsError(f"unknown argument {arg!r} (see async-kernel --help)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    try:
        _reject_unknown(extra)
        settings = _settings(args)
    except SettingsError as err:
        parser.exit(2, f"async-kernel: error: {err}\n")
    logging.basicConfig(
        stream=sys.__stderr__,
        level=str(args.log_level).upper(),
        format="[async-kernel %(levelname)s %(name)s] %(message)s",
    )
    if args.add or args.remove or args.list:
        _manage_specs(args, settings)
        return
    from .launch import run_kernel

    run_kernel(args.connection_file, settings)


def _manage_specs(args: argparse.Namespace, settings: InterfaceSettings) -> None:
    from . import kernelspec

    where = {"user": args.user, "prefix": args.prefix}
    if args.add:
        settings_args = [a for a in settings.as_args() if a not in InterfaceSettings().as_args()]
        spec = kernelspec.make_spec(args.add, args.display_name, settings_args)
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


def default_connection_file() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / f"kernel-{os.getpid()}.json"
