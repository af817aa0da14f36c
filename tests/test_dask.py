"""Dask from a cell on either backend: an interrupt cancels the cell's running futures.

(docs/notebooks/dask.ipynb, run by test_notebooks.py, covers submit and as_completed.)
"""

from __future__ import annotations

import pytest
from conftest import run_ok, shell_reply, wait_for_stream
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

pytest.importorskip("distributed")

CELL = """
import anyio
from distributed import Client, LocalCluster
from async_kernel import call_using_backend

def slow(x):
    import time
    time.sleep(30)
    return x

statuses = []

async def run():
    cluster = await LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1,
        asynchronous=True, dashboard_address=None,
    )
    client = await Client(cluster, asynchronous=True)
    futures = client.map(slow, range(4))
    try:
        await client.wait_for_workers(2)
        print("submitted", flush=True)
        return await client.gather(futures)
    finally:
        with anyio.CancelScope(shield=True):  # the interrupt cancels the cell: not this
            await client.cancel(futures)
            statuses.extend(f.status for f in futures)
            await client.close()
            await cluster.close()

await call_using_backend("asyncio", run)
"""


def test_interrupt_cancels_the_cells_dask_futures(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = kernel
    msg_id = kc.execute(CELL)
    wait_for_stream(kc, msg_id, "submitted")
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert run_ok(kc, "print(statuses)") == str(["cancelled"] * 4) + "\n"
