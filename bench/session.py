"""A launched kernel plus a blocking client, with bounded waits matched by parent msg_id.

Every wait has a deadline and raises ``BenchTimeout`` so a stuck kernel costs a metric, not
the run. Messages for other parents are skipped, which keeps metrics independent of leftovers
from an earlier one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from queue import Empty
from typing import TYPE_CHECKING, Any, Literal

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from bench.kernels import REPO_ROOT, KernelDef

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from jupyter_client.blocking.client import BlockingKernelClient

Msg = dict[str, Any]
Channel = Literal["shell", "control"]


class BenchTimeout(Exception):
    """A bounded wait ran out."""


class KernelFailed(Exception):
    """The kernel did not start or died."""


def write_spec(kdef: KernelDef, specs_dir: Path) -> None:
    """Write a kernel spec so jupyter_client launches exactly ``kdef.argv``."""
    path = specs_dir / f"bench-{kdef.name}"
    path.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    spec = {
        "argv": list(kdef.argv),
        "display_name": f"bench {kdef.name}",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"PYTHONPATH": pythonpath},
    }
    (path / "kernel.json").write_text(json.dumps(spec, indent=1))


class KernelSession:
    """One running kernel and its client."""

    def __init__(self, kdef: KernelDef, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.kdef = kdef
        self.km = km
        self.kc = kc
        self.rss_at_first_reply = 0.0  # MiB, sampled as the first kernel_info_reply arrives

    @classmethod
    def launch(
        cls, kdef: KernelDef, specs_dir: Path, log: Path, timeout: float
    ) -> tuple[KernelSession, float]:
        """Start the kernel; return the session and seconds until the first kernel_info_reply."""
        write_spec(kdef, specs_dir)
        ksm = KernelSpecManager(kernel_dirs=[str(specs_dir)])
        km = KernelManager(kernel_name=f"bench-{kdef.name}", kernel_spec_manager=ksm)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            t0 = time.perf_counter()
            km.start_kernel(cwd=str(REPO_ROOT), stdout=out, stderr=out)
        kc = km.client()
        kc.start_channels()
        self = cls(kdef, km, kc)
        try:
            msg_id = self.send("shell", "kernel_info_request")
            self.reply(msg_id, timeout=timeout, check_alive=True)
            elapsed = time.perf_counter() - t0
            self.rss_at_first_reply = self.rss_mb()
            self._await_iopub()
        except (BenchTimeout, KernelFailed) as exc:
            self.close()
            raise KernelFailed(f"{exc}; log: {log_tail(log)}") from exc
        return self, elapsed

    def _await_iopub(self, timeout: float = 10.0) -> None:
        """Resend kernel_info until its status arrives, so IOPub is subscribed before metrics."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = self.send("shell", "kernel_info_request")
            try:
                self.wait_iopub(msg_id, 0.5, lambda m: m["msg_type"] == "status")
                self.reply(msg_id, timeout=5)
                self.drain()
                return
            except BenchTimeout:
                continue
        raise BenchTimeout("no IOPub status after start")

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 2**20

    def _channel(self, channel: Channel | Literal["iopub"]) -> Any:
        return getattr(self.kc, f"{channel}_channel")

    def send(self, channel: Channel, msg_type: str, content: Msg | None = None) -> str:
        msg = self.kc.session.msg(msg_type, content or {})
        self._channel(channel).send(msg)
        return str(msg["header"]["msg_id"])

    def execute_request(self, code: str) -> str:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
        content |= {"allow_stdin": False, "stop_on_error": True}
        return self.send("shell", "execute_request", content)

    def reply(
        self,
        msg_id: str,
        channel: Channel = "shell",
        timeout: float = 10.0,
        check_alive: bool = False,
    ) -> Msg:
        """The reply to ``msg_id``; other replies on the channel are discarded."""
        return self._wait(channel, msg_id, timeout, until=lambda _: True, check_alive=check_alive)

    def wait_iopub(
        self,
        msg_id: str,
        timeout: float,
        until: Callable[[Msg], bool],
        on_msg: Callable[[Msg], None] | None = None,
    ) -> Msg:
        """First IOPub message with parent ``msg_id`` for which ``until`` holds."""
        return self._wait("iopub", msg_id, timeout, until=until, on_msg=on_msg)

    def wait_idle(
        self, msg_id: str, timeout: float, on_msg: Callable[[Msg], None] | None = None
    ) -> Msg:
        return self.wait_iopub(msg_id, timeout, is_idle, on_msg)

    def wait_started(self, msg_id: str, timeout: float = 10.0) -> None:
        """Wait until the cell's code is about to run (its execute_input is published)."""
        self.wait_iopub(msg_id, timeout, lambda m: m["msg_type"] == "execute_input")

    def execute(self, code: str, timeout: float = 30.0) -> Msg:
        """Run a cell to completion: its reply, after its idle status."""
        msg_id = self.execute_request(code)
        self.wait_idle(msg_id, timeout)
        return self.reply(msg_id, timeout=timeout)

    def _wait(
        self,
        channel: Channel | Literal["iopub"],
        msg_id: str,
        timeout: float,
        *,
        until: Callable[[Msg], bool],
        on_msg: Callable[[Msg], None] | None = None,
        check_alive: bool = False,
    ) -> Msg:
        chan = self._channel(channel)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg: Msg = chan.get_msg(timeout=min(left, 0.5) if check_alive else left)
            except Empty:
                if check_alive and not self.km.is_alive():
                    raise KernelFailed("kernel process exited") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if on_msg is not None:
                on_msg(msg)
            if until(msg):
                return msg
        raise BenchTimeout(f"no {channel} message for {msg_id} within {timeout:g} s")

    def drain(self, quiet: float = 0.05) -> None:
        """Discard pending messages on every channel (until ``quiet`` seconds of silence)."""
        for channel in ("iopub", "shell", "control"):
            chan = self._channel(channel)
            while True:
                try:
                    chan.get_msg(timeout=quiet)
                except Empty:
                    break

    def responsive(self, timeout: float = 2.0) -> bool:
        """Does the shell still answer kernel_info promptly?"""
        if not self.km.is_alive():
            return False
        try:
            self.reply(self.send("shell", "kernel_info_request"), timeout=timeout)
        except BenchTimeout:
            return False
        self.drain()
        return True

    def close(self) -> None:
        self.kc.stop_channels()
        with contextlib.suppress(Exception):  # a kernel that is already gone is fine
            self.km.shutdown_kernel(now=True)


def is_idle(msg: Msg) -> bool:
    return msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
