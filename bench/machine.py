"""Where the numbers came from: machine and package versions, for the report header."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

import psutil
import zmq

from bench.kernels import REPO_ROOT


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    return {
        "cpu": cpu_model(),
        "cores": f"{psutil.cpu_count(logical=False)} physical / {psutil.cpu_count()} logical",
        "os": platform.platform(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def async_kernel_version() -> str:
    """Version of the kernel under test, imported the way the kernel process imports it."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from async_kernel._version import __version__

        return str(__version__)
    except Exception as exc:  # not written yet, or broken: say so rather than fail the run
        return f"not importable ({type(exc).__name__})"


def packages() -> dict[str, str]:
    return {
        "jupyter_client": _version("jupyter_client"),
        "pyzmq": f"{zmq.pyzmq_version()} (libzmq {zmq.zmq_version()})",
        "ipykernel": _version("ipykernel"),
        "orjson": _version("orjson"),
        "trio": _version("trio"),
        "async_kernel": async_kernel_version(),
    }
