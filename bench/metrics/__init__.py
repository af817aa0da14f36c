"""Metric functions (one module each) and the table of what every result key means.

Each metric module has ``measure(session, cfg) -> dict[key, value]``; values are numbers, or
strings such as "timeout" when a bounded wait ran out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str
    unit: str
    better: Literal["lower", "higher"] = "lower"
    reference: Literal["floor", "ipykernel", None] = None


INFO: tuple[MetricInfo, ...] = (
    MetricInfo("startup_ms", "startup to kernel_info_reply", "ms", reference="ipykernel"),
    MetricInfo("rss_start_mb", "RSS at the first reply", "MiB", reference="ipykernel"),
    MetricInfo("rss_settled_mb", "RSS 2 s later (settled)", "MiB", reference="ipykernel"),
    MetricInfo("rss_exec_mb", "RSS after a first execute (settled)", "MiB", reference="ipykernel"),
    MetricInfo("rt_median_ms", "execute `pass` round trip, median", "ms", reference="floor"),
    MetricInfo("rt_p99_ms", "execute `pass` round trip, p99", "ms", reference="floor"),
    MetricInfo("throughput_per_s", "execute throughput", "replies/s", "higher", "floor"),
    MetricInfo(
        "throughput_cpu_us", "kernel CPU per execute in that burst", "µs", reference="floor"
    ),
    MetricInfo(
        "throughput_main_cpu_us", "its main thread's CPU per execute", "µs", reference="floor"
    ),
    MetricInfo("print_s", "100k `print(i)` to idle", "s", reference="ipykernel"),
    MetricInfo("print_lines", "print lines received", "lines", "higher"),
    MetricInfo("print_in_order", "print lines all present, in order", "bool", "higher"),
    MetricInfo("progress_s", "10k tqdm.auto updates to idle", "s", reference="ipykernel"),
    MetricInfo("progress_widget", "tqdm.auto bar is the widget bar", "bool", "higher"),
    MetricInfo("kernel_info_idle_ms", "shell kernel_info, idle", "ms"),
    MetricInfo("kernel_info_load_ms", "shell kernel_info, cell awaiting", "ms"),
    MetricInfo("comm_info_idle_ms", "comm_info, idle", "ms"),
    MetricInfo("comm_info_load_ms", "comm_info, cell awaiting", "ms"),
    MetricInfo("complete_first_ms", "complete `impo`, the first after start-up", "ms"),
    MetricInfo("complete_idle_ms", "complete `impo`, idle (warm)", "ms"),
    MetricInfo("complete_load_ms", "complete `impo`, cell awaiting", "ms"),
    MetricInfo("inspect_idle_ms", "inspect `print`, idle (warm)", "ms"),
    MetricInfo("inspect_load_ms", "inspect `print`, cell awaiting", "ms"),
    MetricInfo("control_idle_ms", "control kernel_info, idle", "ms"),
    MetricInfo("control_blocked_ms", "control kernel_info, cell in time.sleep", "ms"),
    *(
        MetricInfo(f"{probe}_{blocker}_ms", f"shell {probe}, cell {doing}", "ms")
        for blocker, doing in (("sleep", "in time.sleep"), ("spin", "spinning the CPU"))
        for probe in ("kernel_info", "comm_info", "is_complete", "history", "complete", "inspect")
    ),
    MetricInfo("comm_release_ms", "comm_msg to awaiting cell's reply", "ms"),
    MetricInfo(
        "buffer_out_ms", "64 MiB comm buffer, kernel to client", "ms", reference="ipykernel"
    ),
    MetricInfo("buffer_out_rss_x", "peak RSS sending it, x the payload", "x"),
    MetricInfo(
        "buffer_in_ms", "64 MiB comm buffer, client to handler", "ms", reference="ipykernel"
    ),
    MetricInfo("display_40mb_ms", "40 MB display to the client", "ms", reference="ipykernel"),
    MetricInfo("call_soon_rt_us", "Caller.call_soon to another thread and back", "µs"),
    MetricInfo("to_thread_us", "Caller.to_thread round trip", "µs"),
    MetricInfo("anyio_to_thread_us", "anyio.to_thread.run_sync round trip", "µs"),
    MetricInfo("asyncio_to_thread_us", "asyncio.to_thread round trip", "µs"),
    MetricInfo("interrupt_sync_ms", "interrupt `time.sleep(30)`", "ms"),
    MetricInfo("interrupt_async_ms", "interrupt awaited sleep(30)", "ms"),
)
