"""Progress bars and live output: what ipykernel users see while a cell runs.

Why: ``tqdm.auto`` must pick the widget bar here as under ipykernel (it looks for the module
``ipykernel.zmqshell``; see async_kernel/app/notebook_env.py), and a bar, ``update_display`` and
``clear_output(wait=True)`` must reach the frontend *while* the cell runs, also when the cell
blocks the main thread.  "While" is shown by causality, not time: each cell runs until the
test, having seen an update, tells it to stop (a file appears); output held back until the
cell's end would leave the test waiting (bounded) and failing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import TIMEOUT, execute_ok, run_ok, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient


def test_tqdm_auto_picks_the_widget_bar(kc: BlockingKernelClient) -> None:
    text = run_ok(
        kc,
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from tqdm.auto import tqdm\n"
        "from tqdm.notebook import tqdm_notebook\n"
        "print(issubclass(tqdm, tqdm_notebook))\n"
        "print('IPKernelApp' in get_ipython().config)\n",
    )
    assert text == "True\nTrue\n"


def test_ipykernel_module_is_never_faked_beyond_zmqshell(kc: BlockingKernelClient) -> None:
    text = run_ok(
        kc,
        "import sys\n"
        "shim = sys.modules['ipykernel.zmqshell']\n"
        "print(getattr(shim, '__async_kernel__', False))\n"
        "print(isinstance(get_ipython(), shim.ZMQInteractiveShell))\n"
        "print('ipykernel' in sys.modules)\n",
    )
    assert text == "True\nTrue\nFalse\n"


def until_stopped(stop: Path, body: str) -> str:
    """A cell that repeats ``body`` (blocking the main thread) until ``stop`` exists."""
    return (
        "import os, time\n"
        "i = 0\n"
        f"while not os.path.exists({str(stop)!r}):\n"
        "    i += 1\n"
        f"{body}"
        "    time.sleep(0.02)\n"
    )


def watch(
    kc: BlockingKernelClient, msg_id: str, seen: Any, stop: Path, wanted: int = 3
) -> list[Any]:
    """Collect ``seen(msg)`` values of the running cell until ``wanted`` distinct ones have
    arrived, then create ``stop``; returns the values."""
    values: list[Any] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(set(values)) < wanted:
            msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            assert not (
                msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
            ), "the cell ended before it was told to: its updates were held back"
            value = seen(msg)
            if value is not None:
                values.append(value)
    finally:
        stop.touch()
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    return values


def test_update_display_is_live(kc: BlockingKernelClient, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    code = (
        "from IPython.display import display\n"
        "handle = display('count 0', display_id=True)\n"
        + until_stopped(stop, "    handle.update(f'count {i}')\n")
    )
    msg_id = kc.execute(code)

    def seen(msg: dict[str, Any]) -> str | None:
        if msg["msg_type"] == "update_display_data":
            return str(msg["content"]["data"]["text/plain"])
        return None

    values = watch(kc, msg_id, seen, stop)
    assert values == sorted(values, key=lambda v: int(v.strip("'").split()[1]))


def test_clear_output_wait_is_live(kc: BlockingKernelClient, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    code = "from IPython.display import clear_output\n" + until_stopped(
        stop, "    clear_output(wait=True)\n    print(f'tick {i}')\n"
    )
    msg_id = kc.execute(code)
    kinds: list[str] = []

    def seen(msg: dict[str, Any]) -> str | None:
        kinds.append(msg["msg_type"])
        if msg["msg_type"] == "stream":
            return str(msg["content"]["text"])
        return None

    watch(kc, msg_id, seen, stop)
    # Each tick's text follows its clear_output (the stream is flushed before the clear).
    assert "clear_output" in kinds


def test_tqdm_notebook_bar_is_live(kc: BlockingKernelClient, tmp_path: Path) -> None:
    execute_ok(kc, "from tqdm.notebook import tqdm")
    stop = tmp_path / "stop"
    code = (
        "bar = tqdm(total=10**6, mininterval=0, miniters=1)\n"
        + until_stopped(stop, "    bar.update(1)\n")
        + "bar.close()\n"
    )
    msg_id = kc.execute(code)

    def seen(msg: dict[str, Any]) -> int | None:
        if msg["msg_type"] != "comm_msg":
            return None
        state = msg["content"]["data"].get("state", {})
        value = state.get("value")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    values = watch(kc, msg_id, seen, stop)
    assert values == sorted(values)


def test_a_progress_line_rewritten_with_cr_is_live(
    kc: BlockingKernelClient, tmp_path: Path
) -> None:
    """``\\r`` updates that never end a line, written every few milliseconds: each thread's
    text goes out a line at a time, and an unfinished line still goes out once it is
    FLUSH_INTERVAL old (by its age: it is never quiet for that long here)."""
    stop = tmp_path / "stop"
    code = "import sys\n" + until_stopped(stop, "    print(f'\\r{i}', end='')\n")
    msg_id = kc.execute(code)

    def seen(msg: dict[str, Any]) -> str | None:
        return str(msg["content"]["text"]) if msg["msg_type"] == "stream" else None

    assert watch(kc, msg_id, seen, stop, wanted=2)
