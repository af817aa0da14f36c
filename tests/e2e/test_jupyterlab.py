"""JupyterLab, for real: a notebook on the ``async`` kernel driven through the page.

One page for the module; tests run in file order and each leaves the kernel idle for the next.
Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import lab_page as lab

# JupyterLab 4.4+ sends comm messages to a subshell when the kernel supports subshells
# ("perCommTarget"). Here comms go to the main shell; test_jupyterlab_comm_subshells.py
# covers Lab's default.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/kernels-settings": {"commsOverSubshells": "disabled"},
}
NOTEBOOK = "e2e.ipynb"

CELLS = [
    # 0: a cell and its output
    'marker = "alive"\nprint("hello from async-kernel", 6 * 7)',
    # 1: the concurrency demo: the cell awaits a value that only a button click delivers
    (
        "import anyio, ipywidgets as widgets\n"
        "clicked = anyio.Event()\n"
        'button = widgets.Button(description="Deliver")\n'
        "button.on_click(lambda _: clicked.set())\n"
        "display(button)\n"
        'print("waiting for the click")\n'
        "with anyio.fail_after(60):\n"
        "    await clicked.wait()\n"
        'print("the click arrived while the cell was awaiting")'
    ),
    # 2: an ipympl figure
    (
        "%matplotlib widget\n"
        "import matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "ax.plot([0, 1, 4, 9, 16], linewidth=4, color='tab:orange')\n"
        'ax.set_title("ipympl on async-kernel")\n'
        "plt.show()"
    ),
    # 3: blocking code, interrupted from the toolbar
    'import time\nprint("sleeping")\ntime.sleep(120)',
    # 4: an awaiting cell, interrupted from the toolbar
    'print("awaiting")\nawait anyio.sleep(120)',
    # 5: state after a restart
    'print("marker" in globals() and "kept" or "fresh kernel")',
]


@pytest.fixture(scope="module")
def page(lab_server: Any, browser: Any, artifacts: Path) -> Iterator[Any]:
    errors: list[str] = []

    def collect_errors(page: Any) -> None:
        page.on("pageerror", lambda exc: errors.append(str(exc)))

    page = lab.open_notebook(lab_server, browser, NOTEBOOK, CELLS, collect_errors)
    try:
        yield page
    finally:
        if errors:
            (artifacts / "jupyterlab-page-errors.txt").write_text("\n".join(errors))
        page.close()


def test_run_cell_shows_output(page: Any, artifacts: Path) -> None:
    cell = lab.run(page, 0)
    lab.output(cell, "hello from async-kernel 42")
    lab.wait_idle(page)
    page.screenshot(path=str(artifacts / "jupyterlab-cell.png"))


def test_cell_awaits_a_button_click(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    cell = lab.run(page, 1)
    lab.output(cell, "waiting for the click")
    button = cell.locator("button.jupyter-button", has_text="Deliver")
    expect(button).to_be_visible()
    # The cell is still running: only the comm message from this click can finish it.
    expect(cell.locator(".jp-InputPrompt")).to_contain_text("*")
    button.click()
    lab.output(cell, "the click arrived while the cell was awaiting")
    lab.wait_idle(page)
    page.screenshot(path=str(artifacts / "jupyterlab-concurrency.png"))


def test_ipympl_canvas_renders(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    cell = lab.run(page, 2)
    canvas = cell.locator(".jupyter-matplotlib-figure canvas").first
    expect(canvas).to_be_visible(timeout=60_000)
    lab.wait_idle(page)
    # The figure's pixels arrive over the widget comm: wait until the canvas has ink on it.
    page.wait_for_function(
        """(el) => {
            const canvases = el.querySelectorAll('canvas');
            for (const c of canvases) {
                if (!c.width || !c.height) continue;
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let ink = 0;
                for (let i = 0; i < data.length; i += 4) {
                    if (data[i + 3] > 0 && (data[i] < 200 || data[i + 1] < 200)) ink++;
                }
                if (ink > 500) return true;
            }
            return false;
        }""",
        arg=cell.element_handle(),
        timeout=lab.STEP,
    )
    cell.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "jupyterlab.png"))


@pytest.mark.parametrize(("index", "started"), [(3, "sleeping"), (4, "awaiting")])
def test_toolbar_interrupts_a_running_cell(
    page: Any, artifacts: Path, index: int, started: str
) -> None:
    cell = lab.run(page, index)
    lab.output(cell, started)
    lab.toolbar(page, "interrupt").click()
    lab.output(cell, re.compile("KeyboardInterrupt|Cancel"), timeout=15_000)
    lab.wait_idle(page, timeout=15_000)
    page.screenshot(path=str(artifacts / f"jupyterlab-interrupt-{started}.png"))


def test_toolbar_restarts_the_kernel(page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    lab.toolbar(page, "restart").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    dialog.locator("button.jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    lab.wait_idle(page, timeout=60_000)
    cell = lab.run(page, 5)
    lab.output(cell, "fresh kernel", timeout=60_000)
    page.screenshot(path=str(artifacts / "jupyterlab-restart.png"))
