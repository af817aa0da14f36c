"""Dask from a cell on either backend: an interrupt cancels the cell's unfinished futures, and
the kernel answers while thousands of futures complete.

(docs/notebooks/dask.ipynb, run by test_notebooks.py, covers submit and as_completed.)

One cluster serves the whole module: a ``LocalCluster`` of two worker processes, run by a
script of its own (not in pytest's process).  Its tasks that must keep running wait for a
gate file the test creates when done with them: a Python thread on a worker cannot be
stopped, so a cancelled task that slept would hold its worker's thread for good.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import TIMEOUT, collect_outputs, run_ok, shell_reply, stream_text, wait_for_stream
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

pytest.importorskip("distributed")

CLUSTER_SCRIPT = """
import sys
from distributed import LocalCluster

if __name__ == "__main__":
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    )
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.close()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler address of a cluster of two worker processes, for the whole module."""
    script = tmp_path_factory.mktemp("cluster") / "cluster.py"
    script.write_text(CLUSTER_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    address: list[str] = []
    reader = threading.Thread(target=lambda: address.append(process.stdout.readline().strip()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=90)  # worker processes start slowly on a loaded machine
    try:
        assert address and address[0].startswith("tcp://"), "the cluster did not start"
        yield address[0]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


SETUP = """
import os, time
from distributed import Client, as_completed
from async_kernel import call_using_backend

ADDRESS = {address!r}

def hold(x, gate, started=None):
    if started:  # the test waits for this: the task runs on a worker
        open(started, "w").close()
    for _ in range(1200):  # until the test opens the gate, at most two minutes
        if os.path.exists(gate):
            break
        time.sleep(0.1)
    return x

def inc(x):
    return x + 1

def on_scheduler(client, futures):
    \"\"\"Which of the futures' keys the scheduler still knows, once it has forgotten them
    (bounded).\"\"\"
    keys = [f.key for f in futures]
    def known(dask_scheduler, keys=keys):
        return sorted(str(k) for k in keys if k in dask_scheduler.tasks)
    deadline = time.monotonic() + 30
    while (left := client.run_on_scheduler(known)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left

client = Client(ADDRESS, set_as_default=False)  # synchronous: its own loop on its own thread
"""


@pytest.fixture(scope="module")
def dask_kernel(
    kernel: tuple[KernelManager, BlockingKernelClient], cluster: str
) -> tuple[KernelManager, BlockingKernelClient]:
    """The module's kernel with a synchronous client of the cluster and a few helpers."""
    run_ok(kernel[1], SETUP.format(address=cluster))
    return kernel


@pytest.fixture
def gate(tmp_path: Path) -> Generator[Path]:
    """A file the cluster's held tasks wait for; created at the end of the test."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def check(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code`` (which may poll the scheduler for up to 30 s), insist on success; its
    stdout."""
    msg_id = kc.execute(code)
    reply = shell_reply(kc, msg_id, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return stream_text(collect_outputs(kc, msg_id, timeout=60))


def interrupt_when_printed(km: KernelManager, kc: BlockingKernelClient, code: str) -> str:
    """Run ``code``, interrupt it once it has printed 'submitted'; its stderr.

    The cell must end by the interrupt, and the kernel must answer right after.
    """
    msg_id = kc.execute(code)
    wait_for_stream(kc, msg_id, "submitted")
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    stderr = stream_text(collect_outputs(kc, msg_id), "stderr")
    info = shell_reply(kc, kc.kernel_info())
    assert info["content"]["status"] == "ok"
    return stderr


def test_interrupt_cancels_a_blocking_gathers_futures(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    km, kc = dask_kernel
    stderr = interrupt_when_printed(
        km,
        kc,
        f"futs = client.map(hold, range(4), gate={str(gate)!r}, pure=False)\n"
        "print('submitted', flush=True)\n"
        "client.gather(futs)\n",
    )
    assert "Cancelled 4 unfinished Dask futures" in stderr
    out = check(kc, "print([f.status for f in futs], on_scheduler(client, futs))")
    assert out == str(["cancelled"] * 4) + " []\n"


def test_an_interrupted_compute_leaves_nothing_running(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path, tmp_path: Path
) -> None:
    """``.compute()`` on a client keeps its futures to itself: distributed releases them when
    interrupted (nothing is left for the kernel to cancel)."""
    km, kc = dask_kernel
    started = tmp_path / "started"
    msg_id = kc.execute(
        "import dask\n"
        f"held = dask.delayed(hold, pure=False)(1, {str(gate)!r}, {str(started)!r})\n"
        "held.compute(scheduler=client)\n",
    )
    deadline = time.monotonic() + TIMEOUT
    while not started.exists():  # the task runs: the cell waits in compute
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=60)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert check(kc, "print(on_scheduler(client, [held]))") == "[]\n"


def test_interrupt_cancels_futures_kept_in_variables(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    """Futures of the cell, wherever it kept them; futures of earlier cells are left alone."""
    km, kc = dask_kernel
    run_ok(kc, f"earlier = client.submit(hold, 'earlier', {str(gate)!r}, pure=False)")
    interrupt_when_printed(
        km,
        kc,
        f"kept = {{'a': client.submit(hold, 'a', {str(gate)!r}, pure=False)}}\n"
        f"done = client.submit(inc, 1, pure=False)\n"
        "assert done.result() == 2\n"
        "print('submitted', flush=True)\n"
        "time.sleep(60)\n",
    )
    out = run_ok(kc, "print(kept['a'].status, done.status, earlier.status)")
    assert out == "cancelled finished pending\n"
    gate.touch()
    assert run_ok(kc, "print(earlier.result(timeout=30))") == "earlier\n"


def test_fire_and_forget_work_survives_the_interrupt(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    """The cancel is not forced: a key the scheduler keeps for fire_and_forget runs on."""
    km, kc = dask_kernel
    interrupt_when_printed(
        km,
        kc,
        "from distributed import fire_and_forget\n"
        f"kept = client.submit(hold, 'kept', {str(gate)!r}, pure=False)\n"
        "fire_and_forget(kept)\n"
        "print('submitted', flush=True)\n"
        "kept.result()\n",
    )
    run_ok(
        kc,
        "def task_state(dask_scheduler, key=kept.key):\n"
        "    task = dask_scheduler.tasks.get(key)\n"
        "    return task and task.state\n",
    )
    assert run_ok(kc, "print(kept.status, client.run_on_scheduler(task_state))") == (
        "cancelled processing\n"  # here, not on the scheduler
    )
    gate.touch()
    out = check(
        kc,
        "deadline = time.monotonic() + 30\n"
        "while (state := client.run_on_scheduler(task_state)) == 'processing':\n"
        "    assert time.monotonic() < deadline\n"
        "    time.sleep(0.1)\n"
        "print(state)\n",
    )
    assert out == "memory\n"  # it ran to its end: a cancelled task is forgotten


def test_the_cancel_can_be_turned_off(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    km, kc = dask_kernel
    run_ok(kc, "%config AsyncShell.cancel_dask_on_interrupt = False")
    try:
        stderr = interrupt_when_printed(
            km,
            kc,
            f"futs = client.map(hold, range(2), gate={str(gate)!r}, pure=False)\n"
            "print('submitted', flush=True)\n"
            "client.gather(futs)\n",
        )
    finally:
        run_ok(kc, "%config AsyncShell.cancel_dask_on_interrupt = True")
    assert "Dask" not in stderr
    assert run_ok(kc, "print([f.status for f in futs])") == str(["pending"] * 2) + "\n"
    gate.touch()
    assert run_ok(kc, "print(client.gather(futs))") == "[0, 1]\n"


def test_interrupt_cancels_an_awaiting_cells_futures(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], backend: str, gate: Path
) -> None:
    """An asynchronous client: on the kernel's loop (asyncio), in a guest run (trio)."""
    km, kc = dask_kernel
    if backend == "asyncio":
        run_ok(kc, "aclient = await Client(ADDRESS, asynchronous=True, set_as_default=False)")
        code = (
            f"futs = aclient.map(hold, range(4), gate={str(gate)!r}, pure=False)\n"
            "print('submitted', flush=True)\n"
            "await aclient.gather(futs)\n"
        )
    else:  # Dask's asynchronous client runs on asyncio: here, for the call's length
        code = (
            "futs = []\n"
            "async def run():\n"
            "    async with Client(ADDRESS, asynchronous=True, set_as_default=False) as c:\n"
            f"        futs.extend(c.map(hold, range(4), gate={str(gate)!r}, pure=False))\n"
            "        print('submitted', flush=True)\n"
            "        return await c.gather(futs)\n"
            "await call_using_backend('asyncio', run)\n"
        )
    interrupt_when_printed(km, kc, code)
    out = check(kc, "print([f.status for f in futs], on_scheduler(client, futs))")
    assert out == str(["cancelled"] * 4) + " []\n"
    if backend == "asyncio":
        run_ok(kc, "await aclient.close()")


def test_interrupt_cancels_futures_of_a_client_on_a_callers_loop(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    """An asynchronous client kept between cells on an asyncio caller's thread (the way to
    keep one on a trio kernel): its futures are cancelled on its own loop."""
    km, kc = dask_kernel
    run_ok(
        kc,
        "from async_kernel import Caller\n"
        "dask_loop = Caller.get('dask', 'asyncio')\n"
        "async def connect():\n"
        "    return await Client(ADDRESS, asynchronous=True, set_as_default=False)\n"
        "tclient = await dask_loop.call_soon(connect)\n",
    )
    interrupt_when_printed(
        km,
        kc,
        f"futs = tclient.map(hold, range(4), gate={str(gate)!r}, pure=False)\n"
        "print('submitted', flush=True)\n"
        "await dask_loop.call_soon(tclient.gather, futs)\n",
    )
    out = check(kc, "print([f.status for f in futs], on_scheduler(client, futs))")
    assert out == str(["cancelled"] * 4) + " []\n"
    run_ok(kc, "await dask_loop.call_soon(tclient.close)\nawait dask_loop.stop()")


FLOOD_BOUND = 300  # seconds: the 5,000 futures complete long before (a bound, not a speed)
FLOOD = """
async def flood(client):
    futures = client.map(inc, range(5000), pure=False)
    last = client.submit(hold, 'last', {gate!r}, pure=False)
    print('submitted', flush=True)
    done = 0
    async for future in as_completed([*futures, last], loop=client.loop):
        done += 1
        if done == 5000:
            print('flooded', flush=True)
    return done

async def on_asyncio():
    async with Client(ADDRESS, asynchronous=True, set_as_default=False) as c:
        return await flood(c)

print('completed', await call_using_backend('asyncio', on_asyncio))
"""

ECHO = """
import comm
def echo_target(c, msg):
    c.on_msg(lambda m: c.send(m['content']['data']))
comm.get_comm_manager().register_target('dask-echo', echo_target)
"""


SLOW = 1.0  # seconds: an answer this late starts a look at how the kernel is scheduled


def thread_times(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread of process ``pid``: the nanoseconds it has run and those it has waited
    runnable for a CPU (Linux's schedstat; nothing elsewhere)."""
    times: dict[str, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            ran, waited, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):  # ended meanwhile, or no schedstat
            continue
        times[task.name] = (int(ran), int(waited))
    return times


def scheduling_since(before: dict[str, tuple[int, int]], pid: int, seconds: float) -> str:
    """What the kernel's threads did since ``before``: CPU used, and time spent runnable but
    not run.  Ran little and waited little: every thread slept, waiting for a wake-up that
    did not come (a kernel bug).  Ran a lot: the kernel was busy.  Waited a lot: the machine
    did not give the kernel a CPU (the flake seen beside CPU hogs: 0.7-1.3 s stalls in which
    the kernel's threads ran 7-100 ms in all and each waited for a CPU up to 0.9 s)."""
    after = thread_times(pid)
    if not before or not after:
        return "(no schedstat here)"
    rows = [
        (tid, (ran - before[tid][0]) / 1e6, (waited - before[tid][1]) / 1e6)
        for tid, (ran, waited) in after.items()
        if tid in before
    ]
    ran = sum(row[1] for row in rows)
    longest = max((row[2] for row in rows), default=0.0)
    busiest = ", ".join(
        f"{tid} ran {r:.0f} ms, waited {w:.0f} ms"
        for tid, r, w in sorted(rows, key=lambda x: -x[1] - x[2])[:6]
    )
    return (
        f"in the last {seconds:.0f} s its threads ran {ran:.0f} ms in all; the longest wait "
        f"for a CPU was {longest:.0f} ms ({busiest})"
    )


def dump_stacks_and_fail(km: KernelManager, what: str, scheduling: str) -> NoReturn:
    """The kernel writes its threads' stacks to its stderr (shown with this test's output:
    launch.py's SIGUSR1 handler), then the test fails, saying how the kernel was scheduled
    meanwhile (:func:`scheduling_since`)."""
    if not km.is_alive():  # it died: a crash leaves its stacks in its stderr (faulthandler)
        process = getattr(km.provisioner, "process", None)  # a LocalProvisioner's Popen
        code = process.poll() if process is not None else None
        pytest.fail(f"no {what}: the kernel died (exit code {code}); {scheduling}")
    os.kill(km.provisioner.pid, signal.SIGUSR1)  # type: ignore[union-attr]
    time.sleep(1)
    pytest.fail(
        f"no {what} within {TIMEOUT} s (the kernel's stacks are in its stderr); {scheduling}"
    )


def next_or_fail(
    km: KernelManager, get: Callable[..., dict[str, Any]], what: str
) -> dict[str, Any]:
    """The next message ``get`` (a client's get_shell_msg or get_iopub_msg) returns, within
    TIMEOUT; after SLOW, the kernel's threads are watched (:func:`scheduling_since`) so that
    a failure says whether the kernel slept, worked, or waited for a CPU."""
    try:
        return get(timeout=SLOW)
    except queue.Empty:
        pid = int(km.provisioner.pid)  # type: ignore[union-attr]
        before = thread_times(pid)
    try:
        return get(timeout=TIMEOUT - SLOW)
    except queue.Empty:
        dump_stacks_and_fail(km, what, scheduling_since(before, pid, TIMEOUT - SLOW))


def probe(km: KernelManager, kc: BlockingKernelClient, cell: str, comm_id: str, n: int) -> str:
    """Ask kernel_info and comm_info, send a comm message; each answered before ``cell``
    ends.  Returns what ``cell`` printed meanwhile."""
    asks = {kc.kernel_info(), kc.comm_info()}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"n": n}}))
    while asks:
        msg = next_or_fail(km, kc.get_shell_msg, f"reply to {sorted(asks)} in round {n}")
        parent = msg["parent_header"].get("msg_id")
        assert parent != cell, f"the cell ended before the answers: {msg['content']}"
        if parent in asks:
            assert msg["content"]["status"] == "ok"
            asks.discard(parent)
    printed = ""
    while True:
        msg = next_or_fail(km, kc.get_iopub_msg, f"echo of the comm message in round {n}")
        parent = msg["parent_header"].get("msg_id")
        if parent == cell and msg["msg_type"] == "stream":
            printed += msg["content"]["text"]
        if msg["msg_type"] == "comm_msg" and msg["content"]["data"] == {"n": n}:
            return printed


def test_answers_while_thousands_of_futures_complete(
    dask_kernel: tuple[KernelManager, BlockingKernelClient], gate: Path
) -> None:
    """5,000 futures completing into ``as_completed``: kernel_info, comm_info and a comm's
    echo all answered while the cell runs (its last future waits for the gate)."""
    km, kc = dask_kernel
    run_ok(kc, ECHO)
    comm_id = "dask-echo-comm"
    open_msg: dict[str, Any] = {"comm_id": comm_id, "target_name": "dask-echo", "data": {}}
    kc.shell_channel.send(kc.session.msg("comm_open", open_msg))
    cell = kc.execute(FLOOD.format(gate=str(gate)))
    printed, rounds = "", 0
    while "submitted" not in printed:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == cell and msg["msg_type"] == "stream":
            printed += msg["content"]["text"]
    deadline = time.monotonic() + FLOOD_BOUND
    while "flooded" not in printed:  # probes while the futures complete, then once more
        rounds += 1
        assert time.monotonic() < deadline, "the 5,000 futures never completed"
        printed += probe(km, kc, cell, comm_id, rounds)
    probe(km, kc, cell, comm_id, 0)
    gate.touch()
    reply = shell_reply(kc, cell, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert "completed 5001" in printed + stream_text(collect_outputs(kc, cell))
