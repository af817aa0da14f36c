"""The JupyterLite site with async-kernel, built and served for the e2e test, and page helpers.

The site is built by ``scripts/lite.sh --build-only`` (with ``--expose-app``, so the test can
reach JupyterLab's objects as ``window.jupyterapp``) and served by ``lite/lite_site.py`` on
loopback, with the COOP/COEP headers (cross-origin isolated) or without them.  Every wait is
bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "build" / "lite-e2e"
BUILD_TIMEOUT = 600  # s: a clean clone runs npm ci and downloads the wheels
KERNEL_START = 120_000  # ms: Pyodide, micropip and the kernel's first reply
STEP = 30_000  # ms


def build_site() -> Path:
    """Build the site once per test session (scripts/lite.sh is quick when nothing changed)."""
    argv = ["bash", str(REPO / "scripts" / "lite.sh"), "--build-only", "--out", str(SITE)]
    argv.append("--expose-app")
    ref = os.environ.get("ASYNC_KERNEL_LITE_FROM")  # e.g. HEAD: leave uncommitted edits out
    if ref:
        argv += ["--kernel-from", ref]
    done = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/lite.sh failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return SITE


@contextmanager
def serve(root: Path, port: int, log: Path, isolated: bool = True) -> Generator[str]:
    argv = [sys.executable, str(REPO / "lite" / "lite_site.py"), "serve", str(root)]
    argv += ["--port", str(port)] if isolated else ["--port", str(port), "--no-isolation"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "jupyter-lite.json", timeout=5) as resp:
                    coep = resp.headers["Cross-Origin-Embedder-Policy"]
                    if coep != ("require-corp" if isolated else None):
                        raise RuntimeError(f"the server sends COEP {coep!r}")
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"site server not up: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- the page ---------------------------------------------------------------------------------
KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"


def wait_kernel_ready(page: Any, timeout: int = KERNEL_START) -> dict[str, Any]:
    """Wait until the notebook's kernel has answered kernel_info; return the reply content."""
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel",
        timeout=timeout,
    )
    return page.evaluate(
        f"""async (timeout) => {{
            const kernel = {KERNEL};
            const info = await Promise.race([
                kernel.info,
                new Promise((_, reject) =>
                    setTimeout(() => reject(new Error('no kernel_info')), timeout)),
            ]);
            return {{ name: kernel.name, info }};
        }}""",
        timeout,
    )


def record_executions(page: Any) -> None:
    """Keep, in the page, the code of each cell the kernel has started (its execute_input)
    and a count of execute_replies: tests wait on these instead of on the clock."""
    page.evaluate(
        f"""() => {{
            window.liteStarted = [];
            window.liteReplies = 0;
            {KERNEL}.anyMessage.connect((_, args) => {{
                const type = args.msg.header.msg_type;
                if (args.direction === 'recv' && type === 'execute_input') {{
                    window.liteStarted.push(args.msg.content.code);
                }} else if (args.direction === 'recv' && type === 'execute_reply') {{
                    window.liteReplies += 1;
                }}
            }});
        }}"""
    )


def started(page: Any) -> int:
    """How many cells the kernel has started so far (see record_executions)."""
    return int(page.evaluate("() => window.liteStarted.length"))


def wait_started(page: Any, before: int, timeout: int = STEP) -> None:
    """Wait until the kernel has started more cells than ``before``."""
    page.wait_for_function(
        "(before) => window.liteStarted.length > before", arg=before, timeout=timeout
    )


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def run_cell(page: Any, index: int) -> Any:
    """Select a cell and run it (the notebook's own command, as the toolbar's button does).

    Returns as soon as the command is issued: the command's promise resolves only when the
    cell has finished, and a test must be free to act (click a widget, interrupt) meanwhile.
    """
    page.evaluate(
        """(index) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = index;
            panel.content.deselectAll();
            void window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )
    return cell(page, index)


def command(page: Any, name: str, wait: bool = True) -> None:
    """Run a JupyterLab command; ``wait=False`` returns without waiting for its promise (for
    commands that run cells: theirs resolves when the cells have finished)."""
    if wait:
        page.evaluate("(name) => window.jupyterapp.commands.execute(name)", name)
    else:
        page.evaluate("(name) => { void window.jupyterapp.commands.execute(name); }", name)


def output_text(page: Any, index: int) -> str:
    return cell(page, index).locator(".jp-OutputArea").inner_text()


def wait_output(page: Any, index: int, text: str, timeout: int = STEP) -> str:
    """Wait until cell ``index``'s output contains ``text``; return the output."""
    page.wait_for_function(
        """([index, text]) => {
            const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
            const out = cells[index]?.querySelector('.jp-OutputArea');
            return out !== null && out !== undefined && out.innerText.includes(text);
        }""",
        arg=[index, text],
        timeout=timeout,
    )
    return output_text(page, index)


def wait_prompt_done(page: Any, index: int, timeout: int = STEP) -> None:
    """Wait until cell ``index`` shows an execution count (not ``[*]``, not empty)."""
    page.wait_for_function(
        """(index) => {
            const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
            const prompt = cells[index]?.querySelector('.jp-InputPrompt');
            return prompt && /\\[\\d+\\]/.test(prompt.textContent);
        }""",
        arg=index,
        timeout=timeout,
    )


def wait_running(page: Any, index: int, timeout: int = STEP) -> None:
    """Wait until cell ``index`` shows ``[*]``."""
    page.wait_for_function(
        """(index) => {
            const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
            const prompt = cells[index]?.querySelector('.jp-InputPrompt');
            return (prompt?.textContent ?? '').includes('*');
        }""",
        arg=index,
        timeout=timeout,
    )
