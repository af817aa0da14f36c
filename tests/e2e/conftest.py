"""End-to-end fixtures: a real JupyterLab server on loopback and a headless Debian Chromium.

These tests fail, never skip, when a piece is missing: CI must install it (see docs and the
README's test section). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _processes import stop_process

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SERVER_START_TIMEOUT = 60  # seconds
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require(condition: bool, what: str) -> None:
    """Fail (not skip) with an install hint: CI is expected to provide every dependency."""
    if not condition:
        pytest.fail(f"end-to-end prerequisite missing: {what}", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_jupyter_env(
    root: Path, lab_settings: dict[str, dict[str, Any]] | None = None
) -> dict[str, str]:
    """An environment whose Jupyter config, runtime and lab state live under ``root``.

    Kernel specs are still found in this interpreter's prefix (where ``async`` is installed).
    ``lab_settings`` maps a plugin id path (``@jupyterlab/x-extension/plugin``) to settings.
    """
    env = {**os.environ}
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ):
        path = root / sub
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    # No "get Jupyter news?" toast over the page: it would also cover the screenshots.
    settings = {
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        **(lab_settings or {}),
    }
    for plugin, values in settings.items():
        target = root / "lab-settings" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("MPLBACKEND", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def extra_kernel_specs(root: Path, extra: dict[str, list[str]]) -> Path:
    """Kernel specs under ``root/kernels``: this interpreter's ``async`` kernel plus extra
    arguments each; returns ``root``, for ``JUPYTER_PATH``."""
    for name, args in extra.items():
        spec = root / "kernels" / name
        spec.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "async_kernel", "-f", "{connection_file}", *args]
        spec.joinpath("kernel.json").write_text(
            json.dumps(
                {
                    "argv": argv,
                    "display_name": name,
                    "language": "python",
                    "interrupt_mode": "message",
                }
            )
        )
    return root


@dataclass
class LabServer:
    url: str
    token: str
    root: Path
    log: Path

    def page_url(self, path: str) -> str:
        return f"{self.url}{path}?token={self.token}"

    def api(self, path: str) -> Any:
        req = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@pytest.fixture
def isolated_env(tmp_path: Path) -> dict[str, str]:
    """``isolated_jupyter_env`` under this test's temporary directory."""
    return isolated_jupyter_env(tmp_path / "jupyter-state")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def lab_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabServer]:
    """A JupyterLab server for the module; its ``LAB_SETTINGS`` dict, if any, is applied.

    A module's ``EXTRA_KERNELS`` (kernel spec name -> extra argv after the ``async`` spec's)
    adds kernel specs, e.g. ``{"async-trio": ["--interface.backend=trio"]}``.
    """
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        require(False, "jupyterlab (pip install jupyterlab ipywidgets ipympl)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    env = isolated_jupyter_env(base / "state", getattr(request.module, "LAB_SETTINGS", None))
    extra_kernels = getattr(request.module, "EXTRA_KERNELS", None)
    if extra_kernels:
        path = extra_kernel_specs(base / "state" / "jupyter-path", extra_kernels)
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(path), env.get("JUPYTER_PATH")]))
    port, token = free_port(), secrets.token_hex(16)
    log = base / "server.log"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.log_level=INFO",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")  # CI containers run as root
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}):\n{server.log_tail()}")
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, OSError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab not up in {SERVER_START_TIMEOUT}s:\n{server.log_tail()}"
                    )
                time.sleep(0.2)
        specs = server.api("/api/kernelspecs")["kernelspecs"]
        require("async" in specs, "the `async` kernel spec (async-kernel -a async)")
        yield server
    finally:
        stop_process(proc, grace=15)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require(
        Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
        "Debian chromium at /usr/bin/chromium (apt-get install -y chromium)",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        # A persistent context gives chromium a fresh --user-data-dir of our own.
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            timeout=60_000,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if page is not None:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"failure-{item.name}.png"))
            except Exception as exc:  # the page may be gone; the report matters more
                report.sections.append(("screenshot", f"no failure screenshot: {exc}"))
        # The kernel messages the page sent and received (a test module that records them
        # yields them as the second part of its ``kernel_page``): what the kernel was asked,
        # and what it answered, up to the failure.
        kernel_page = getattr(item, "funcargs", {}).get("kernel_page")
        log = getattr(kernel_page[1], "log", None) if isinstance(kernel_page, tuple) else None
        if isinstance(log, list):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            lines = [str(line) for line in log[-500:]]
            (ARTIFACTS / f"failure-{item.name}-frames.txt").write_text("\n".join(lines) + "\n")
