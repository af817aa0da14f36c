"""``jupyter console --kernel async`` in a real terminal (tmux): type, read the screen, exit.

The tmux server is private to this test (its own ``-L`` socket) and is killed at the end.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCREEN_TIMEOUT = 30.0  # seconds any expected text may take to appear


def stacks_of(root_pid: int) -> str:
    """py-spy dumps of every Python process under ``root_pid``: what a hang was waiting on."""
    import psutil

    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return "(py-spy not installed: no stacks)"
    dumps = []
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "python" not in cmdline and "jupyter" not in cmdline:
            continue
        done = subprocess.run(
            [py_spy, "dump", "--pid", str(proc.pid)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        dumps.append(f"--- {proc.pid}: {cmdline}\n{done.stdout}{done.stderr}")
    return "\n".join(dumps)


class Terminal:
    def __init__(self, socket: str, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "console", *keys)

    def type(self, text: str) -> None:
        """Type ``text`` and wait until the terminal shows it, so a following key comes after."""
        end = len(self.screen().rstrip())
        self.tmux("send-keys", "-t", "console", "-l", text)
        self.wait_for(re.escape(text), after=end)

    def enter(self, text: str) -> None:
        self.type(text)
        self.keys("Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "console")

    def wait_for(
        self, pattern: str, timeout: float = SCREEN_TIMEOUT, after: int = 0
    ) -> re.Match[str]:
        """The first match of ``pattern`` on the screen after character ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = re.compile(pattern).search(screen, after)
            if found:
                return found
            if time.monotonic() > deadline:
                pane = int(self.tmux("display-message", "-p", "-t", "console", "#{pane_pid}"))
                pytest.fail(
                    f"{pattern!r} not on the screen within {timeout}s:\n{screen}\n"
                    f"stacks of the console and kernel:\n{stacks_of(pane)}"
                )
            time.sleep(0.1)


@pytest.fixture
def terminal(tmp_path: Path, artifacts: Path, isolated_env: dict[str, str]) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("end-to-end prerequisite missing: tmux (apt-get install -y tmux)")
    console = Path(sys.executable).with_name("jupyter-console")
    if not console.exists():
        pytest.fail(
            "end-to-end prerequisite missing: jupyter-console (pip install jupyter-console)"
        )
    env = {**isolated_env}
    env.update(TERM="xterm-256color", PS1="$ ", HOME=str(tmp_path))
    term = Terminal(f"async-kernel-test-{os.getpid()}-{secrets.token_hex(4)}", env)
    term.tmux("new-session", "-d", "-s", "console", "-x", "160", "-y", "50", "sh")
    try:
        term.type(f"{console} --kernel async; echo CONSOLE-EXIT=$?")
        term.keys("Enter")
        yield term
    finally:
        try:
            (artifacts / "console-screen.txt").write_text(term.screen())
        finally:
            term.tmux("kill-server")


def test_console_runs_awaits_completes_and_exits(terminal: Terminal) -> None:
    terminal.wait_for(r"In \[1\]: ", timeout=60)

    terminal.enter("import anyio; print('hello', 6 * 7)")
    terminal.wait_for(r"hello 42")
    terminal.wait_for(r"In \[2\]: ")

    terminal.enter("await anyio.sleep(0.05); 'awaited'")
    terminal.wait_for(r"Out\[2\]: 'awaited'")
    terminal.wait_for(r"In \[3\]: ")

    terminal.type("anyio.sleep_for")
    terminal.keys("Tab")  # the only completion: IPython inserts it on the line
    terminal.wait_for(r"In \[3\]: anyio\.sleep_forever")
    terminal.keys("C-u")
    terminal.wait_for(r"(?m)In \[3\]: *$")  # the line is empty again

    terminal.enter("exit")
    terminal.wait_for(r"CONSOLE-EXIT=0")
