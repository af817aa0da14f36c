"""Never deaf (#17), in JupyterLab: a cell that blocks the main thread leaves the page usable.

While one cell runs ``time.sleep(30)``, Tab in another cell shows a completion popup that
offers names defined before the sleep, and Shift+Tab shows a docstring of a function defined
before it; the sleeping cell still shows ``[*]`` when each appears (causality, not timing).

With JupyterLab's default "Kernel Comms over subshells" (``perCommTarget``: the setting is
left alone, and the test checks it is at that default), dragging an ipywidgets slider ends a
cell that polls the slider's value in a blocking loop with ``async_kernel.process_events``;
the websocket frames the page sent prove the widget's ``comm_msg`` carried a ``subshell_id``.

A page reloaded while a cell sleeps connects: Lab sends kernel_info on every (re)connect and
shows the kernel as "Unknown", holding every other request, until the reply comes (with
ipykernel the status bar stays "Unknown" for the whole sleep: checked by hand).

Both backends: the ``async`` kernel spec (asyncio) and an ``async-trio`` spec beside it.
Screenshots: ``tests/artifacts/never-deaf-*.png``. Every wait is bounded.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import lab_page as lab

EXTRA_KERNELS = {"async-trio": ["--interface.backend=trio"]}
# Lab ignores a completion provider's answer that takes over `providerTimeout` (1 s by
# default).  On a loaded 2-core machine (CI beside two suite runs) the kernel's first
# completion answered in 1.16 s, while the cell slept (the page's frames show it), and no
# popup came: what is asserted here is that the kernel answers while a cell blocks, so the
# page waits for it as long as the test does.
LAB_SETTINGS = {"@jupyterlab/completer-extension/manager": {"providerTimeout": 20_000}}
SLEPT = "never-deaf-slept"  # written by cell 6 when its sleep ends (it must not, here)
KERNELS = {"async": "asyncio", "async-trio": "trio"}
SETTINGS_PLUGIN = "@jupyterlab/apputils-extension:kernels-settings"

CELLS = [
    # 0: names the blocked cell's neighbours will ask about
    (
        f"SLEPT = {SLEPT!r}\n"
        "never_deaf_alpha = 1\n"
        "never_deaf_beta = 2\n"
        "def never_deaf_helper(x):\n"
        '    """Doubles x: a docstring only this kernel knows."""\n'
        "    return 2 * x\n"
        'print("defined")'
    ),
    # 1: blocks the main thread
    'import time\nprint("sleeping", flush=True)\ntime.sleep(30)\nprint("slept")',
    # 2: Tab at its end while cell 1 sleeps
    "never_deaf_",
    # 3: Shift+Tab at its end while cell 1 sleeps
    "never_deaf_helper(",
    # 4: a slider
    (
        "import async_kernel, ipywidgets as widgets\n"
        "slider = widgets.IntSlider(value=0, min=0, max=10, description='drag me')\n"
        "display(slider)"
    ),
    # 5: polls the slider in a blocking loop (bounded), letting comm messages through
    (
        "import time\n"
        'print("polling", flush=True)\n'
        "deadline = time.monotonic() + 60\n"
        "while slider.value < 5 and time.monotonic() < deadline:\n"
        "    async_kernel.process_events(timeout=0.05)\n"
        'print("slider reached", slider.value if slider.value >= 5 else "nothing (timed out)")'
    ),
    # 6: blocks the main thread across a page reload; a file marks its end
    (
        "import pathlib, time\n"
        'print("sleeping", flush=True)\n'
        "time.sleep(30)\n"
        "pathlib.Path(SLEPT).touch()"
    ),
    # 7: proves the kernel is free again
    'print("free again")',
]


@dataclass
class Frames:
    """The kernel messages the page sent and received over its websockets: the headers
    of those it sent, and a one-line log of both ways (written out when a test fails)."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)  # execute_request msg_id -> code
    idle: set[str] = field(default_factory=set)  # parents of the idle statuses received

    def record(self, payload: str | bytes, way: str = "sent") -> None:
        message = decode(payload)
        if message is None:
            return
        channel, header, parent, content = message
        if way == "sent":
            self.sent.append(header)
            if header.get("msg_type") == "execute_request" and isinstance(content, dict):
                self.codes[str(header.get("msg_id"))] = str(content.get("code"))
        elif header.get("msg_type") == "status" and content == {"execution_state": "idle"}:
            self.idle.add(str(parent.get("msg_id")))
        self.log.append(
            f"{time.monotonic():.3f} {way} {channel} {header.get('msg_type')} "
            f"id={str(header.get('msg_id'))[-12:]} parent={str(parent.get('msg_id'))[-12:]} "
            f"subshell={header.get('subshell_id')} {json.dumps(content)[:160]}"
        )

    def received(self, payload: str | bytes) -> None:
        self.record(payload, "recv")

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [h for h in self.sent if h.get("msg_type") == msg_type]


def decode(payload: str | bytes) -> tuple[str, dict[str, Any], dict[str, Any], Any] | None:
    """(channel, header, parent header, content) of a kernel message frame: JSON (the
    legacy protocol) or ``v1.kernel.websocket.jupyter.org`` (a count of offsets, the
    offsets, then channel, header, parent header, metadata, content and buffers)."""
    try:
        if isinstance(payload, str):
            msg = json.loads(payload)
            channel, header = msg.get("channel", ""), msg.get("header")
            parent, content = msg.get("parent_header") or {}, msg.get("content")
        else:
            (count,) = struct.unpack_from("<Q", payload, 0)
            offsets = struct.unpack_from(f"<{count}Q", payload, 8)
            part = [payload[offsets[i] : offsets[i + 1]] for i in range(min(count - 1, 5))]
            channel = part[0].decode()
            header, parent, content = (json.loads(p) for p in (part[1], part[2], part[4]))
    except (ValueError, struct.error, IndexError, AttributeError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(parent, dict):
        return None
    return channel, header, parent, content


@pytest.fixture(scope="module", params=list(KERNELS), ids=list(KERNELS.values()))
def kernel_page(
    request: pytest.FixtureRequest, lab_server: Any, browser: Any
) -> Iterator[tuple[Any, Frames, str]]:
    kernel = request.param
    frames = Frames()

    def record_frames(page: Any) -> None:
        def watch(ws: Any) -> None:
            ws.on("framesent", frames.record)
            ws.on("framereceived", frames.received)

        page.on("websocket", watch)

    page = lab.open_notebook(
        lab_server,
        browser,
        f"never-deaf-{kernel}.ipynb",
        CELLS,
        record_frames,
        kernel=kernel,
        reset_workspace=True,
    )
    try:
        yield page, frames, KERNELS[kernel]
    finally:
        page.close()


@pytest.fixture
def page(kernel_page: tuple[Any, Frames, str]) -> Any:
    """The page alone, under the name conftest's failure screenshot looks for."""
    return kernel_page[0]


def prompt(page: Any, index: int) -> Any:
    return lab.cell(page, index).locator(".jp-InputPrompt").first


def assert_running(page: Any, index: int) -> None:
    """The cell's prompt shows ``[*]``: it has not ended (checked at once, no retries)."""
    text = prompt(page, index).inner_text().strip()
    assert "*" in text, f"cell {index} is no longer running: its prompt is {text!r}"


def edit_at_end(page: Any, index: int) -> None:
    """Put the cursor at the end of a cell's source, in edit mode."""
    lab.cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Control+End")


def interrupt_and_wait(page: Any, index: int) -> None:
    lab.toolbar(page, "interrupt").click()
    lab.output(lab.cell(page, index), re.compile("KeyboardInterrupt"), timeout=15_000)
    lab.wait_idle(page, timeout=15_000)


def test_completion_and_help_while_a_cell_sleeps(
    kernel_page: tuple[Any, Frames, str], page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    _, _, backend = kernel_page
    lab.output(lab.run(page, 0), "defined")
    lab.wait_idle(page)
    sleeper = lab.run(page, 1)
    try:
        lab.output(sleeper, "sleeping")
        expect(prompt(page, 1)).to_contain_text("*")

        # Tab: a popup (two names share the prefix, so Lab cannot just insert one).
        edit_at_end(page, 2)
        page.keyboard.press("Tab")
        completer = page.locator(".jp-Completer")
        # A first completion warms jedi up: on a loaded 2-core machine that took over 5 s.
        # The bound is generous; what is asserted is that it came while the cell still ran.
        for name in ("never_deaf_alpha", "never_deaf_beta", "never_deaf_helper"):
            item = completer.locator(f".jp-Completer-item[data-value='{name}']")
            expect(item).to_be_visible(timeout=20_000)
        assert_running(page, 1)
        page.screenshot(path=str(artifacts / f"never-deaf-complete-{backend}.png"))
        page.keyboard.press("Escape")
        expect(completer).to_be_hidden()

        # Shift+Tab: the tooltip with the function's docstring.
        edit_at_end(page, 3)
        page.keyboard.press("Shift+Tab")
        tooltip = page.locator(".jp-Tooltip")
        expect(tooltip).to_contain_text("a docstring only this kernel knows", timeout=20_000)
        assert_running(page, 1)
        page.screenshot(path=str(artifacts / f"never-deaf-inspect-{backend}.png"))
        page.keyboard.press("Escape")
        expect(sleeper.locator(".jp-OutputArea-output").filter(has_text="slept")).to_have_count(0)
    finally:
        interrupt_and_wait(page, 1)


def test_slider_drag_ends_a_blocking_poll_over_a_comm_subshell(
    kernel_page: tuple[Any, Frames, str], page: Any, lab_server: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    # Lab's own default, untouched: comm messages go over one subshell per comm target.
    settings = lab_server.api(f"/lab/api/settings/{SETTINGS_PLUGIN}")
    schema_default = settings["schema"]["properties"]["commsOverSubshells"]["default"]
    assert schema_default == "perCommTarget"
    assert settings["settings"].get("commsOverSubshells", schema_default) == "perCommTarget"

    _, frames, backend = kernel_page
    slider_cell = lab.run(page, 4)
    handle = slider_cell.locator(".widget-slider .noUi-handle").first
    expect(handle).to_be_visible()
    lab.wait_idle(page)

    poller = lab.run(page, 5)
    try:
        lab.output(poller, "polling")
        expect(prompt(page, 5)).to_contain_text("*")
        before = len(frames.of_type("comm_msg"))

        # Drag the handle to the track's right end (value 10).
        track = slider_cell.locator(".widget-slider .noUi-base").first
        hbox, tbox = handle.bounding_box(), track.bounding_box()
        assert hbox is not None and tbox is not None
        y = hbox["y"] + hbox["height"] / 2
        page.mouse.move(hbox["x"] + hbox["width"] / 2, y)
        page.mouse.down()
        for step in range(1, 11):
            page.mouse.move(hbox["x"] + (tbox["x"] + tbox["width"] + 20 - hbox["x"]) * step / 10, y)
        page.mouse.up()

        # The loop ends at the first value >= 5 the drag's updates delivered.
        lab.output(poller, re.compile(r"slider reached (10|[5-9])\b"))
        lab.wait_idle(page)
        poller.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"never-deaf-slider-{backend}.png"))
    except Exception:
        page.screenshot(path=str(artifacts / f"never-deaf-slider-{backend}-failed.png"))
        raise

    # The drag's updates went to the kernel as comm_msg over a subshell, as Lab does by default.
    moved = frames.of_type("comm_msg")[before:]
    assert moved, "the page sent no comm_msg for the drag"
    assert all(h.get("subshell_id") for h in moved), f"comm_msg without a subshell_id: {moved}"


def test_a_reloaded_page_connects_while_a_cell_sleeps(
    kernel_page: tuple[Any, Frames, str], page: Any, lab_server: Any, artifacts: Path
) -> None:
    """Lab sends kernel_info on every (re)connect and holds everything else, with the kernel
    status "Unknown", until the reply: a deaf kernel leaves a reloaded tab unusable."""

    _, frames, backend = kernel_page
    (lab_server.root / SLEPT).unlink(missing_ok=True)
    first = len(frames.log)
    try:
        reload_while_sleeping(page, frames, lab_server, artifacts, backend)
    except Exception:
        (artifacts / f"never-deaf-reload-{backend}-frames.txt").write_text(
            "\n".join(frames.log[first:])
        )
        raise


def reload_while_sleeping(
    page: Any, frames: Frames, lab_server: Any, artifacts: Path, backend: str
) -> None:
    from playwright.sync_api import expect

    slept = lab_server.root / SLEPT
    sleeper = lab.run(page, 6)
    lab.output(sleeper, "sleeping")
    expect(prompt(page, 6)).to_contain_text("*")

    page.once("dialog", lambda dialog: dialog.accept())  # "leave with unsaved changes?"
    page.reload(timeout=lab.LOAD)
    expect(lab.cell(page, len(CELLS) - 1)).to_be_visible(timeout=lab.LOAD)
    # The status bar's kernel item: "Python 3 (async) | Unknown" until kernel_info's reply.
    status = page.get_by_role("contentinfo").get_by_role(
        "button", name=re.compile(r"\| (Idle|Busy)$")
    )
    expect(status).to_be_visible(timeout=15_000)
    assert not slept.exists(), "the sleeping cell ended before the page reconnected"
    page.screenshot(path=str(artifacts / f"never-deaf-reloaded-{backend}.png"))

    # The reloaded page shows none of the old cell's messages: wait for its idle on the wire
    # (a cell sent before the interrupt lands would be aborted, as stop_on_error asks).
    (sleeper_id,) = [i for i, code in frames.codes.items() if code == CELLS[6]][-1:]
    lab.toolbar(page, "interrupt").click()
    deadline = time.monotonic() + 15
    while sleeper_id not in frames.idle:
        assert time.monotonic() < deadline, "the interrupted cell never went idle"
        page.wait_for_timeout(100)
    lab.output(lab.run(page, 7), "free again", timeout=15_000)
    assert not slept.exists(), "the interrupt did not end the sleep"
    lab.wait_idle(page)
