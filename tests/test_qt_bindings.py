"""The Qt host runs on PySide6, PyQt6 or PyQt5: the one ``QT_API`` names, else the first found.

Why: users have whichever binding their other tools pulled in, and matplotlib and qtpy read
``QT_API``; a kernel that only knew PySide6 refused the others.  Each binding is checked in a
real kernel process through jupyter_client (a cell asks which binding the host's
``QApplication`` comes from).  PySide6 is in the venv (the ``qt`` extra); PyQt6 and PyQt5 are
installed beside it, into ``.venv/qt-bindings/NAME`` (scripts/qt_bindings.sh, which
scripts/test.sh runs), and put on the kernel's ``PYTHONPATH`` only here, so no other test
sees more than one binding.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TIMEOUT, run_ok, start_kernel

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parent.parent
SIDE_INSTALLS = ROOT / ".venv" / "qt-bindings"
MODULES = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5"}


def binding_env(api: str) -> dict[str, str]:
    """QT_API and, for a side-installed binding, the PYTHONPATH that finds it."""
    env = {"QT_API": api, "QT_QPA_PLATFORM": "offscreen"}
    if importlib.util.find_spec(MODULES[api]) is not None:
        return env
    side = SIDE_INSTALLS / api
    if not (side / MODULES[api]).is_dir():
        pytest.fail(
            f"{MODULES[api]} is not installed: run scripts/qt_bindings.sh "
            f"(pip install --target {side} {MODULES[api]})",
            pytrace=False,
        )
    return {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(side), os.environ.get("PYTHONPATH")])),
    }


@pytest.mark.parametrize("api", list(MODULES))
def test_qt_host_on_each_binding(api: str, backend: str) -> None:
    settings = ("--interface.loop=qt", f"--interface.backend={backend}")
    with start_kernel(*settings, env=binding_env(api)) as (_, kc):
        text = run_ok(
            kc,
            "from async_kernel.gui_hosts import qt_app\n"
            "import anyio, os\n"
            "await anyio.sleep(0.01)\n"  # the host loop keeps serving the guest
            "print(type(qt_app()).__module__.split('.')[0])\n"
            "os.system('echo fd-too')\n",
        )
        assert text == f"{MODULES[api]}\nfd-too\n"


def run_cli_qt(
    tmp_path: Path, prelude: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}\n"
        "from async_kernel.app.cli import main\n"
        f"main(['-f', {str(tmp_path / 'k.json')!r}, '--interface.loop=qt'])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
        check=False,
    )


def test_no_binding_is_a_clear_error(tmp_path: Path) -> None:
    blocked = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in MODULES.values())
    done = run_cli_qt(tmp_path, blocked, {"QT_API": ""})
    assert done.returncode != 0
    assert "no Qt binding is installed (PySide6, PyQt6 or PyQt5)" in done.stderr
    assert "Traceback" not in done.stderr


def test_qt_api_naming_a_missing_binding_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli_qt(tmp_path, "import sys\nsys.modules['PyQt5'] = None", {"QT_API": "pyqt5"})
    assert done.returncode != 0
    assert "QT_API=pyqt5 names PyQt5, which is not installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_qt_api_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli_qt(tmp_path, "", {"QT_API": "pyside1"})
    assert done.returncode != 0
    assert "QT_API='pyside1' is not a binding async-kernel supports" in done.stderr
