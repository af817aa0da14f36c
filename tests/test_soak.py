"""Load: thousands of mixed requests from several clients at once, some behind long cells.

Every request must get exactly one reply, addressed to the client that sent it and naming
it as parent; every cell's output must reach iopub with the right parent; memory must settle.
The default run sends 1,000 requests; ``-m slow`` (or ASYNC_KERNEL_SOAK=N) sends 10,000.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
import zmq
from _raw import RawPeers, parse, raw_peers, signed_frames
from conftest import TIMEOUT, start_kernel
from jupyter_client.manager import KernelManager

CLIENTS = 4
WINDOW = 40  # requests a client keeps in flight
MIX = ["execute", "complete", "inspect", "comm_msg", "kernel_info"]


@dataclass
class ClientRun:
    name: str
    sent: dict[str, str] = field(default_factory=dict)  # msg_id -> msg_type
    replies: Counter[str] = field(default_factory=Counter)
    wrong: list[Any] = field(default_factory=list)
    expected_output: dict[str, str] = field(default_factory=dict)  # execute msg_id -> text


def _request(client: str, i: int, long_every: int) -> tuple[str, dict[str, Any]]:
    kind = MIX[i % len(MIX)]
    if kind == "execute":
        if long_every and i % long_every == 0:
            return "execute_request", {
                "code": f"import anyio\nawait anyio.sleep(0.2)\nprint('{client}-{i}')"
            }
        return "execute_request", {"code": f"print('{client}-{i}')", "silent": False}
    if kind == "complete":
        return "complete_request", {"code": "import o", "cursor_pos": 8}
    if kind == "inspect":
        return "inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0}
    if kind == "comm_msg":
        return "comm_msg", {"comm_id": f"no-such-comm-{i}", "data": {"i": i}}
    return "kernel_info_request", {}


def _drive(raw: RawPeers, run: ClientRun, count: int, long_every: int, errors: list[str]) -> None:
    sock = raw.socket(zmq.DEALER)
    sock.identity = run.name.encode()
    raw.connect("shell", sock)
    in_flight = 0
    sent = 0
    deadline = time.monotonic() + TIMEOUT * 20
    try:
        while (sent < count or in_flight) and time.monotonic() < deadline:
            while sent < count and in_flight < WINDOW:
                msg_type, content = _request(run.name, sent, long_every)
                msg_id, frames = signed_frames(raw.key, msg_type, content)
                sock.send_multipart(frames)
                if msg_type.endswith("_request"):
                    run.sent[msg_id] = msg_type
                    in_flight += 1
                if msg_type == "execute_request":
                    run.expected_output[msg_id] = f"{run.name}-{sent}\n"
                sent += 1
            if in_flight and sock.poll(TIMEOUT * 1000):
                msg = parse(sock.recv_multipart())
                parent = msg["parent_header"].get("msg_id")
                if parent not in run.sent:
                    run.wrong.append(msg)
                    continue
                run.replies[parent] += 1
                expected = run.sent[parent].removesuffix("_request") + "_reply"
                if msg["header"]["msg_type"] != expected or msg["content"].get("status") != "ok":
                    run.wrong.append(msg)
                in_flight -= 1
            elif in_flight:
                errors.append(f"{run.name}: no reply within {TIMEOUT}s, {in_flight} in flight")
                return
    except Exception as err:  # pragma: no cover - reported by the test
        errors.append(f"{run.name}: {err!r}")


def _collect_iopub(sub: zmq.Socket[Any], stop: threading.Event, out: dict[str, Any]) -> None:
    streams: defaultdict[str, list[str]] = defaultdict(list)
    idle: Counter[str] = Counter()
    while not stop.is_set() or sub.poll(200):
        if not sub.poll(50):
            continue
        msg = parse(sub.recv_multipart())
        parent = msg["parent_header"].get("msg_id", "")
        if msg["header"]["msg_type"] == "stream":
            streams[parent].append(msg["content"]["text"])
        elif msg["content"].get("execution_state") == "idle":
            idle[parent] += 1
    out["streams"], out["idle"] = streams, idle


def _soak(km: KernelManager, total: int, long_every: int) -> dict[str, Any]:
    with raw_peers(km.get_connection_info()) as raw:
        sub = raw.socket(zmq.SUB)
        sub.rcvhwm = 0
        raw.connect("iopub", sub)
        time.sleep(0.3)
        stop = threading.Event()
        iopub: dict[str, Any] = {}
        collector = threading.Thread(target=_collect_iopub, args=(sub, stop, iopub))
        collector.start()
        runs = [ClientRun(f"client{n}") for n in range(CLIENTS)]
        errors: list[str] = []
        threads = [
            threading.Thread(target=_drive, args=(raw, run, total // CLIENTS, long_every, errors))
            for run in runs
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT * 20)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        stop.set()
        collector.join(timeout=TIMEOUT)
    assert not errors, errors
    for run in runs:
        assert not run.wrong, run.wrong[:3]
        assert set(run.replies) == set(run.sent), f"{run.name}: missing replies"
        assert all(n == 1 for n in run.replies.values()), f"{run.name}: duplicate replies"
        for msg_id, text in run.expected_output.items():
            assert "".join(iopub["streams"].get(msg_id, [])) == text, (run.name, msg_id)
            assert iopub["idle"][msg_id] == 1
    return {"requests": sum(len(r.sent) for r in runs), "elapsed": elapsed}


def _rss(km: KernelManager) -> int:
    pid = km.provisioner.pid  # type: ignore[union-attr]
    return psutil.Process(pid).memory_info().rss


def _run(total: int, warm_up: int) -> None:
    with start_kernel() as (km, kc):
        _soak(km, warm_up, long_every=0)
        rss_warm = _rss(km)
        result = _soak(km, total, long_every=97)
        rss_after = _rss(km)
        assert kc.is_alive()
    grown = (rss_after - rss_warm) / 2**20
    print(
        f"\nsoak: {result['requests']} requests with replies in {result['elapsed']:.1f}s; "
        f"RSS after warm-up {rss_warm / 2**20:.1f} MiB, after soak {rss_after / 2**20:.1f} MiB "
        f"(+{grown:.1f} MiB)"
    )
    assert grown < 25 + total / 1000, f"RSS grew by {grown:.1f} MiB"


def test_soak_default() -> None:
    _run(int(os.environ.get("ASYNC_KERNEL_SOAK", "1000")), warm_up=200)


@pytest.mark.slow
def test_soak_10k() -> None:
    _run(10_000, warm_up=1000)


def test_heartbeat_while_a_cell_spins() -> None:
    """The heartbeat is answered from C (zmq.proxy), so a pure-Python busy loop can't stall it.

    Causality, not a time limit: the cell spins until it is interrupted, and every ping is
    echoed before that interrupt is sent (the echo latency is a figure for bench/, printed
    here only for the log).
    """
    with start_kernel() as (km, kc), raw_peers(km.get_connection_info()) as raw:
        hb = raw.socket(zmq.REQ)
        raw.connect("hb", hb)
        msg_id = kc.execute("import time\nt = time.time()\nwhile time.time() - t < 600: pass")
        started = kc.get_iopub_msg(timeout=TIMEOUT)
        while not (
            started["parent_header"].get("msg_id") == msg_id
            and started["msg_type"] == "execute_input"
        ):
            started = kc.get_iopub_msg(timeout=TIMEOUT)
        latencies = []
        for _ in range(20):
            start = time.perf_counter()
            hb.send(b"ping")
            assert hb.poll(TIMEOUT * 1000), "heartbeat did not answer"
            assert hb.recv() == b"ping"
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        # The cell was still spinning when the last echo came: only the interrupt ended it.
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    print(f"\nheartbeat during a busy cell: max {max(latencies) * 1000:.1f} ms")
