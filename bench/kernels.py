"""The kernels under test and the cell code each one needs to await or block.

Cells that await differ by event loop (asyncio vs trio), so every kernel names its flavour and
the metrics ask this module for code instead of hard-coding asyncio.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Flavor = Literal["none", "asyncio", "trio"]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class KernelDef:
    """How to launch one kernel, and which loop its cells run on ("none": executes nothing)."""

    name: str
    argv: tuple[str, ...]
    flavor: Flavor

    @property
    def executes(self) -> bool:
        return self.flavor != "none"


_PY = sys.executable
_ASYNC = (_PY, "-m", "async_kernel", "-f", "{connection_file}")

KERNELS: dict[str, KernelDef] = {
    k.name: k
    for k in (
        KernelDef(
            "floor", (_PY, str(BENCH_DIR / "floor_kernel.py"), "-f", "{connection_file}"), "none"
        ),
        KernelDef(
            "ipykernel", (_PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"), "asyncio"
        ),
        KernelDef("async-asyncio", _ASYNC, "asyncio"),
        KernelDef("async-trio", (*_ASYNC, "--interface.backend=trio"), "trio"),
    )
}


# Opt-in peers, not run unless named in --kernels.  "async-pypi" is the async-kernel release on
# PyPI, in a venv of its own (its package is also called async_kernel); make it with
#   python -m venv bench/results/venv-async-kernel-pypi
#   bench/results/venv-async-kernel-pypi/bin/pip install async-kernel==0.23.1
# ``-I`` keeps the repository (cwd, PYTHONPATH) off its sys.path.
PYPI_VENV = BENCH_DIR / "results" / "venv-async-kernel-pypi"
OPTIONAL_KERNELS: dict[str, KernelDef] = {
    "async-pypi": KernelDef(
        "async-pypi",
        (
            str(PYPI_VENV / "bin" / "python"),
            "-I",
            "-m",
            "async_kernel",
            "start",
            "--connection_file={connection_file}",
        ),
        "asyncio",
    ),
    # This kernel from another checkout of the repository (a ``git worktree`` of the commit to
    # compare with, path in $BENCH_BASE_TREE), run by the same interpreter: a change and its
    # base measured in one interleaved run, on the same machine state.
    "async-base": KernelDef(
        "async-base",
        (
            _PY,
            "-c",
            "import os, sys; sys.path.insert(0, os.environ['BENCH_BASE_TREE']); "
            "from async_kernel.app.cli import main; main()",
            "-f",
            "{connection_file}",
        ),
        "asyncio",
    ),
}


def sleep_code(flavor: Flavor, seconds: float) -> str:
    """A cell that awaits a sleep on the kernel's own event loop."""
    if flavor == "trio":
        return f"import trio\nawait trio.sleep({seconds})"
    return f"import asyncio\nawait asyncio.sleep({seconds})"


def comm_setup_code(flavor: Flavor, target: str) -> str:
    """Register a comm target whose messages release an awaitable the next cell waits on.

    The release is thread-safe because a kernel may dispatch comm messages off the loop thread.
    """
    if flavor == "trio":
        make = (
            "import trio\n"
            "_bench_done = trio.Event()\n"
            "_bench_token = trio.lowlevel.current_trio_token()\n"
            "def _bench_release():\n"
            "    _bench_token.run_sync_soon(_bench_done.set)\n"
        )
    else:
        make = (
            "import asyncio\n"
            "_bench_loop = asyncio.get_running_loop()\n"
            "_bench_done = _bench_loop.create_future()\n"
            "def _bench_release():\n"
            "    _bench_loop.call_soon_threadsafe(\n"
            "        lambda: _bench_done.done() or _bench_done.set_result(None))\n"
        )
    return make + (
        "import comm\n"
        "def _bench_open(c, msg):\n"
        "    c.on_msg(lambda m: _bench_release())\n"
        f"comm.get_comm_manager().register_target({target!r}, _bench_open)\n"
    )


def comm_wait_code(flavor: Flavor) -> str:
    """The cell that waits for the comm message registered by ``comm_setup_code``.

    Its value is None on both loops: a value would add an execute_result (and its display)
    to the asyncio kernels' time only.
    """
    return "await _bench_done.wait()" if flavor == "trio" else "await _bench_done"
