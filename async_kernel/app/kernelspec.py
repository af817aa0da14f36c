"""Kernel specs: the JSON file that tells Jupyter how to start this kernel.

The argv always names the interpreter that wrote the spec (``sys.executable``): a bare
``python`` would depend on whatever PATH the notebook server happens to have.
"""

from __future__ import annotations

import json
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ..debugger import debugpy_available
from ..transport.wire import PROTOCOL_VERSION

__all__ = ["DEFAULT_NAME", "kernel_dirs", "list_specs", "make_spec", "remove_spec", "write_spec"]

DEFAULT_NAME = "async"


def make_spec(
    name: str,
    display_name: str | None,
    settings_args: list[str],
    *,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The spec's fields, as ipykernel writes them (``env`` from ``--env KEY=VALUE``)."""
    return {
        "argv": [sys.executable, "-m", "async_kernel", "-f", "{connection_file}", *settings_args],
        "display_name": display_name or _default_display_name(name, settings_args),
        "language": "python",
        # Interrupts arrive as interrupt_request on control: they work the same on every
        # platform and reach a kernel that blocks SIGINT in its threads.
        "interrupt_mode": "message",
        "kernel_protocol_version": PROTOCOL_VERSION,
        # JupyterLab enables its debugger from this flag alone, so it says what is installed.
        "metadata": {
            "debugger": debugpy_available(),
            "supported_encryption": _supported_encryption(),
        },
        "env": dict(env or {}),
    }


def _supported_encryption() -> list[str]:
    """What jupyter_client may provision (``transport_encryption``): CURVE if libzmq has it."""
    import zmq

    return ["curve"] if zmq.has("curve") else []


def _default_display_name(name: str, settings_args: list[str]) -> str:
    shown: list[str] = []
    for arg in settings_args:
        option, _, value = arg.partition("=")
        if option == "--interface.capture_fd_output":
            shown.append("no fd capture" if value.lower() in ("false", "0", "no", "off") else "")
        elif value not in ("asyncio", "plain"):
            shown.append(value)
    shown = [d for d in shown if d]
    return (
        f"Python 3 (async{': ' + ', '.join(shown) if shown else ''})"
        if name.startswith("async")
        else name
    )


def kernel_dirs(*, user: bool = False, prefix: str | None = None) -> Path:
    """Where a spec is written: ``--user``, ``--prefix``, or this environment's prefix."""
    if user:
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "kernels"
    base = prefix if prefix is not None else sysconfig.get_path("data")
    return Path(base) / "share" / "jupyter" / "kernels"


def write_spec(
    name: str, spec: dict[str, Any], *, user: bool = False, prefix: str | None = None
) -> Path:
    target = kernel_dirs(user=user, prefix=prefix) / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return target


def remove_spec(name: str, *, user: bool = False, prefix: str | None = None) -> Path:
    target = kernel_dirs(user=user, prefix=prefix) / name
    if not (target / "kernel.json").exists():
        raise FileNotFoundError(f"no kernel spec named {name!r} in {target.parent}")
    shutil.rmtree(target)
    return target


def list_specs(*, user: bool = False, prefix: str | None = None) -> dict[str, Path]:
    """Specs of this kernel (argv runs async_kernel) in the searched directory."""
    root = kernel_dirs(user=user, prefix=prefix)
    found: dict[str, Path] = {}
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            spec_file = entry / "kernel.json"
            try:
                argv = json.loads(spec_file.read_text(encoding="utf-8")).get("argv", [])
            except (OSError, ValueError):
                continue
            if "async_kernel" in argv:
                found[entry.name] = entry
    return found
