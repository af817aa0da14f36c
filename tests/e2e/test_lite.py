"""async-kernel in JupyterLite: the built site in headless Chromium, served locally, offline.

Builds the site with scripts/lite.sh (extension, Pyodide from npm, wheels), serves it twice:
with the COOP/COEP headers (cross-origin isolated: input() waits on shared memory, a busy
loop is interrupted through Pyodide's interrupt buffer) and without them (input() goes
through JupyterLite's service worker).  Drives real notebooks in Debian's chromium.  Any
request that leaves the site is refused and fails the test.  Screenshots go to
tests/artifacts/lite-*.png.

What the reference kernel (jupyterlite-pyodide-kernel) gets wrong and this one must not: a
widget's (or any comm's) message sent while a cell awaits reaches its handler, and both an
awaiting cell and a busy loop can be interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port
from .lite_page import (
    KERNEL,
    build_site,
    cell,
    command,
    record_executions,
    run_cell,
    serve,
    started,
    wait_kernel_ready,
    wait_output,
    wait_prompt_done,
    wait_started,
)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def site_root() -> Path:
    return build_site()


@pytest.fixture(scope="module")
def site_url(site_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site, cross-origin isolated (COOP/COEP), as scripts/lite.sh serves it."""
    log = tmp_path_factory.mktemp("lite") / "server.log"
    with serve(site_root, free_port(), log) as url:
        yield url


@pytest.fixture(scope="module")
def plain_site_url(site_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same site without the COOP/COEP headers, as GitHub Pages would serve it."""
    log = tmp_path_factory.mktemp("lite-plain") / "server.log"
    with serve(site_root, free_port(), log, isolated=False) as url:
        yield url


@pytest.fixture(scope="module")
def offline(browser: Any, site_url: str, plain_site_url: str) -> list[str]:
    """Refuse every request that is not for the sites themselves; the list of refused URLs."""
    refused: list[str] = []

    def only_the_site(route: Any) -> None:
        url = route.request.url
        if url.startswith((site_url, plain_site_url, "data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    browser.route("**/*", only_the_site)
    return refused


def open_notebook(browser: Any, site_url: str, name: str) -> tuple[Any, dict[str, Any], float]:
    """A new page with only this notebook open and its kernel ready."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    # JupyterLite keeps its workspace in the browser's storage: without clearing it, the
    # notebooks of earlier tests open again, each with a kernel of its own.
    cdp = browser.new_cdp_session(page)
    cdp.send(
        "Storage.clearDataForOrigin",
        {"origin": site_url.rstrip("/"), "storageTypes": "indexeddb,local_storage"},
    )
    cdp.detach()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    started_at = time.monotonic()
    page.goto(f"{site_url}lab/index.html?path={name}", timeout=60_000)
    info = wait_kernel_ready(page)
    took = time.monotonic() - started_at
    page.errors = errors  # type: ignore[attr-defined]
    record_executions(page)
    return page, info, took


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"lite-{name}.png"))


def answer_input(page: Any, index: int, text: str) -> None:
    """Type ``text`` into the input() box under cell ``index`` and press Enter."""
    box = cell(page, index).locator(".jp-Stdin-input")
    box.wait_for(timeout=30_000)
    box.fill(text)
    box.press("Enter")


def test_concurrency_notebook(
    browser: Any, site_url: str, offline: list[str], artifacts: Path
) -> None:
    """docs/notebooks/concurrency.ipynb, run all: each cell's output; the cell that awaits a
    comm message is resolved by the client's message; the kernel answers while a cell sleeps."""
    page, info, took = open_notebook(browser, site_url, "concurrency.ipynb")
    try:
        assert page.evaluate("crossOriginIsolated") is True
        assert info["name"] == "async"
        assert info["info"]["language_info"]["name"] == "python"
        print(f"page to kernel ready: {took:.1f} s")
        command(page, "notebook:run-all-cells", wait=False)
        wait_output(page, 1, "'asyncio'")
        # The deadlock demo: the cell awaits a comm message; the client sends it meanwhile
        # (the notebook's runner does this on the desktop; here the page is the client).
        wait_started(page, 1)
        page.evaluate(
            f"""() => {{
                const comm = {KERNEL}.createComm('demo');
                comm.open({{}});
                comm.send({{ value: 'hello from the browser' }});
            }}"""
        )
        wait_output(page, 3, "the client sent hello from the browser")
        # While the next cell sleeps, kernel_info is answered (the cell has not replied yet).
        wait_started(page, 2)
        replied = page.evaluate(
            f"""async () => {{
                await {KERNEL}.requestKernelInfo();
                return window.liteReplies;
            }}"""
        )
        assert replied == 2, "kernel_info was answered only after the sleeping cell ended"
        wait_output(page, 5, "slept 2 s")
        wait_output(page, 7, "asyncio gather finished")
        for index in (1, 3, 5, 7):
            wait_prompt_done(page, index)
        assert "Error" not in "".join(cell(page, i).inner_text() for i in (1, 3, 5, 7))
        shot(page, artifacts, "concurrency")
        assert page.errors == []  # type: ignore[attr-defined]
    except BaseException:
        shot(page, artifacts, "concurrency-failure")
        raise
    finally:
        page.close()
    assert offline == []


def test_widgets_input_interrupt_restart(  # noqa: PLR0915 - one page, one kernel start
    browser: Any, site_url: str, offline: list[str], artifacts: Path
) -> None:
    page, _, _ = open_notebook(browser, site_url, "in-the-browser.ipynb")
    try:
        assert page.evaluate("crossOriginIsolated") is True
        # rich output
        run_cell(page, 1)
        wait_output(page, 1, "emscripten")
        assert cell(page, 1).locator("b.lite-rich").count() == 1

        # completion and inspection, through the kernel
        replies = page.evaluate(
            f"""async () => {{
                const kernel = {KERNEL};
                const complete = await kernel.requestComplete(
                    {{ code: 'sys.plat', cursor_pos: 8 }});
                const inspect = await kernel.requestInspect(
                    {{ code: 'len', cursor_pos: 3, detail_level: 0 }});
                return {{ matches: complete.content.matches,
                          found: inspect.content.found,
                          text: inspect.content.data['text/plain'] }};
            }}"""
        )
        assert "sys.platform" in replies["matches"] or "platform" in replies["matches"]
        assert replies["found"] is True and "Return the number of items" in replies["text"]

        # a cell that awaits a widget's value: type in the widget (the page's own ipywidgets
        # manager sends the comm message) while the cell awaits
        run_cell(page, 3)
        box = cell(page, 3).locator(".widget-text input")
        box.wait_for(timeout=30_000)
        before = started(page)
        run_cell(page, 4)
        wait_started(page, before)
        box.fill("42")
        box.press("Enter")
        wait_output(page, 4, "the widget sent 42")
        shot(page, artifacts, "widget")

        # input(), answered in the page (the worker waits on shared memory)
        run_cell(page, 6)
        answer_input(page, 6, "lite")
        wait_output(page, 6, "hello lite")
        wait_prompt_done(page, 6)
        # input() interrupted while it waits
        run_cell(page, 6)
        cell(page, 6).locator(".jp-Stdin-input").wait_for(timeout=30_000)
        command(page, "notebook:interrupt-kernel")
        wait_output(page, 6, "KeyboardInterrupt", timeout=15_000)
        wait_prompt_done(page, 6)

        # interrupt an awaiting cell: cancelled by the worker's free loop
        before = started(page)
        run_cell(page, 8)
        wait_started(page, before)
        started_at = time.monotonic()
        command(page, "notebook:interrupt-kernel")
        wait_output(page, 8, "KeyboardInterrupt", timeout=15_000)
        awaiting_took = time.monotonic() - started_at

        # interrupt a busy loop: Pyodide's interrupt buffer
        before = started(page)
        run_cell(page, 9)
        wait_started(page, before)
        # An interrupt that the worker takes before the cell's code has begun finds no
        # awaiting cell (the page then sends no SIGINT): let the loop begin first.
        page.wait_for_timeout(1000)
        started_at = time.monotonic()
        command(page, "notebook:interrupt-kernel")
        wait_output(page, 9, "KeyboardInterrupt", timeout=15_000)
        busy_took = time.monotonic() - started_at
        run_cell(page, 10)
        wait_output(page, 10, "still alive after")
        shot(page, artifacts, "interrupt")
        print(f"interrupt: awaiting cell {awaiting_took:.2f} s, busy loop {busy_took:.2f} s")

        # restart: a fresh interpreter answers
        page.evaluate(f"() => {KERNEL}.restart()")
        page.wait_for_function(f"() => {KERNEL}.status === 'idle'", timeout=120_000)
        run_cell(page, 10)
        wait_output(page, 10, "NameError", timeout=120_000)
        wait_prompt_done(page, 10)
        shot(page, artifacts, "restart")
        assert page.errors == []  # type: ignore[attr-defined]
    except BaseException:
        shot(page, artifacts, "in-the-browser-failure")
        raise
    finally:
        page.close()
    assert offline == []


def test_input_without_isolation(
    browser: Any, plain_site_url: str, offline: list[str], artifacts: Path
) -> None:
    """Served without COOP/COEP (no SharedArrayBuffer): input() goes through JupyterLite's
    service worker; an awaiting cell is still interrupted (no shared memory needed)."""
    page, _, _ = open_notebook(browser, plain_site_url, "in-the-browser.ipynb")
    try:
        assert page.evaluate("crossOriginIsolated") is False
        run_cell(page, 3)  # imports asyncio
        wait_prompt_done(page, 3)
        run_cell(page, 6)
        answer_input(page, 6, "service worker")
        wait_output(page, 6, "hello service worker")
        wait_prompt_done(page, 6)
        run_cell(page, 6)
        cell(page, 6).locator(".jp-Stdin-input").wait_for(timeout=30_000)
        command(page, "notebook:interrupt-kernel")
        wait_output(page, 6, "KeyboardInterrupt", timeout=15_000)
        wait_prompt_done(page, 6)
        before = started(page)
        run_cell(page, 8)
        wait_started(page, before)
        command(page, "notebook:interrupt-kernel")
        wait_output(page, 8, "KeyboardInterrupt", timeout=15_000)
        wait_prompt_done(page, 8)
        shot(page, artifacts, "no-isolation")
        assert page.errors == []  # type: ignore[attr-defined]
    except BaseException:
        shot(page, artifacts, "no-isolation-failure")
        raise
    finally:
        page.close()
    assert offline == []
