"""Output flood: one cell prints N lines; time to idle and whether every line arrived in order."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession, Msg
    from bench.stats import Value


def measure(s: KernelSession, cfg: Config, timeout: float = 120.0) -> dict[str, Value]:
    n = cfg.print_lines
    chunks: list[str] = []

    def collect(msg: Msg) -> None:
        if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            chunks.append(msg["content"]["text"])

    t0 = time.perf_counter()
    msg_id = s.execute_request(f"for i in range({n}): print(i)")
    s.wait_idle(msg_id, timeout, on_msg=collect)
    elapsed = time.perf_counter() - t0
    s.reply(msg_id)
    lines = "".join(chunks).splitlines()
    return {
        "print_s": elapsed,
        "print_lines": len(lines),
        "print_in_order": lines == [str(i) for i in range(n)],
    }
