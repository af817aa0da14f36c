"""Responsiveness: are shell and control requests answered while a cell is running?

Idle latency is the median of a few warm requests sent one at a time. Under load, a cell
awaits a sleep and the four shell requests are sent back to back (cheapest first), each timed
from its own send; a kernel that serialises shell handling answers them only after the cell.
Control is probed while a cell blocks the main thread in ``time.sleep``.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from bench.kernels import sleep_code
from bench.session import BenchTimeout, Channel, KernelSession, Msg

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

IDLE_SAMPLES = 5
SETTLE = 0.2  # seconds between the cell starting and the probes

PROBES: dict[str, tuple[str, Msg]] = {
    "kernel_info": ("kernel_info_request", {}),
    "comm_info": ("comm_info_request", {}),
    "complete": ("complete_request", {"code": "impo", "cursor_pos": 4}),
    "inspect": ("inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}),
}


def timed_request(s: KernelSession, channel: Channel, msg_type: str, content: Msg) -> float:
    t0 = time.perf_counter()
    s.reply(s.send(channel, msg_type, content), channel, timeout=10)
    return (time.perf_counter() - t0) * 1e3


def idle_latency(s: KernelSession, channel: Channel, msg_type: str, content: Msg) -> float:
    timed_request(s, channel, msg_type, content)  # warm-up (imports, jedi caches)
    return statistics.median(
        timed_request(s, channel, msg_type, content) for _ in range(IDLE_SAMPLES)
    )


def shell_under_load(s: KernelSession, cfg: Config) -> dict[str, Value]:
    """Send every probe while a cell awaits; latency per probe, or "timeout"."""
    cell = s.execute_request(sleep_code(s.kdef.flavor, cfg.load_sleep))
    s.wait_started(cell)
    time.sleep(SETTLE)
    sent: dict[str, tuple[str, float]] = {}
    for name, (msg_type, content) in PROBES.items():
        sent[s.send("shell", msg_type, content)] = (name, time.perf_counter())
    results: dict[str, Value] = {f"{name}_load_ms": "timeout" for name in PROBES}
    deadline = time.monotonic() + cfg.load_sleep + 10
    while len(sent) > 0 and time.monotonic() < deadline:
        try:
            msg = s.kc.shell_channel.get_msg(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            break
        probe = sent.pop(msg["parent_header"].get("msg_id"), None)
        if probe is not None:
            name, t0 = probe
            results[f"{name}_load_ms"] = (time.perf_counter() - t0) * 1e3
    s.wait_idle(cell, timeout=cfg.load_sleep + 10)
    s.drain()
    return results


def control_while_blocked(s: KernelSession, cfg: Config) -> Value:
    cell = s.execute_request(f"import time\ntime.sleep({cfg.load_sleep})")
    s.wait_started(cell)
    time.sleep(SETTLE)
    try:
        latency: Value = timed_request(s, "control", "kernel_info_request", {})
    except BenchTimeout:
        latency = "timeout"
    s.wait_idle(cell, timeout=cfg.load_sleep + 10)
    s.drain()
    return latency


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    results: dict[str, Value] = {}
    for name, (msg_type, content) in PROBES.items():
        results[f"{name}_idle_ms"] = idle_latency(s, "shell", msg_type, content)
    results |= shell_under_load(s, cfg)
    results["control_idle_ms"] = idle_latency(s, "control", "kernel_info_request", {})
    results["control_blocked_ms"] = control_while_blocked(s, cfg)
    return results
