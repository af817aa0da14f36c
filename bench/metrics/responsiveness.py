"""Responsiveness: are shell and control requests answered while a cell is running?

Idle and loaded latencies are measured the same way, so their ratio shows the cost of the
running cell and nothing else.  A probe round waits ``SETTLE`` seconds, then sends the four
shell requests back to back (cheapest first), each timed from its own send to its reply;
the median over ``ROUNDS`` rounds is reported.  Idle rounds run with no cell; loaded rounds
run while one cell awaits a sleep, sent on schedule whether or not earlier replies came (a
kernel that serialises shell handling answers them all only after the cell).  Control is
probed the same way, one kernel_info per round, idle and while a cell blocks the main
thread in ``time.sleep``.

The pause matters: a request after a quiet spell costs more than one in a tight loop (cold
caches, idle CPUs), and a loaded probe always comes after one.
"""

from __future__ import annotations

import statistics
import time
from queue import Empty
from typing import TYPE_CHECKING

from bench.kernels import sleep_code
from bench.session import Channel, KernelSession, Msg

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

ROUNDS = 5
SETTLE = 0.2  # seconds of quiet before each round (and between a cell's start and a round)
WINDOW = (ROUNDS + 1) * SETTLE  # seconds the rounds take; a loaded cell must outlast them

SHELL_PROBES: dict[str, tuple[str, Msg]] = {
    "kernel_info": ("kernel_info_request", {}),
    "comm_info": ("comm_info_request", {}),
    "complete": ("complete_request", {"code": "impo", "cursor_pos": 4}),
    "inspect": ("inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}),
}
CONTROL_PROBES: dict[str, tuple[str, Msg]] = {"control": ("kernel_info_request", {})}


def probe_rounds(
    s: KernelSession, channel: Channel, probes: dict[str, tuple[str, Msg]], deadline: float
) -> dict[str, Value]:
    """Send ``ROUNDS`` rounds of ``probes`` on schedule; the median latency of each probe.

    Replies are read while waiting for the next round, so each is timed when it arrives.
    A probe with no reply by ``deadline`` (monotonic) counts as "timeout".
    """
    chan = s.kc.shell_channel if channel == "shell" else s.kc.control_channel
    sent: dict[str, tuple[str, float]] = {}
    latencies: dict[str, list[float]] = {name: [] for name in probes}
    next_round, rounds_sent = time.monotonic() + SETTLE, 0
    while (rounds_sent < ROUNDS or sent) and time.monotonic() < deadline:
        if rounds_sent < ROUNDS and time.monotonic() >= next_round:
            for name, (msg_type, content) in probes.items():
                sent[s.send(channel, msg_type, content)] = (name, time.perf_counter())
            rounds_sent += 1
            next_round = time.monotonic() + SETTLE
        wait_until = next_round if rounds_sent < ROUNDS else deadline
        try:
            msg = chan.get_msg(timeout=max(0.001, wait_until - time.monotonic()))
        except Empty:
            continue
        probe = sent.pop(msg["parent_header"].get("msg_id"), None)
        if probe is not None:
            name, t0 = probe
            latencies[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: statistics.median(values) if len(values) == ROUNDS else "timeout"
        for name, values in latencies.items()
    }


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    results: dict[str, Value] = {}
    if cfg.load_sleep <= WINDOW:
        raise ValueError(f"load_sleep must exceed {WINDOW:g} s, the time the probe rounds take")
    probe_rounds(s, "shell", SHELL_PROBES, time.monotonic() + WINDOW + 10)  # warm-up
    idle = probe_rounds(s, "shell", SHELL_PROBES, time.monotonic() + WINDOW + 10)
    results |= {f"{name}_idle_ms": value for name, value in idle.items()}

    cell = s.execute_request(sleep_code(s.kdef.flavor, cfg.load_sleep))
    s.wait_started(cell)
    loaded = probe_rounds(s, "shell", SHELL_PROBES, time.monotonic() + cfg.load_sleep + 10)
    results |= {f"{name}_load_ms": value for name, value in loaded.items()}
    s.wait_idle(cell, timeout=cfg.load_sleep + 10)
    s.drain()

    idle_control = probe_rounds(s, "control", CONTROL_PROBES, time.monotonic() + WINDOW + 10)
    results["control_idle_ms"] = idle_control["control"]
    cell = s.execute_request(f"import time\ntime.sleep({cfg.load_sleep})")
    s.wait_started(cell)
    blocked = probe_rounds(s, "control", CONTROL_PROBES, time.monotonic() + WINDOW + 10)
    results["control_blocked_ms"] = blocked["control"]
    s.wait_idle(cell, timeout=cfg.load_sleep + 10)
    s.drain()
    return results
