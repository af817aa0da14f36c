"""Start-up: launch to first kernel_info_reply, and resident memory before/after a first cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.session import KernelSession

if TYPE_CHECKING:
    from pathlib import Path

    from bench.config import Config
    from bench.kernels import KernelDef
    from bench.stats import Value


def launch(kdef: KernelDef, cfg: Config, log: Path) -> tuple[KernelSession, dict[str, Value]]:
    """Start a kernel and measure it; raises ``KernelFailed`` if it never answers."""
    session, elapsed = KernelSession.launch(kdef, cfg.work_dir / "specs", log, cfg.start_timeout)
    results: dict[str, Value] = {"startup_ms": elapsed * 1e3, "rss_start_mb": session.rss_mb()}
    session.execute("pass")
    results["rss_exec_mb"] = session.rss_mb()
    return session, results
