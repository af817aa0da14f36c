"""Connection files: the kernel writes its own (0600) when ports are 0, and serves ipc too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient


def _start(connection_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "async_kernel", "-f", str(connection_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_ports(path: Path, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            info = json.loads(path.read_text())
            if all(info.get(f"{c}_port") for c in ("shell", "iopub", "stdin", "control", "hb")):
                return info
        time.sleep(0.05)
    raise TimeoutError(f"{path} was not written")


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_kernel_writes_and_serves_its_connection_file(tmp_path: Path, transport: str) -> None:
    path = tmp_path / "kernel.json"
    seed = {
        "transport": transport,
        "ip": "127.0.0.1" if transport == "tcp" else str(tmp_path / "k"),
    }
    seed.update({f"{c}_port": 0 for c in ("shell", "iopub", "stdin", "control", "hb")})
    seed.update(key="", signature_scheme="hmac-sha256")
    path.write_text(json.dumps(seed))
    os.chmod(path, 0o644)
    process = _start(path)
    try:
        info = _wait_for_ports(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the file holds the key"
        assert info["transport"] == transport
        kc = BlockingKernelClient()
        kc.load_connection_file(str(path))
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=30)
            reply = kc.execute_interactive("6 * 7", timeout=15)
            assert reply["content"]["status"] == "ok"
            kc.shutdown()
            assert process.wait(timeout=15) == 0
        finally:
            kc.stop_channels()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
