"""Faults: a dead parent, a vanished client, cells that sabotage the kernel, a hard exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import zmq
from _raw import raw_peers, recv_for, signed_frames
from conftest import TIMEOUT, execute, start_kernel, stream_text
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

Pair = tuple[KernelManager, BlockingKernelClient]

_LAUNCHER = """
import os, subprocess, sys, time
env = dict(os.environ)
if sys.argv[2] == "named":
    env["JPY_PARENT_PID"] = str(os.getpid())
else:
    env.pop("JPY_PARENT_PID", None)
child = subprocess.Popen([sys.executable, "-m", "async_kernel", "-f", sys.argv[1]], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kernel_dies_with_parent(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.json"
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(path), mode], stdout=subprocess.PIPE, text=True
    )
    kernel_pid = 0
    try:
        assert launcher.stdout is not None
        kernel_pid = int(launcher.stdout.readline())
        deadline = time.monotonic() + 30
        while not (path.exists() and json.loads(path.read_text() or "{}").get("shell_port")):
            assert time.monotonic() < deadline, "the kernel did not start"
            time.sleep(0.05)
        assert not _gone(kernel_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(kernel_pid):
            assert time.monotonic() < deadline, "the orphaned kernel is still running"
            time.sleep(0.1)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=10)
        if launcher.stdout is not None:
            launcher.stdout.close()
        if kernel_pid and not _gone(kernel_pid):
            os.kill(kernel_pid, signal.SIGKILL)


def test_kernel_exits_when_named_parent_dies(tmp_path: Path) -> None:
    _kernel_dies_with_parent(tmp_path, "named")


def test_kernel_exits_when_unnamed_parent_dies(tmp_path: Path) -> None:
    _kernel_dies_with_parent(tmp_path, "unnamed")


def test_client_disconnects_mid_request_and_reconnects(kernel: Pair) -> None:
    km, kc = kernel
    with raw_peers(km.get_connection_info()) as raw:
        first = raw.socket(zmq.DEALER)
        first.identity = b"flaky-client"
        raw.connect("shell", first)
        _, frames = signed_frames(
            raw.key, "execute_request", {"code": "import anyio\nawait anyio.sleep(0.5)"}
        )
        first.send_multipart(frames)
        time.sleep(0.1)
        first.close(linger=0)  # gone before the reply
        # Reconnect once the kernel has seen the disconnect: an identity handed over while the
        # old connection is still being torn down can lose its first reply (libzmq ROUTER).
        time.sleep(0.3)
        second = raw.socket(zmq.DEALER)
        second.identity = b"flaky-client"
        raw.connect("shell", second)
        info_id, frames = signed_frames(raw.key, "kernel_info_request", {})
        second.send_multipart(frames)
        assert recv_for(second, info_id, TIMEOUT) is not None
        exec_id, frames = signed_frames(raw.key, "execute_request", {"code": "1 + 1"})
        second.send_multipart(frames)
        reply = recv_for(second, exec_id, TIMEOUT)
        assert reply is not None and reply["content"]["status"] == "ok"
    reply, outputs = execute(kc, "print('after the flaky client')")
    assert stream_text(outputs) == "after the flaky client\n"


def _ok(kc: BlockingKernelClient) -> None:
    """The kernel answers on shell (a cell, a completion) and control."""
    reply, outputs = execute(kc, "print('alive')")
    assert reply["content"]["status"] == "ok", reply["content"]
    assert stream_text(outputs) == "alive\n"
    assert kc.complete("pri", 3, reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
    assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"


def test_cell_closes_and_replaces_stdout(kernel: Pair) -> None:
    _, kc = kernel
    reply, outputs = execute(kc, "import sys\nsys.stdout.close()\nprint('still printed')")
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "still printed\n"
    reply, _ = execute(
        kc,
        "import io, sys\n_saved = sys.stdout, sys.stderr\nsys.stdout = sys.stderr = io.StringIO()",
    )
    assert reply["content"]["status"] == "ok"
    reply, _ = execute(kc, "print('into the void')\n1/0")
    assert reply["content"]["status"] == "error"
    assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
    execute(kc, "sys.stdout, sys.stderr = _saved")
    _ok(kc)
    assert stream_text(execute(kc, "print('back')")[1]) == "back\n"


def test_warnings_as_errors_in_a_cell(kernel: Pair) -> None:
    _, kc = kernel
    execute(kc, "import warnings\nwarnings.filterwarnings('error')")
    try:
        _ok(kc)
        assert kc.inspect("print", 5, reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
        reply, _ = execute(kc, "import warnings\nwarnings.warn('boom')")
        assert reply["content"]["status"] == "error"  # the user's choice, for the user's code
    finally:
        execute(kc, "warnings.resetwarnings()\nwarnings.simplefilter('default')")


def test_exceptions_in_comm_handlers(kernel: Pair) -> None:
    _, kc = kernel
    code = (
        "import comm\n"
        "def _target(c, msg):\n"
        "    c.on_msg(lambda m: 1 / 0)\n"
        "    c.on_close(lambda m: [][1])\n"
        "comm.get_comm_manager().register_target('fault-boom', _target)\n"
        "comm.get_comm_manager().register_target('fault-open', lambda c, m: {}['x'])\n"
    )
    assert execute(kc, code)[0]["content"]["status"] == "ok"
    for target in ("fault-boom", "fault-open"):
        msg = kc.session.msg("comm_open", {"comm_id": target, "target_name": target, "data": {}})
        kc.shell_channel.send(msg)
        kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": target, "data": {}}))
        kc.shell_channel.send(kc.session.msg("comm_close", {"comm_id": target, "data": {}}))
    _ok(kc)


def test_recursion_exhausted(kernel: Pair) -> None:
    _, kc = kernel
    reply, _ = execute(kc, "def f(n):\n    return f(n + 1)\nf(0)")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RecursionError"
    reply, _ = execute(kc, "class R:\n    def __repr__(self):\n        return repr(self)\nR()")
    assert reply["content"]["status"] in ("ok", "error")
    _ok(kc)


def test_os_exit_is_a_dead_kernel_and_restart_works() -> None:
    with start_kernel() as (km, kc):
        kc.execute("import os\nos._exit(3)")
        deadline = time.monotonic() + TIMEOUT
        while km.is_alive():
            assert time.monotonic() < deadline, "the manager still sees a live kernel"
            time.sleep(0.05)
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=30)
        _ok(kc)
