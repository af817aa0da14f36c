"""JupyterLab's default: widget comm messages go to a kernel subshell ("perCommTarget").

Lab 4.4+ does this as soon as ``kernel_info_reply`` lists "kernel subshells". The widget's
callback then runs on the subshell's thread, and the demo cell, which awaits an
``anyio.Event`` on the main shell's loop, must still finish when the button is clicked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from .test_jupyterlab import CELLS
from .test_jupyterlab import _run as run_cell

NOTEBOOK = "comm-subshells.ipynb"
STEP = 30_000  # ms
DEMO = CELLS[1]  # the button-click demo, the same cell as in the main Lab test


@pytest.fixture(scope="module")
def page(lab_server: Any, browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "async",
        "display_name": "Python 3 (async)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(DEMO)]
    nbformat.write(nb, lab_server.root / NOTEBOOK)
    page = browser.new_page()
    page.set_default_timeout(STEP)
    page.goto(lab_server.page_url(f"/lab/tree/{NOTEBOOK}"), timeout=60_000)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=60_000
    )
    try:
        yield page
    finally:
        page.close()


def test_click_through_a_comm_subshell_releases_the_awaiting_cell(page: Any) -> None:
    from playwright.sync_api import expect

    cell = run_cell(page, 0)
    expect(
        cell.locator(".jp-OutputArea-output").filter(has_text="waiting for the click")
    ).to_have_count(1)
    cell.locator("button.jupyter-button", has_text="Deliver").click()
    expect(
        cell.locator(".jp-OutputArea-output").filter(
            has_text="the click arrived while the cell was awaiting"
        )
    ).to_have_count(1, timeout=10_000)
