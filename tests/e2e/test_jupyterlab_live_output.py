"""Live output in JupyterLab: a tqdm.notebook bar, update_display and clear_output(wait=True)
keep rendering while a cell runs (and blocks the main thread), in headless Chromium.

Each cell loops until a file appears.  The test reads the number the page shows, takes a
screenshot, waits (bounded) for a larger number with the cell still running ('[*]'), takes a
second screenshot, and only then creates the file: the number advanced between two
screenshots taken during the run.  Screenshots: tests/artifacts/live-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import lab_page as lab

NOTEBOOK = "live-output.ipynb"


def looping(stop: str, setup: str, body: str) -> str:
    return (
        f"import os, time\n{setup}i = 0\n"
        f"while not os.path.exists({stop!r}):\n"
        f"    i += 1\n{body}    time.sleep(0.05)\n"
    )


CELLS = [
    # 0: a tqdm.notebook bar (an ipywidgets progress bar)
    looping(
        "stop-tqdm",
        "from tqdm.notebook import tqdm\nbar = tqdm(total=100000, mininterval=0, miniters=1)\n",
        "    bar.update(1)\n",
    ),
    # 1: update_display
    looping(
        "stop-update",
        "from IPython.display import display\nhandle = display('count 0', display_id=True)\n",
        "    handle.update(f'count {i}')\n",
    ),
    # 2: clear_output(wait=True) then print
    looping(
        "stop-clear",
        "from IPython.display import clear_output\n",
        "    clear_output(wait=True)\n    print(f'tick {i}')\n",
    ),
]

CASES = [
    (0, "stop-tqdm", r"(\d+)/100000"),
    (1, "stop-update", r"count (\d+)"),
    (2, "stop-clear", r"tick (\d+)"),
]


@pytest.fixture(scope="module")
def page(lab_server: Any, browser: Any) -> Iterator[Any]:
    page = lab.open_notebook(lab_server, browser, NOTEBOOK, CELLS)
    try:
        yield page
    finally:
        page.close()


def shown_number(cell: Any, pattern: str) -> int | None:
    text = cell.locator(".jp-OutputArea").inner_text()
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


@pytest.mark.parametrize("case", CASES, ids=["tqdm", "update", "clear"])
def test_output_advances_while_the_cell_runs(
    page: Any, lab_server: Any, artifacts: Path, case: tuple[int, str, str]
) -> None:
    from playwright.sync_api import expect

    index, stop, pattern = case
    cell = lab.run(page, index)
    prompt = cell.locator(".jp-InputPrompt")
    try:
        expect(cell.locator(".jp-OutputArea")).to_contain_text(re.compile(pattern))
        first = shown_number(cell, pattern)
        assert first is not None
        page.screenshot(path=str(artifacts / f"live-{stop}-1.png"))
        page.wait_for_function(
            """([el, pattern, first]) => {
                const found = [...el.innerText.matchAll(new RegExp(pattern, 'g'))];
                return found.length > 0 && Number(found[found.length - 1][1]) > first;
            }""",
            arg=[cell.locator(".jp-OutputArea").element_handle(), pattern, first],
            timeout=lab.STEP,
        )
        expect(prompt).to_contain_text("*")  # still running: the number moved during the run
        page.screenshot(path=str(artifacts / f"live-{stop}-2.png"))
        second = shown_number(cell, pattern)
        assert second is not None and second > first
    finally:
        (lab_server.root / stop).touch()
    lab.wait_idle(page)
    expect(prompt).not_to_contain_text("*")
