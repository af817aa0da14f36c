"""Driving a notebook in JupyterLab's page: open one on the ``async`` kernel, run cells, wait.

Shared by the e2e modules; every wait is bounded (``STEP`` unless said otherwise).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import nbformat

STEP = 30_000  # ms: the longest any single UI step may take
LOAD = 60_000  # ms: Lab's first load of a notebook, kernel start-up included


def open_notebook(
    lab_server: Any,
    browser: Any,
    name: str,
    sources: Sequence[str],
    prepare: Callable[[Any], object] | None = None,
    *,
    kernel: str = "async",
    reset_workspace: bool = False,
    idle: bool = True,
) -> Any:
    """Write a notebook on the ``async`` kernel spec, one code cell per source, and open
    it in a new page; returns the page once every cell shows and the kernel is idle.

    ``prepare(page)`` runs before the page loads (listeners must be attached by then).
    ``kernel`` names another kernel spec (one of a module's ``EXTRA_KERNELS``, say).
    ``reset_workspace`` drops the tabs an earlier page of the module left open (Lab would
    restore them beside this notebook, and ``cell()`` would find their cells too).
    ``idle=False`` returns once the cells show, without waiting for the kernel.
    """
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": kernel,
        "display_name": "Python 3 (async)" if kernel == "async" else kernel,
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, lab_server.root / name)
    page = browser.new_page()
    page.set_default_timeout(STEP)
    if prepare is not None:
        prepare(page)
    url = lab_server.page_url(f"/lab/tree/{name}") + ("&reset" if reset_workspace else "")
    page.goto(url, timeout=LOAD)
    expect(cell(page, len(sources) - 1)).to_be_visible(timeout=LOAD)
    if idle:
        deadline = time.monotonic() + LOAD / 1000
        wait_for_kernel(lab_server, page, name, kernel, LOAD)
        wait_idle(page, timeout=max(1, int((deadline - time.monotonic()) * 1000)))
    return page


def wait_for_kernel(lab_server: Any, page: Any, name: str, kernel: str, timeout: int) -> None:
    """Until Lab's server has a session for notebook ``name`` with an idle kernel.

    The page's indicators cannot say so: they show the notebook's kernel as idle before it
    has one.  And Lab may open the notebook before it has loaded the kernel specs, then ask
    which kernel to start (a "Select Kernel" dialog with the notebook's own kernel chosen,
    seen once in eight suite runs): that is accepted, as a user would, after checking the
    choice.
    """
    deadline = time.monotonic() + timeout / 1000
    specs = lab_server.api("/api/kernelspecs")["kernelspecs"]
    display_name = specs[kernel]["spec"]["display_name"]
    dialog = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
    while True:
        for session in lab_server.api("/api/sessions"):
            model = session.get("kernel") or {}
            if session.get("path") == name and model.get("execution_state") == "idle":
                return
        if dialog.count():
            chosen = dialog.locator("select").evaluate("s => s.options[s.selectedIndex].text")
            assert chosen == display_name, f"Lab offers to start {chosen!r} for {name}"
            dialog.get_by_role("button", name="Select", exact=True).click()
        if time.monotonic() > deadline:
            raise AssertionError(f"no idle kernel for {name} on Lab's server within {timeout} ms")
        page.wait_for_timeout(200)


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def wait_idle(page: Any, timeout: int = STEP) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
        1, timeout=timeout
    )


def run(page: Any, index: int) -> Any:
    """Run a cell; press again if the page swallowed the key (the prompt stayed '[ ]:')."""
    target = cell(page, index)
    prompt = target.locator(".jp-InputPrompt").first
    for _ in range(3):
        target.locator(".cm-content").click()
        page.keyboard.press("Control+Enter")
        try:
            page.wait_for_function(
                "el => el.textContent.trim() !== '[ ]:'", arg=prompt.element_handle(), timeout=5_000
            )
            return target
        except Exception:
            continue
    return target


def output(target: Any, text: str | re.Pattern[str], timeout: int = STEP) -> None:
    from playwright.sync_api import expect

    expect(target.locator(".jp-OutputArea-output").filter(has_text=text)).to_have_count(
        1, timeout=timeout
    )


def toolbar(page: Any, name: str) -> Any:
    return page.locator(f".jp-NotebookPanel-toolbar [data-jp-item-name='{name}']").first
