"""The comm deadlock: a cell awaits something only a comm message can release.

A kernel that handles shell messages one at a time never delivers the comm_msg while the cell
runs, so the cell never finishes; the wait is bounded and reported as a deadlock.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from bench.kernels import comm_setup_code, comm_wait_code
from bench.session import BenchTimeout, KernelSession

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

TARGET = "bench"


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    setup = s.execute(comm_setup_code(s.kdef.flavor, TARGET))
    if setup["content"]["status"] != "ok":
        return {"comm_release_ms": f"error: setup {setup['content'].get('ename')}"}
    comm_id = uuid.uuid4().hex
    opened = s.send("shell", "comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {}})
    s.wait_idle(opened, timeout=10)
    cell = s.execute_request(comm_wait_code(s.kdef.flavor))
    s.wait_started(cell)
    time.sleep(0.2)
    t0 = time.perf_counter()
    s.send("shell", "comm_msg", {"comm_id": comm_id, "data": {"release": True}})
    try:
        reply = s.reply(cell, timeout=cfg.comm_timeout)
    except BenchTimeout:
        return {"comm_release_ms": "deadlock (timeout)"}
    elapsed = (time.perf_counter() - t0) * 1e3
    if reply["content"]["status"] != "ok":
        return {"comm_release_ms": f"error: {reply['content'].get('ename')}"}
    s.wait_idle(cell, timeout=5)
    return {"comm_release_ms": elapsed}
