"""The callback interface in a real Pyodide (under node, offline after the first set-up).

The first run installs the npm package ``pyodide`` into tests/pyodide/node_modules and
downloads the pure-Python wheels the kernel needs into tests/pyodide/wheels (both
git-ignored); later runs reuse them.  Skipped only when node is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).with_name("pyodide")
PYODIDE_VERSION = "314.0.7"  # Python 3.14 inside
WHEELS = ["anyio", "ipython", "comm", "traitlets", "aiologic", "sniffio", "matplotlib-inline"]


def _prepare(node: str) -> tuple[Path, Path]:
    pyodide_dir = HERE / "node_modules" / "pyodide"
    if not (pyodide_dir / "pyodide.mjs").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("node is installed but npm is not: cannot install pyodide")
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", f"pyodide@{PYODIDE_VERSION}"],
            cwd=HERE,
            check=True,
            timeout=300,
            capture_output=True,
        )
    wheels = HERE / "wheels"
    if not list(wheels.glob("anyio-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--platform", "any", "--python-version", "3.14", "--implementation", "py",
             "--abi", "none", "-d", str(wheels), *WHEELS],
            check=True,
            timeout=300,
            capture_output=True,
        )  # fmt: skip
    return pyodide_dir, wheels


def test_cell_runs_in_pyodide() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (needed to run Pyodide)")
    pyodide_dir, wheels = _prepare(node)
    done = subprocess.run(
        [node, str(HERE / "run_cell.mjs"), str(pyodide_dir), str(wheels), str(HERE.parent.parent)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["platform"] == "emscripten"
    assert found["zmq"] is False
    kinds = [(channel, kind) for channel, kind, _ in found["messages"]]
    assert kinds == [
        ("iopub", "status"),
        ("iopub", "execute_input"),
        ("iopub", "stream"),
        ("shell", "execute_reply"),
        ("iopub", "status"),
    ]
    assert found["messages"][2][2] == {"name": "stdout", "text": "emscripten 42\n"}
    assert found["messages"][3][2]["status"] == "ok"
