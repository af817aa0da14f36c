"""Throughput: N `pass` executes sent back to back, replies per second until the last reply."""

from __future__ import annotations

import time
from queue import Empty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession
    from bench.stats import Value


def measure(s: KernelSession, cfg: Config, timeout: float = 60.0) -> dict[str, Value]:
    n = cfg.throughput_n
    t0 = time.perf_counter()
    pending = {s.execute_request("pass") for _ in range(n)}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        try:
            msg = s.kc.shell_channel.get_msg(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            break
        pending.discard(msg["parent_header"].get("msg_id"))
    elapsed = time.perf_counter() - t0
    s.drain(quiet=0.2)  # IOPub status messages for all N (some may have been dropped)
    if pending:
        return {"throughput_per_s": f"timeout ({n - len(pending)}/{n} replies)"}
    return {"throughput_per_s": n / elapsed}
