"""Thread hand-overs from a cell: ``Caller.call_soon`` to another caller's thread and back,
and ``Caller.to_thread`` beside ``anyio.to_thread.run_sync`` and ``asyncio.to_thread``.

Measured inside the kernel (the cell times itself), in interleaved blocks so that drift on
a shared machine lands on every contender alike; the median block is kept.  Only our own
kernels have callers: the others report "n/a".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession, Msg
    from bench.stats import Value

KEYS = ("call_soon_rt_us", "to_thread_us", "anyio_to_thread_us", "asyncio_to_thread_us")

CELL = """
import json, statistics, time, anyio
from async_kernel import Caller
_here = Caller.current()
_there = Caller.get("bench-threads", _here.backend)
def _f():
    return 1
async def _call_soon():
    await _there.call_soon(_f)
async def _to_thread():
    await _here.to_thread(_f)
async def _anyio():
    await anyio.to_thread.run_sync(_f)
_ways = {"call_soon_rt_us": _call_soon, "to_thread_us": _to_thread, "anyio_to_thread_us": _anyio}
if _here.backend == "asyncio":
    import asyncio
    async def _asyncio():
        await asyncio.to_thread(_f)
    _ways["asyncio_to_thread_us"] = _asyncio
_blocks = {k: [] for k in _ways}
for _round in range(__BLOCKS__ + 1):
    for _key, _way in _ways.items():
        _t0 = time.perf_counter()
        for _ in range(__N__):
            await _way()
        if _round:  # the first round warms up (threads started, code paths taken)
            _blocks[_key].append((time.perf_counter() - _t0) / __N__ * 1e6)
await _there.stop()
print(json.dumps({k: statistics.median(v) for k, v in _blocks.items()}))
"""


def measure(s: KernelSession, cfg: Config, timeout: float = 120.0) -> dict[str, Value]:
    if not s.kdef.name.startswith("async-"):
        return dict.fromkeys(KEYS, "n/a")
    n, blocks = (200, 3) if cfg.repeats == 1 else (500, 7)
    chunks: list[str] = []

    def collect(msg: Msg) -> None:
        if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
            chunks.append(msg["content"]["text"])

    msg_id = s.execute_request(CELL.replace("__BLOCKS__", str(blocks)).replace("__N__", str(n)))
    s.wait_idle(msg_id, timeout, on_msg=collect)
    reply = s.reply(msg_id)
    if reply["content"]["status"] != "ok":
        return dict.fromkeys(KEYS, f"error: {reply['content'].get('ename')}")
    found: dict[str, Value] = json.loads("".join(chunks).strip().splitlines()[-1])
    return {key: found.get(key, "n/a") for key in KEYS}
