"""The package exports exactly the names meant to be public, and they are usable."""

from __future__ import annotations

import subprocess
import sys

import async_kernel

PUBLIC = {
    "CallbackKernel",
    "Caller",
    "Pending",
    "PendingCancelled",
    "PendingGroup",
    "__version__",
    "as_completed",
    "call_using_backend",
    "current_pending",
    "process_events",
    "wait",
}


def test_exported_names() -> None:
    assert set(async_kernel.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(async_kernel, name) is not None


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("async_kernel").joinpath("py.typed").is_file()


def test_import_does_not_pull_in_zmq() -> None:
    code = "import sys, async_kernel; assert 'zmq' not in sys.modules, 'zmq imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
