"""Run docs/notebooks/concurrency.ipynb through the real kernel with nbclient, and print it.

While the notebook runs, this script plays the client's part: it sends the comm message
the awaiting cell is waiting for, and times a kernel_info_request sent while a cell awaits.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.asynchronous import AsyncKernelClient
from nbclient import NotebookClient

DEMO = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "concurrency.ipynb"


class DemoClient(NotebookClient):
    """An nbclient that also acts as the front end: it talks to the kernel mid-cell."""

    async def async_execute_cell(
        self, cell: Any, cell_index: int, *args: Any, **kwargs: Any
    ) -> Any:
        source = cell.get("source", "")
        helper = None
        if "inbox['arrived'].wait()" in source:
            helper = asyncio.ensure_future(self._send_comm_value())
        elif "await anyio.sleep(2)" in source:
            helper = asyncio.ensure_future(self._time_kernel_info())
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        finally:
            if helper is not None:
                await helper

    async def _send_comm_value(self) -> None:
        await asyncio.sleep(0.5)
        kc = self.kc
        assert kc is not None
        kc.shell_channel.send(
            kc.session.msg("comm_open", {"comm_id": "demo1", "target_name": "demo", "data": {}})
        )
        kc.shell_channel.send(
            kc.session.msg("comm_msg", {"comm_id": "demo1", "data": {"value": 42}})
        )
        print("  [client] sent comm_msg {'value': 42} while the cell awaited")

    async def _time_kernel_info(self) -> None:
        await asyncio.sleep(0.5)
        assert self.km is not None
        # A second client, as a second front end would be: nbclient keeps reading its own.
        # Its own session (and so its own socket identity): the kernel's ROUTER sockets
        # must see two distinct peers.
        other = AsyncKernelClient()
        other.load_connection_info(self.km.get_connection_info())
        other.start_channels()
        try:
            started = time.perf_counter()
            reply = await other.kernel_info(reply=True, timeout=10)
            took = (time.perf_counter() - started) * 1000
        finally:
            other.stop_channels()
        assert reply["content"]["status"] == "ok"
        print(f"  [client] kernel_info_reply after {took:.1f} ms while the cell awaited")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kernel", default="async", help="kernel spec name (default: async)")
    args = parser.parse_args()
    nb = nbformat.read(DEMO, as_version=4)
    print(f"Running {DEMO.name} on kernel spec {args.kernel!r}")
    client = DemoClient(nb, kernel_name=args.kernel, timeout=60, startup_timeout=60)
    client.execute()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        print(f"\nIn [{cell.get('execution_count')}]:")
        print("  " + cell.source.replace("\n", "\n  "))
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                print("  " + output.text.rstrip().replace("\n", "\n  "))
            elif output.output_type in ("execute_result", "display_data"):
                print("  Out:", output.data.get("text/plain", ""))
            elif output.output_type == "error":
                raise SystemExit(f"cell {index} failed: {output.ename}: {output.evalue}")
    print("\nDemo finished: every cell ran.")


if __name__ == "__main__":
    main()
