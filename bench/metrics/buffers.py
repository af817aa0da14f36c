"""Big binary data: a 64 MiB comm buffer out and in, and a 40 MB display.

- **out**: a cell sends a comm message with a fresh 64 MiB ``bytes`` buffer; time from the
  execute_request to the comm_msg arriving whole at the client, and the kernel's peak RSS
  meanwhile (sampled every 5 ms by psutil) above its RSS before the cell, as a multiple of
  the payload: 1.0x means the buffer itself and no copy of it.
- **in**: the client sends a comm_msg carrying a 64 MiB buffer to a comm whose handler answers
  with the buffer's length; time from the send to that answer.
- **display**: a cell displays 40 MB of ``text/plain``; time from the execute_request to the
  display_data at the client.

Client-side costs (jupyter_client's JSON and frame handling) are included, equally for
every kernel.

The kernel is left to settle for ``SETTLE`` seconds first: run right after start-up (``--metrics
buffers`` alone), the figures took in whatever a kernel still does then, such as async-kernel
warming its completer on the main loop 0.5 s after start, for ~0.1 s on a loaded machine; a
comm message landing in it waited (client to handler: 143 ms instead of 36 ms, median of 4
launches each).  After other metrics that time is long over, so the figures depended on which
metrics ran before.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import psutil

from bench.session import BenchTimeout, KernelSession

if TYPE_CHECKING:
    from bench.config import Config
    from bench.stats import Value

PAYLOAD = 64 * 2**20
DISPLAY = 40_000_000
TARGET = "bench_buffers"
KEYS = ("buffer_out_ms", "buffer_out_rss_x", "buffer_in_ms", "display_40mb_ms")
SETTLE = 2.0  # seconds of quiet before measuring (see above)

_SETUP = f"""
import comm
def _bench_buffers_open(c, msg):
    def echo(m):
        c.send({{"length": sum(len(memoryview(b).cast("B")) for b in m["buffers"])}})
    c.on_msg(echo)
comm.get_comm_manager().register_target({TARGET!r}, _bench_buffers_open)
_bench_out = comm.create_comm(target_name="bench_buffers_out")
"""


class _PeakRss:
    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.before = self._process.memory_info().rss
        self.peak = self.before
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> float:
        self._done.set()
        self._thread.join(timeout=5)
        return (self.peak - self.before) / PAYLOAD


def _is_comm_msg(msg: dict[str, Any]) -> bool:
    return bool(msg["msg_type"] == "comm_msg")


def measure(s: KernelSession, cfg: Config) -> dict[str, Value]:
    results: dict[str, Value] = dict.fromkeys(KEYS, "error: setup")
    time.sleep(SETTLE)
    setup = s.execute(_SETUP)
    if setup["content"]["status"] != "ok":
        return results
    try:
        # out: the buffer is made in the cell, so the RSS peak includes the payload itself.
        s.drain()
        rss = _PeakRss(s.pid)
        t0 = time.perf_counter()
        cell = s.execute_request(f"_bench_out.send({{}}, buffers=[b'\\x01' * {PAYLOAD}])")
        msg = s.wait_iopub(cell, 60, _is_comm_msg)
        results["buffer_out_ms"] = (time.perf_counter() - t0) * 1e3
        s.wait_idle(cell, 30)
        results["buffer_out_rss_x"] = rss.stop()
        if sum(len(memoryview(b)) for b in msg["buffers"]) != PAYLOAD:
            results["buffer_out_ms"] = "error: buffer lost"

        # in
        comm_id = uuid.uuid4().hex
        opened = s.send("shell", "comm_open", {"comm_id": comm_id, "target_name": TARGET})
        s.wait_idle(opened, timeout=10)
        payload = b"\x01" * PAYLOAD
        s.drain()
        t0 = time.perf_counter()
        request = s.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {}})
        s.kc.session.send(s.kc.shell_channel.socket, request, buffers=[payload])
        answer = s.wait_iopub(request["header"]["msg_id"], 60, _is_comm_msg)
        results["buffer_in_ms"] = (time.perf_counter() - t0) * 1e3
        if answer["content"]["data"].get("length") != PAYLOAD:
            results["buffer_in_ms"] = "error: buffer lost"
        del payload

        # display
        s.drain()
        t0 = time.perf_counter()
        cell = s.execute_request(f"display({{'text/plain': 'x' * {DISPLAY}}}, raw=True)")
        shown = s.wait_iopub(cell, 60, lambda m: m["msg_type"] == "display_data")
        results["display_40mb_ms"] = (time.perf_counter() - t0) * 1e3
        if len(shown["content"]["data"]["text/plain"]) != DISPLAY:
            results["display_40mb_ms"] = "error: output lost"
        s.wait_idle(cell, 30)
    except BenchTimeout:
        for key, value in results.items():
            if isinstance(value, str):
                results[key] = "timeout"
    return results
