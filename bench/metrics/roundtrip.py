"""Sequential execute round trip: send `pass`, wait for the idle status with that parent."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from bench.stats import Value, percentile

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession

WARMUP = 10


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    samples: list[float] = []
    for i in range(WARMUP + cfg.roundtrip_n):
        t0 = time.perf_counter()
        msg_id = s.execute_request("pass")
        s.wait_idle(msg_id, timeout=10)
        elapsed = time.perf_counter() - t0
        s.reply(msg_id, timeout=10)  # consume the reply outside the timed span
        if i >= WARMUP:
            samples.append(elapsed * 1e3)
    return {"rt_median_ms": statistics.median(samples), "rt_p99_ms": percentile(samples, 99)}
