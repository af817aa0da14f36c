"""While blocked: read-only shell requests answered while a cell holds the main thread (#17).

Two blockers, each a cell that holds the main thread until it is interrupted (bounded at
``BLOCK_LIMIT`` seconds): ``time.sleep`` (the GIL is released) and a pure-Python loop that
spins the CPU (the GIL is taken back at the interpreter's switch interval).  While the cell
runs, ``ROUNDS`` rounds of the probes (kernel_info, comm_info, is_complete, history,
complete, inspect) go out one at a time on shell, each timed from its send to its reply,
``SETTLE`` seconds of quiet before each round; the median per probe is reported.  Before
the first blocker every probe runs once on the idle kernel, so completion and inspection
are warm (jedi loaded), as the targets ask.

A kernel that does not answer a probe within ``PROBE_TIMEOUT`` (ipykernel handles shell
requests one at a time, after the cell) gets "no reply in N s" for it, and that probe is
not sent again under the same blocker: the run goes on.  The cell is then interrupted
(an ``interrupt_request``, then SIGINT if that did not end it) and late replies are
discarded (waits match replies by parent msg_id).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from bench.session import BenchTimeout, KernelSession, Msg

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

ROUNDS = 5
SETTLE = 0.1  # seconds of quiet before each round
PROBE_TIMEOUT = 2.0  # seconds: past this a probe counts as unanswered
BLOCK_LIMIT = 60  # seconds a blocking cell may run if the interrupt does not end it

PROBES: dict[str, tuple[str, Msg]] = {
    "kernel_info": ("kernel_info_request", {}),
    "comm_info": ("comm_info_request", {}),
    "is_complete": ("is_complete_request", {"code": "for i in range(3):\n    x = i"}),
    "history": (
        "history_request",
        {"output": False, "raw": True, "hist_access_type": "tail", "n": 10},
    ),
    "complete": ("complete_request", {"code": "impo", "cursor_pos": 4}),
    "inspect": ("inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}),
}
BLOCKERS: dict[str, str] = {
    "sleep": f"import time\ntime.sleep({BLOCK_LIMIT})",
    "spin": (
        "import time\n_bench_t = time.monotonic()\n"
        f"while time.monotonic() - _bench_t < {BLOCK_LIMIT}:\n    pass"
    ),
}
KEYS = tuple(f"{probe}_{blocker}_ms" for blocker in BLOCKERS for probe in PROBES)


def probe_once(s: KernelSession, msg_type: str, content: Msg) -> float | None:
    """Milliseconds from send to reply, or None with no reply within ``PROBE_TIMEOUT``."""
    t0 = time.perf_counter()
    msg_id = s.send("shell", msg_type, content)
    try:
        s.reply(msg_id, timeout=PROBE_TIMEOUT)
    except BenchTimeout:
        return None
    return (time.perf_counter() - t0) * 1e3


def probe_rounds(s: KernelSession) -> dict[str, Value]:
    """``ROUNDS`` rounds of every probe still answered; the median latency of each."""
    latencies: dict[str, list[float]] = {name: [] for name in PROBES}
    unanswered: set[str] = set()
    for _ in range(ROUNDS):
        time.sleep(SETTLE)
        for name, (msg_type, content) in PROBES.items():
            if name in unanswered:
                continue
            latency = probe_once(s, msg_type, content)
            if latency is None:
                unanswered.add(name)
            else:
                latencies[name].append(latency)
    return {
        name: f"no reply in {PROBE_TIMEOUT:g} s"
        if name in unanswered
        else statistics.median(latencies[name])
        for name in PROBES
    }


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    for msg_type, content in PROBES.values():  # warm: jedi and the inspector loaded
        s.reply(s.send("shell", msg_type, content), timeout=30)
    results: dict[str, Value] = {}
    for blocker, code in BLOCKERS.items():
        cell = s.execute_request(code)
        try:
            s.wait_started(cell)
            time.sleep(0.2)  # let the cell enter its block
            found = probe_rounds(s)
            end_cell(s, cell)
        except BenchTimeout as exc:  # keep what the other blocker measured
            results |= {f"{name}_{blocker}_ms": f"timeout ({exc})" for name in PROBES}
            break
        results |= {f"{name}_{blocker}_ms": value for name, value in found.items()}
        s.drain()
    return results


def end_cell(s: KernelSession, cell: str) -> None:
    """Interrupt the blocking cell: an ``interrupt_request`` on control (every kernel here
    takes one; the async-kernel on PyPI ignores SIGINT), then SIGINT if that did not end it."""
    s.send("control", "interrupt_request")
    try:
        s.wait_idle(cell, timeout=5)
    except BenchTimeout:
        s.km.interrupt_kernel()
        s.wait_idle(cell, timeout=BLOCK_LIMIT + 10)
