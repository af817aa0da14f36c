"""A private Xvfb display for GUI tests (not a fixture: test modules wrap it).

Why: Tk needs an X display; CI and dev containers have none.  Xvfb's
``-displayfd`` picks a free display number and reports it only once the
server accepts connections, so there is no guessing and no sleep-polling.
A missing Xvfb is a test *failure* with an install hint, never a silent skip.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator

STARTUP_TIMEOUT = 15.0


@contextmanager
def xvfb_display() -> Generator[str]:
    """Yield a usable DISPLAY: the inherited one, else a fresh Xvfb server."""
    inherited = os.environ.get("DISPLAY")
    if inherited:
        yield inherited
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail(
            "Tk tests need an X display and Xvfb is not installed: "
            "apt-get install -y xvfb (or set DISPLAY)",
            pytrace=False,
        )
    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        os.close(write_fd)
        try:
            number = _read_display_number(read_fd)
            if number is None:
                log.seek(0)
                pytest.fail(f"Xvfb did not start: {log.read().decode(errors='replace')}")
            yield f":{number}"
        finally:
            os.close(read_fd)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read_display_number(fd: int) -> str | None:
    """Read the ``N\\n`` Xvfb writes to ``-displayfd`` once it is ready (bounded)."""
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], STARTUP_TIMEOUT)
        if not ready:
            return None
        chunk = os.read(fd, 64)
        if not chunk:  # Xvfb exited
            return None
        data += chunk
    return data.decode().strip()
