"""Regenerate docs/notebooks/concurrency.ipynb (kept in git; this script documents it)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Concurrency in async-kernel\n\n"
        "A cell that awaits does not make the kernel deaf: other shell requests are answered, "
        "and a value sent by the client in a comm message can resolve the awaiting cell."
    ),
    new_code_cell(
        "import anyio, comm, sniffio\n"
        "inbox = {}\n\n"
        "def on_open(channel, msg):\n"
        "    def on_msg(msg):\n"
        "        inbox['value'] = msg['content']['data']['value']\n"
        "        inbox['arrived'].set()\n"
        "    channel.on_msg(on_msg)\n\n"
        "comm.get_comm_manager().register_target('demo', on_open)\n"
        "sniffio.current_async_library()"
    ),
    new_markdown_cell(
        "The next cell waits for a comm message from the client. A sequential kernel would "
        "deadlock here: it would not read the comm message until the cell ended. The demo runner "
        "sends the message while the cell awaits."
    ),
    new_code_cell(
        metadata={
            # tests/test_notebooks.py plays the client: it opens this comm mid-cell.
            "async_kernel": {"client_comm": {"target_name": "demo", "data": {"value": 42}}}
        },
        source="inbox['arrived'] = anyio.Event()\n"
        "with anyio.fail_after(30):\n"
        "    await inbox['arrived'].wait()\n"
        "print('the client sent', inbox['value'])",
    ),
    new_markdown_cell(
        "While this cell sleeps, the runner asks for `kernel_info` and times the reply."
    ),
    new_code_cell("await anyio.sleep(2)\n'slept 2 s'"),
    new_markdown_cell(
        "The cell's `await` runs on the kernel's own backend. In a kernel started with "
        "`--interface.backend=trio`, trio code runs directly:"
    ),
    new_code_cell(
        "if sniffio.current_async_library() == 'trio':\n"
        "    import trio\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        for delay in (0.2, 0.1):\n"
        "            nursery.start_soon(trio.sleep, delay)\n"
        "    print('trio nursery finished')\n"
        "else:\n"
        "    import asyncio\n"
        "    await asyncio.gather(asyncio.sleep(0.2), asyncio.sleep(0.1))\n"
        "    print('asyncio gather finished')"
    ),
]
nb = new_notebook(
    cells=cells,
    metadata={
        "kernelspec": {"name": "async", "display_name": "Python 3 (async)", "language": "python"},
        "language_info": {"name": "python"},
        "async_kernel": {"kernels": ["async", "async-trio"]},
    },
)
out = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "concurrency.ipynb"
nbformat.write(nb, out)
print(f"wrote {out}")
