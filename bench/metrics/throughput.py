"""Throughput: N `pass` executes sent back to back, replies per second until the last reply.

Beside the rate, the kernel's CPU time per execute over the same burst: all its threads, and
its main thread alone.  On a shared machine the rate follows the neighbours' load (the floor's
moved between 8,400 and 16,000 replies/s from run to run); CPU time per execute barely does, so
it shows a change in the kernel's own cost where the rate cannot.  From ``psutil``: the OS's
clock ticks (10 ms on Linux), a few percent of a 1,000-execute burst.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession
    from bench.stats import Value

KEYS = ("throughput_per_s", "throughput_cpu_us", "throughput_main_cpu_us")


def cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """(all threads, the main thread): user plus system CPU seconds so far."""
    total = process.cpu_times()
    main = next((t for t in process.threads() if t.id == process.pid), None)
    main_s = main.user_time + main.system_time if main is not None else float("nan")
    return total.user + total.system, main_s


def measure(s: KernelSession, cfg: Config, timeout: float = 60.0) -> dict[str, Value]:
    n = cfg.throughput_n
    process = psutil.Process(s.pid)
    cpu_before = cpu_seconds(process)
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
    cpu_after = cpu_seconds(process)
    s.drain(quiet=0.2)  # IOPub status messages for all N (some may have been dropped)
    if pending:
        return {"throughput_per_s": f"timeout ({n - len(pending)}/{n} replies)"}
    total_us, main_us = ((a - b) * 1e6 / n for a, b in zip(cpu_after, cpu_before, strict=True))
    return {
        "throughput_per_s": n / elapsed,
        "throughput_cpu_us": total_us,
        "throughput_main_cpu_us": main_us,
    }
