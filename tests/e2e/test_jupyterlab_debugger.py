"""JupyterLab's visual debugger on the ``async`` kernel, driven through the page.

The notebook toolbar's bug button starts a debug session (DAP in ``debug_request`` on
control), a click in a cell's gutter sets a breakpoint, running the cells stops in ``add``,
the sidebar shows the stack and the locals, and Continue lets the cell finish.
Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import lab_page as lab

# As in test_jupyterlab.py: comms go to the main shell.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/kernels-settings": {"commsOverSubshells": "disabled"},
}
NOTEBOOK = "debugger.ipynb"

DEFINE = "def add(a, b):\n    total = a + b\n    return total"
CALL = 'result = add(2, 3)\nprint("result", result)'
BREAK_LINE = 2  # `total = a + b`, in DEFINE

# A debug_reply whose DAP response failed, as it crosses the page's kernel websocket.
_FAILED_DEBUG_REPLY = re.compile(rb'"msg_type":\s*"debug_reply".*"success":\s*false', re.S)


@pytest.fixture(scope="module")
def failed_debug_replies() -> list[str]:
    """Every debug_reply the page received with ``success: false`` (filled by ``page``)."""
    return []


@pytest.fixture(scope="module")
def page_errors() -> list[str]:
    """Uncaught errors in the page (filled by ``page``): Lab throws on a bad DAP answer."""
    return []


@pytest.fixture(scope="module")
def page(
    lab_server: Any,
    browser: Any,
    artifacts: Path,
    failed_debug_replies: list[str],
    page_errors: list[str],
) -> Iterator[Any]:
    def listen(page: Any) -> None:
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on("websocket", lambda ws: _watch_debug_replies(ws, failed_debug_replies))

    page = lab.open_notebook(lab_server, browser, NOTEBOOK, [DEFINE, CALL], listen)
    try:
        yield page
    finally:
        if page_errors:
            (artifacts / "jupyterlab-debugger-page-errors.txt").write_text("\n".join(page_errors))
        page.close()


def _watch_debug_replies(ws: Any, failed: list[str]) -> None:
    """Note failed DAP responses: Lab mostly logs them to the console and carries on."""

    def received(payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        if _FAILED_DEBUG_REPLY.search(data):
            failed.append(data.decode("utf-8", "replace")[-600:])

    ws.on("framereceived", received)


def _debugger_toggle(page: Any) -> Any:
    """The notebook toolbar's bug button (a ToolbarButton, pressed while debugging)."""
    return page.locator(
        ".jp-NotebookPanel-toolbar [data-jp-item-name='debugger-icon'] jp-button"
    ).first


def _set_debugger(page: Any, on: bool) -> None:
    """Press the bug button and wait until Lab shows the debugger on (or off)."""
    from playwright.sync_api import expect

    toggle = _debugger_toggle(page)
    expect(toggle, "Lab keeps the debugger button disabled").to_have_attribute(
        "aria-disabled", "false", timeout=lab.STEP
    )
    expect(toggle).to_have_attribute("aria-pressed", "false" if on else "true", timeout=lab.STEP)
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true" if on else "false", timeout=lab.STEP)


def _toggle_breakpoint(page: Any, cell: Any, line: int) -> None:
    """Click the breakpoint gutter beside ``line``: Lab adds the gutter once debugging."""
    from playwright.sync_api import expect

    gutter = cell.locator(".cm-gutter.cm-breakpoint-gutter")
    number = cell.locator(".cm-lineNumbers .cm-gutterElement").filter(
        has_text=re.compile(rf"^{line}$")
    )
    expect(gutter).to_be_visible(timeout=lab.STEP)
    expect(number).to_be_visible(timeout=lab.STEP)
    column, row = gutter.bounding_box(), number.bounding_box()
    assert column is not None and row is not None
    page.mouse.click(column["x"] + column["width"] / 2, row["y"] + row["height"] / 2)


def _sidebar(page: Any) -> Any:
    return page.locator(".jp-DebuggerSidebar")


def _frames(page: Any) -> Any:
    return _sidebar(page).locator(".jp-DebuggerCallstackFrame")


def _name(page: Any, name: str) -> Any:
    """A Variables tree label with exactly this text (a locator relative to any ancestor)."""
    return page.locator(".jp-DebuggerVariables-name").filter(
        has_text=re.compile(rf"^{re.escape(name)}$")
    )


def _variable_name(page: Any, name: str) -> Any:
    """A name shown in the sidebar's Variables tree."""
    return _sidebar(page).locator(".jp-DebuggerVariables-body").locator(_name(page, name))


def _variable_value(page: Any, name: str) -> Any:
    """The value shown beside a (top-level, unexpanded) name in the Variables tree."""
    rows = _sidebar(page).locator(".jp-DebuggerVariables-body jp-tree-item")
    return rows.filter(has=_name(page, name)).locator(".jp-DebuggerVariables-detail")


def test_breakpoint_stops_in_the_function_and_continue_finishes(
    page: Any,
    artifacts: Path,
    lab_server: Any,
    failed_debug_replies: list[str],
    page_errors: list[str],
) -> None:
    from playwright.sync_api import expect

    # Lab offers its debugger only for a kernel spec whose metadata says so.
    spec = lab_server.api("/api/kernelspecs")["kernelspecs"]["async"]["spec"]
    assert spec.get("metadata", {}).get("debugger") is True, (
        f"the `async` kernel spec does not advertise the debugger: {spec.get('metadata')}"
    )
    define, call = lab.cell(page, 0), lab.cell(page, 1)
    _set_debugger(page, on=True)
    expect(_sidebar(page)).to_be_visible(timeout=lab.STEP)

    # The gutter shows the marker at once; the Breakpoints panel lists the line only once
    # the kernel (dumpCell, setBreakpoints to debugpy) has answered.
    _toggle_breakpoint(page, define, BREAK_LINE)
    expect(
        define.locator(".cm-breakpoint-gutter .cm-breakpoint-icon").filter(visible=True)
    ).to_have_count(1, timeout=lab.STEP)
    breakpoint = _sidebar(page).locator(".jp-DebuggerBreakpoint")
    expect(breakpoint).to_have_count(1, timeout=lab.STEP)
    expect(breakpoint.locator(".jp-DebuggerBreakpoint-line")).to_have_text(
        str(BREAK_LINE), timeout=lab.STEP
    )

    lab.run(page, 0)
    lab.wait_idle(page)
    lab.run(page, 1)

    # Stopped in add(): the stack, the locals and the highlighted line.
    frames = _frames(page)
    expect(frames.first.locator(".jp-DebuggerCallstackFrame-name")).to_have_text(
        "add", timeout=lab.STEP
    )
    expect(frames.first.locator(".jp-DebuggerCallstackFrame-location")).to_have_text(
        re.compile(rf":{BREAK_LINE}$"), timeout=lab.STEP
    )
    expect(_variable_value(page, "a")).to_have_text("2", timeout=lab.STEP)
    expect(_variable_value(page, "b")).to_have_text("3", timeout=lab.STEP)
    expect(define.locator(".jp-DebuggerEditor-highlight")).to_have_count(1, timeout=lab.STEP)
    expect(call.locator(".jp-InputPrompt")).to_contain_text("*", timeout=lab.STEP)
    page.screenshot(path=str(artifacts / "jupyterlab-debugger-stopped.png"))

    # "Render variable" (shown on hover): richInspectVariables in the paused frame.
    _variable_value(page, "a").hover()
    _sidebar(page).locator(
        ".jp-DebuggerVariables-renderVariable[title='Render variable: a']"
    ).click()
    rendered = page.locator(".jp-DebuggerRichVariable .jp-VariableRendererPanel-renderer")
    expect(rendered).to_have_text("2", timeout=lab.STEP)

    # The kernel answers while its main thread is held: selecting the calling cell's frame
    # fetches that frame's scopes and variables, and the cell is still running.
    frames.filter(has_text="<module>").first.click()
    # debugpy groups the frame's functions: expanding the group is one more round trip.
    _variable_name(page, "function variables").click()
    expect(_variable_name(page, "add")).to_have_count(1, timeout=lab.STEP)
    expect(call.locator(".jp-InputPrompt")).to_contain_text("*", timeout=lab.STEP)

    _sidebar(page).locator("jp-button[data-command='debugger:continue']").click()
    lab.output(call, "result 5")
    lab.wait_idle(page)
    expect(frames).to_have_count(0, timeout=lab.STEP)

    # Off again: the gutter goes, and the same cell now runs straight through.
    _set_debugger(page, on=False)
    expect(define.locator(".cm-gutter.cm-breakpoint-gutter")).to_have_count(0, timeout=lab.STEP)
    lab.run(page, 1)
    expect(call.locator(".jp-InputPrompt")).to_have_text("[3]:", timeout=lab.STEP)
    lab.output(call, "result 5")
    lab.wait_idle(page)
    page.screenshot(path=str(artifacts / "jupyterlab-debugger.png"))
    assert not failed_debug_replies, "\n\n".join(failed_debug_replies)
    assert not page_errors, "\n".join(page_errors)
