"""Start-up: launch to first kernel_info_reply, resident memory before/after a first cell,
and the first completion."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from bench.session import KernelSession

if TYPE_CHECKING:
    from pathlib import Path

    from bench.config import Config
    from bench.kernels import KernelDef
    from bench.stats import Value


STARTS = 3  # launches per repeat; start-up time is their median (one launch is noisy)
SETTLE = 2.0  # seconds after the first reply before "settled" memory is read


def launch(kdef: KernelDef, cfg: Config, log: Path) -> tuple[KernelSession, dict[str, Value]]:
    """Start a kernel and measure it; raises ``KernelFailed`` if it never answers.

    The first ``STARTS - 1`` launches are only timed and stopped; the last one is kept.
    """
    specs = cfg.work_dir / "specs"
    times: list[float] = []
    for _ in range(STARTS - 1):
        extra, elapsed = KernelSession.launch(kdef, specs, log, cfg.start_timeout)
        extra.close()
        times.append(elapsed)
    session, elapsed = KernelSession.launch(kdef, specs, log, cfg.start_timeout)
    times.append(elapsed)
    results: dict[str, Value] = {
        "startup_ms": statistics.median(times) * 1e3,
        "rss_start_mb": session.rss_at_first_reply,
    }
    time.sleep(SETTLE)  # what the kernel does on its own after start-up (a warm-up) shows here
    results["rss_settled_mb"] = session.rss_mb()
    session.execute("pass")
    results["rss_exec_mb"] = session.rss_mb()
    # The first completion a user asks for, after the readings above (it loads jedi's
    # inference of the builtins, ~25 MiB in both kernels).
    if not kdef.executes:  # the floor completes nothing
        results["complete_first_ms"] = "n/a"
        return session, results
    started = time.perf_counter()
    session.reply(session.send("shell", "complete_request", {"code": "impo", "cursor_pos": 4}))
    results["complete_first_ms"] = (time.perf_counter() - started) * 1e3
    return session, results
