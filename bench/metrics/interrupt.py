"""Interrupt latency: SIGINT via ``KernelManager.interrupt_kernel`` to the cell's execute_reply.

Measured for a cell blocked in ``time.sleep`` and for one awaiting a sleep on the kernel's loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.kernels import sleep_code
from bench.session import BenchTimeout, KernelSession

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

CELL_SECONDS = 30


def interrupt_cell(s: KernelSession, code: str, timeout: float) -> Value:
    cell = s.execute_request(code)
    s.wait_started(cell)
    time.sleep(0.3)  # let the cell actually enter the sleep
    t0 = time.perf_counter()
    s.km.interrupt_kernel()
    try:
        s.reply(cell, timeout=timeout)
    except BenchTimeout:
        # Distinguish a kernel still stuck in the cell from one that dropped the reply.
        return "timeout (no reply; shell still answers)" if s.responsive() else "timeout"
    elapsed = (time.perf_counter() - t0) * 1e3
    try:
        s.wait_idle(cell, timeout=5)
    except BenchTimeout:
        return "no idle after reply"
    return elapsed


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    sync = interrupt_cell(s, f"import time\ntime.sleep({CELL_SECONDS})", cfg.interrupt_timeout)
    if not s.responsive():
        return {"interrupt_sync_ms": sync, "interrupt_async_ms": "skipped (kernel stuck)"}
    code = sleep_code(s.kdef.flavor, CELL_SECONDS)
    return {
        "interrupt_sync_ms": sync,
        "interrupt_async_ms": interrupt_cell(s, code, cfg.interrupt_timeout),
    }
