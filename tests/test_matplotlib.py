"""matplotlib in a plain kernel: inline figures, ipympl widgets, and refused GUIs.

Why: figures are the display hook most users hit first.  Inline figures must be sent
once when the cell ends (IPython's post_execute event, which a kernel driving
``run_cell_async`` must fire itself), and ipympl's figure comms must be served while
another cell is still awaiting.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from conftest import TIMEOUT, execute, execute_ok, shell_reply, stream_text
from jupyter_client.blocking.client import BlockingKernelClient

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pngs(outputs: list[dict[str, Any]]) -> list[bytes]:
    """The decoded image/png of every display_data message."""
    return [
        base64.b64decode(m["content"]["data"]["image/png"])
        for m in outputs
        if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]
    ]


def test_inline_is_the_default_and_sends_each_figure_once(kc: BlockingKernelClient) -> None:
    outputs = execute_ok(
        kc,
        "import matplotlib, matplotlib.pyplot as plt\n"
        "print(matplotlib.get_backend())\n"
        "plt.plot([1, 3, 2])",
    )
    assert stream_text(outputs) == "module://matplotlib_inline.backend_inline\n"
    images = pngs(outputs)
    assert len(images) == 1
    assert images[0].startswith(PNG_SIGNATURE)
    assert not pngs(execute_ok(kc, "1 + 1"))  # sent and closed: nothing left for later cells


def test_percent_matplotlib_inline(kc: BlockingKernelClient) -> None:
    execute_ok(kc, "%matplotlib inline")
    outputs = execute_ok(kc, "fig, ax = plt.subplots()\nax.bar([1, 2], [3, 4])\nplt.show()")
    images = pngs(outputs)
    assert len(images) == 1
    assert images[0].startswith(PNG_SIGNATURE)


def test_gui_without_its_host_names_the_kernel_spec(kc: BlockingKernelClient) -> None:
    for gui in ("tk", "qt"):
        reply, _ = execute(kc, f"%matplotlib {gui}")
        assert reply["content"]["status"] == "error"
        assert f"async-kernel -a async-{gui} --interface.loop={gui}" in reply["content"]["evalue"]
    assert pngs(execute_ok(kc, "%matplotlib inline\nplt.plot([1])"))  # nothing got stuck


def comm_messages(outputs: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in outputs if m["msg_type"] == msg_type]


def is_binary_frame(msg: dict[str, Any]) -> bool:
    """An ipympl comm message carrying a rendered frame in its buffers."""
    if msg["msg_type"] != "comm_msg":
        return False
    custom = msg["content"]["data"].get("content") or {}
    return json.loads(custom.get("data", "{}")).get("type") == "binary"


def test_widget_figure_comms_are_served_while_a_cell_awaits(kc: BlockingKernelClient) -> None:
    pytest.importorskip("ipympl", reason="pip install ipympl (async-kernel[matplotlib])")
    outputs = execute_ok(kc, "%matplotlib widget\nfig, ax = plt.subplots()\nax.plot([1, 2])\nfig")
    opens = [
        m
        for m in comm_messages(outputs, "comm_open")
        if m["content"]["target_name"] == "jupyter.widget"
        and m["content"]["data"]["state"].get("_model_name") == "MPLCanvasModel"
    ]
    assert len(opens) == 1
    canvas_id = opens[0]["content"]["comm_id"]

    busy_id = kc.execute("import anyio\nawait anyio.sleep(2)\nprint('slept')")
    # What ipympl's front end sends to ask for a redraw; the kernel answers on the comm.
    draw = kc.session.msg(
        "comm_msg",
        {"comm_id": canvas_id, "data": {"method": "custom", "content": {"type": "draw"}}},
    )
    kc.shell_channel.send(draw)
    deadline = time.monotonic() + TIMEOUT
    image: dict[str, Any] | None = None
    busy_done = False
    while image is None:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        parent = msg["parent_header"].get("msg_id")
        if parent == busy_id and msg["msg_type"] == "stream":
            busy_done = True
        if parent == draw["header"]["msg_id"] and is_binary_frame(msg):
            image = msg
    assert not busy_done, "the figure was redrawn only after the awaiting cell"
    assert image["buffers"] and len(image["buffers"][0]) > 0
    assert shell_reply(kc, busy_id)["content"]["status"] == "ok"
    execute_ok(kc, "plt.close('all')\n%matplotlib inline")
