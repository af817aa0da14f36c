"""The design targets, each checked against the summarised medians of one kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Summaries = dict[str, dict[str, dict[str, Any]]]  # kernel -> metric key -> summary


@dataclass(frozen=True)
class Target:
    """``key`` of a kernel compared with ``limit``, either absolute or as a ratio to ``ref``.

    ``ref`` is another kernel's same metric, or ``"self:<key>"`` for the kernel's own metric.
    """

    label: str
    key: str
    limit: float
    ref: str | None = None
    better: Literal["lower", "higher"] = "lower"
    only: str | None = None  # applies to this kernel only
    also_true: str | None = None  # a boolean metric that must hold too

    def applies_to(self, kernel: str) -> bool:
        if kernel in ("floor", self.ref):
            return False
        return self.only is None or kernel == self.only

    def check(self, kernel: str, summaries: Summaries) -> tuple[bool | None, str]:
        """(met, shown value); met is None when either side is missing."""
        own = summaries.get(kernel, {})
        value = own.get(self.key, {}).get("median")
        if value is None:
            notes = own.get(self.key, {}).get("notes")
            return (False, notes[0]) if notes else (None, "n/a")
        shown = f"{value:.3g}"
        if self.ref is not None:
            ref_kernel, ref_key = (
                (kernel, self.ref[5:]) if self.ref.startswith("self:") else (self.ref, self.key)
            )
            ref = summaries.get(ref_kernel, {}).get(ref_key, {}).get("median")
            if not ref:
                return None, "no reference"
            value, shown = value / ref, f"{value / ref:.2f}x"
        met = value <= self.limit if self.better == "lower" else value >= self.limit
        if self.also_true is not None and not own.get(self.also_true, {}).get("all_true", False):
            met, shown = False, f"{shown}, lines lost/out of order"
        return met, shown


TARGETS: tuple[Target, ...] = (
    Target("round trip median ≤ 1.6x floor", "rt_median_ms", 1.6, "floor"),
    Target("round trip p99 ≤ 2.5x floor", "rt_p99_ms", 2.5, "floor"),
    Target("throughput ≥ 0.5x floor", "throughput_per_s", 0.5, "floor", "higher"),
    Target("startup ≤ 0.8x ipykernel", "startup_ms", 0.8, "ipykernel"),
    Target("RSS at the first reply ≤ ipykernel", "rss_start_mb", 1.0, "ipykernel"),
    Target("RSS after a first execute (settled) ≤ ipykernel", "rss_exec_mb", 1.0, "ipykernel"),
    Target(
        "100k prints ≤ 0.5x ipykernel, none lost",
        "print_s",
        0.5,
        "ipykernel",
        also_true="print_in_order",
    ),
    Target(
        "10k tqdm.auto updates ≤ 1.5x ipykernel, widget bar",
        "progress_s",
        1.5,
        "ipykernel",
        also_true="progress_widget",
    ),
    Target(
        "kernel_info under load ≤ 3x idle", "kernel_info_load_ms", 3.0, "self:kernel_info_idle_ms"
    ),
    Target("comm_info under load ≤ 3x idle", "comm_info_load_ms", 3.0, "self:comm_info_idle_ms"),
    Target("completion (warm) ≤ 50 ms", "complete_idle_ms", 50.0),
    Target(
        "control kernel_info while blocked ≤ 3x idle",
        "control_blocked_ms",
        3.0,
        "self:control_idle_ms",
    ),
    Target("comm_msg releases awaiting cell (no deadlock)", "comm_release_ms", float("inf")),
    *(
        Target(f"{probe} while a cell sleeps ≤ {limit:g} ms", f"{probe}_sleep_ms", limit)
        for probe, limit in (
            ("kernel_info", 10.0),
            ("comm_info", 10.0),
            ("is_complete", 10.0),
            ("history", 10.0),
            ("complete", 50.0),
            ("inspect", 50.0),
        )
    ),
    *(
        Target(
            f"{probe} while a cell spins ≤ async-kernel on PyPI",
            f"{probe}_spin_ms",
            1.0,
            "async-pypi",
        )
        for probe in ("kernel_info", "comm_info", "is_complete", "history", "complete", "inspect")
    ),
    Target(
        "Caller.to_thread ≤ 1.5x anyio.to_thread.run_sync",
        "to_thread_us",
        1.5,
        "self:anyio_to_thread_us",
    ),
    Target("64 MiB comm buffer out ≤ 0.5x ipykernel", "buffer_out_ms", 0.5, "ipykernel"),
    Target("peak RSS sending it ≤ 1.2x the payload", "buffer_out_rss_x", 1.2),
    Target("64 MiB comm buffer in ≤ 0.5x ipykernel", "buffer_in_ms", 0.5, "ipykernel"),
    Target("40 MB display ≤ 0.5x ipykernel", "display_40mb_ms", 0.5, "ipykernel"),
    Target("interrupt `time.sleep` ≤ 50 ms", "interrupt_sync_ms", 50.0),
    Target("interrupt awaited sleep ≤ 50 ms", "interrupt_async_ms", 50.0),
    Target(
        "trio round trip ≤ 1.2x asyncio", "rt_median_ms", 1.2, "async-asyncio", only="async-trio"
    ),
    Target("trio startup ≤ 1.2x asyncio", "startup_ms", 1.2, "async-asyncio", only="async-trio"),
    Target(
        "trio RSS after a first execute ≤ 1.2x asyncio",
        "rss_exec_mb",
        1.2,
        "async-asyncio",
        only="async-trio",
    ),
    Target(
        "trio throughput ≥ asyncio / 1.2",
        "throughput_per_s",
        1 / 1.2,
        "async-asyncio",
        "higher",
        only="async-trio",
    ),
)


def evaluate(kernels: list[str], summaries: Summaries) -> list[dict[str, Any]]:
    """One row per target: for each kernel it applies to, whether it was met and the value."""
    rows = []
    for target in TARGETS:
        cells = {}
        for kernel in kernels:
            if target.applies_to(kernel):
                met, shown = target.check(kernel, summaries)
                cells[kernel] = {"met": met, "value": shown}
        rows.append({"target": target.label, "results": cells})
    return rows
