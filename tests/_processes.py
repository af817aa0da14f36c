"""Stopping a child process the tests started: politely, then for sure, bounded."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL (and 10 s more to be reaped)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
