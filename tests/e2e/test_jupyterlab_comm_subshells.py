"""JupyterLab's default: widget comm messages go to a kernel subshell ("perCommTarget").

Lab 4.4+ does this as soon as ``kernel_info_reply`` lists "kernel subshells". The widget's
callback then runs on the subshell's thread, and the demo cell, which awaits an
``anyio.Event`` on the main shell's loop, must still finish when the button is clicked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import lab_page as lab
from .test_jupyterlab import CELLS

NOTEBOOK = "comm-subshells.ipynb"
DEMO = CELLS[1]  # the button-click demo, the same cell as in the main Lab test


@pytest.fixture(scope="module")
def page(lab_server: Any, browser: Any) -> Iterator[Any]:
    page = lab.open_notebook(lab_server, browser, NOTEBOOK, [DEMO])
    try:
        yield page
    finally:
        page.close()


def test_click_through_a_comm_subshell_releases_the_awaiting_cell(page: Any) -> None:
    from playwright.sync_api import expect

    cell = lab.run(page, 0)
    expect(
        cell.locator(".jp-OutputArea-output").filter(has_text="waiting for the click")
    ).to_have_count(1)
    cell.locator("button.jupyter-button", has_text="Deliver").click()
    expect(
        cell.locator(".jp-OutputArea-output").filter(
            has_text="the click arrived while the cell was awaiting"
        )
    ).to_have_count(1, timeout=10_000)
