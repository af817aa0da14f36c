"""Chaos: interrupts at random moments into busy cells never hang or break the kernel.

Each round starts a cell that prints, waits in ``input()``, awaits, sleeps, sends comm
messages or displays, flat out; interrupts it at a random moment; then checks that the cell
ended, that output still flows and that the next cell runs.  An interrupt that struck the
kernel's own code mid-update (a flag set and not cleared) shows up here as output that stops
or a cell that never ends.

The CI run is reduced (``CHAOS_ROUNDS``, default 36 per kernel); the full size is
``CHAOS_ROUNDS=300`` (see docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import TIMEOUT, drain, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "36"))

CELLS = {
    "print": "print('go', flush=True)\nwhile True:\n    print('x' * 40)",
    "input": "print('go', flush=True)\ninput('? ')",
    "await": "print('go', flush=True)\nimport anyio\nawait anyio.sleep(30)",
    "sleep": "print('go', flush=True)\nimport time\ntime.sleep(30)",
    "comm": (
        "from comm import create_comm\n_c = create_comm(target_name='chaos')\n"
        "print('go', flush=True)\nwhile True:\n    _c.send({'n': 1})"
    ),
    "display": (
        "from IPython.display import display\nprint('go', flush=True)\n"
        "while True:\n    display({'text/plain': 'shown'}, raw=True)"
    ),
}


class IopubReader:
    """Reads iopub all the time on a thread of its own, as a real front end does (a client
    that stops reading during a flood is another test: tests/test_zmq_transport.py)."""

    def __init__(self, kc: BlockingKernelClient) -> None:
        self._kc = kc
        self._by_parent: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._changed = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                msg = self._kc.iopub_channel.get_msg(timeout=0.05)
            except Exception:
                continue
            with self._changed:
                self._by_parent[msg["parent_header"].get("msg_id", "")].append(msg)
                self._changed.notify_all()

    def wait(self, msg_id: str, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict]:
        """The messages of ``msg_id`` once ``done`` says so (bounded)."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self._by_parent[msg_id]), TIMEOUT):
                raise AssertionError(f"iopub of {msg_id} incomplete: {self._by_parent[msg_id]}")
            return list(self._by_parent[msg_id])

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)


@contextmanager
def reading(kc: BlockingKernelClient) -> Iterator[IopubReader]:
    reader = IopubReader(kc)
    try:
        yield reader
    finally:
        reader.stop()


def started(msgs: list[dict[str, Any]]) -> bool:
    return any(m["msg_type"] == "stream" and "go" in m["content"]["text"] for m in msgs)


def idle(msgs: list[dict[str, Any]]) -> bool:
    return any(
        m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in msgs
    )


def stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in msgs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def test_random_interrupts_never_hang(kernel: tuple[KernelManager, BlockingKernelClient]) -> None:
    km, kc = kernel
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "2026")))
    kinds = sorted(CELLS)
    drain(kc)
    with reading(kc) as iopub:
        for round_ in range(ROUNDS):
            kind = kinds[round_ % len(kinds)]
            msg_id = kc.execute(CELLS[kind], allow_stdin=True)
            iopub.wait(msg_id, started)
            time.sleep(rng.uniform(0, 0.03))
            km.interrupt_kernel()
            reply = shell_reply(kc, msg_id)
            assert reply["content"]["status"] == "error", (round_, kind, reply["content"])
            assert reply["content"]["ename"] == "KeyboardInterrupt", (round_, kind)
            iopub.wait(msg_id, idle)
            check = kc.execute(f"print('alive', {round_})")
            assert shell_reply(kc, check)["content"]["status"] == "ok", (round_, kind)
            assert stdout(iopub.wait(check, idle)) == f"alive {round_}\n", (round_, kind)
            while kc.stdin_channel.msg_ready():  # the input() cells' requests
                kc.stdin_channel.get_msg(timeout=0.01)


@pytest.mark.parametrize("kind", ["print", "input"])
def test_interrupts_in_a_burst_are_all_survived(
    kernel: tuple[KernelManager, BlockingKernelClient], kind: str
) -> None:
    """Several interrupts in a row, closer together than a cell's reply: extra ones land in
    the next cell at worst (as in any kernel), never in the kernel's bookkeeping."""
    km, kc = kernel
    drain(kc)
    with reading(kc) as iopub:
        msg_id = kc.execute(CELLS[kind], allow_stdin=True)
        iopub.wait(msg_id, started)
        for _ in range(5):
            km.interrupt_kernel()
            time.sleep(0.002)
        assert shell_reply(kc, msg_id)["content"]["ename"] == "KeyboardInterrupt"
        iopub.wait(msg_id, idle)
        time.sleep(0.2)  # let stray interrupts land while idle (harmless there)
        check = kc.execute("print('alive')")
        assert shell_reply(kc, check)["content"]["status"] == "ok"
        assert stdout(iopub.wait(check, idle)) == "alive\n"
