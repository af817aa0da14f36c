"""JupyterLite in the browser: async-kernel beside jupyterlite-pyodide-kernel, on one site.

    python bench/lite.py                       # 3 cold page opens per kernel, 200 round trips
    python bench/lite.py --repeats 5 --roundtrips 500
    python bench/lite.py --kernels async       # ours only

Builds the offline site with both kernels (``scripts/lite.sh --build-only --reference``: the
reference kernel's packages come from the site too, so neither touches the network), serves
it cross-origin isolated on loopback and drives headless Chromium.  Every request off the
site is refused.  For each kernel and repeat, in a fresh browser profile (a first visit):

- page to first cell: from ``page.goto`` to the output of a notebook's first cell, run as soon
  as the notebook has a kernel (a user who opens the page and runs the first cell at once:
  Pyodide's start, the packages' install and the kernel's start are all inside);
- execute round trip: ``requestExecute({code: 'pass'})`` from the page until its reply and
  idle status are in, one after another (after 3 warm-up), timed with performance.now(), on a
  kernel started from the page's API (see one_run: why not the notebook's).

Kernels are interleaved (the first one rotates between repeats).  Results are printed as a
markdown table (``--markdown FILE`` writes it too) and as JSON (``--json FILE``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "build" / "lite-bench"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
KERNELS = {"async": "Python (async)", "python": "Python (Pyodide)"}
LABELS = {"async": "async-kernel", "python": "jupyterlite-pyodide-kernel"}
FIRST_CELL = "'first cell ran'"
PAGE_TIMEOUT = 240_000  # ms: a loaded 2-core machine, two Pyodides in the worst case
WARMUP = 3
TRIP_LIMIT = 10_000  # ms: a round trip not done by then is reported as a stall
PANEL = "window.jupyterapp.shell.currentWidget"


def notebooks(folder: Path) -> Path:
    """One notebook per kernel, one cell each."""
    for name, display in KERNELS.items():
        nb: dict[str, Any] = {
            "cells": [{"cell_type": "code", "execution_count": None, "id": "first",
                       "metadata": {}, "outputs": [], "source": [FIRST_CELL]}],
            "metadata": {"kernelspec": {"name": name, "display_name": display,
                                        "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }  # fmt: skip
        (folder / f"bench-{name}.ipynb").write_text(json.dumps(nb))
    return folder


def build(kernel_from: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["bash", str(REPO / "scripts" / "lite.sh"), "--build-only", "--out", str(SITE),
                "--expose-app", "--reference",
                "--notebooks", str(notebooks(Path(tmp)))]  # fmt: skip
        if kernel_from:
            argv += ["--kernel-from", kernel_from]
        subprocess.run(argv, cwd=REPO, check=True, timeout=900, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(REPO / "lite" / "lite_site.py"), "serve", str(SITE),
            "--port", str(port)]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jupyter-lite.json", timeout=5):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"site server not up: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def one_run(pw: Any, url: str, kernel: str, roundtrips: int) -> dict[str, Any]:
    """A first visit: a fresh profile opens the kernel's notebook and runs its cell."""
    profile = tempfile.mkdtemp(prefix="lite-bench-profile-")
    refused: list[str] = []
    context = pw.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
        headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900},
        timeout=60_000,
    )  # fmt: skip
    try:

        def only_the_site(route: Any) -> None:
            if route.request.url.startswith((url, "data:", "blob:")):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_site)
        page = context.new_page()
        started = time.monotonic()
        page.goto(f"{url}lab/index.html?path=bench-{kernel}.ipynb", timeout=60_000)
        # Run the first cell as soon as the notebook has a kernel (still starting).
        page.wait_for_function(
            f"() => window.jupyterapp && {PANEL}?.sessionContext?.session?.kernel "
            f"&& {PANEL}.content.widgets.length",
            timeout=PAGE_TIMEOUT,
        )
        page.evaluate(
            f"""() => {{
                {PANEL}.content.activeCellIndex = 0;
                void window.jupyterapp.commands.execute('notebook:run-cell');
            }}"""
        )
        page.wait_for_function(
            """(text) => {
                const out = document.querySelector('.jp-Notebook .jp-Cell .jp-OutputArea');
                return out !== null && out.innerText.includes(text);
            }""",
            arg=FIRST_CELL.strip("'"),
            timeout=PAGE_TIMEOUT,
        )
        first_cell = time.monotonic() - started
        # The round trip on a kernel of its own (the notebook's is shut down first): one
        # client, as a kernel started from the page's API has.  With the notebook's several
        # clients the reference kernel sometimes stalls after a cell's result (no reply, no
        # idle): measured that way it would hang, not be slow.
        page.evaluate(f"() => {PANEL}.sessionContext.shutdown()")
        trips: dict[str, Any] = page.evaluate(
            """async ([name, n, warmup, limit]) => {
                const kernels = window.jupyterapp.serviceManager.kernels;
                const kernel = await kernels.startNew({ name });  // its one connection
                await kernel.info;
                const times = [];
                for (let i = 0; i < n + warmup; i++) {
                    const t = performance.now();
                    const done = kernel.requestExecute({ code: 'pass', store_history: false }).done;
                    const timer = new Promise((resolve) => setTimeout(resolve, limit, 'stalled'));
                    if ((await Promise.race([done, timer])) === 'stalled') {
                        return { times, stalled: i + 1 };
                    }
                    if (i >= warmup) times.push(performance.now() - t);
                }
                const info = await kernel.info;
                await kernel.shutdown();
                return { times, stalled: 0, implementation: info.implementation };
            }""",
            [kernel, roundtrips, WARMUP, TRIP_LIMIT],
        )
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
    if refused:
        raise RuntimeError(f"requests left the site: {refused[:5]}")
    return {"kernel": kernel, "implementation": trips.get("implementation"),
            "first_cell_s": first_cell, "roundtrip_ms": trips["times"],
            "stalled_at": trips["stalled"]}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(runs: list[dict[str, Any]], kernels: list[str]) -> str:
    lines = [
        "| kernel | page to first cell, s: median [min-max] | execute round trip, ms: "
        "median | p90 | min | runs whose round trips stalled |",
        "|---|---|---|---|---|---|",
    ]
    for kernel in kernels:
        mine = [r for r in runs if r["kernel"] == kernel]
        if not mine:
            continue
        first = [r["first_cell_s"] for r in mine]
        trips = [t for r in mine for t in r["roundtrip_ms"]]
        stalled = sum(1 for r in mine if r["stalled_at"])
        trip = (
            f"{statistics.median(trips):.1f} | {percentile(trips, 0.9):.1f} | {min(trips):.1f}"
            if trips
            else "- | - | -"
        )
        lines.append(
            f"| {LABELS[kernel]} | {statistics.median(first):.1f} "
            f"[{min(first):.1f}-{max(first):.1f}] | {trip} | {stalled} of {len(mine)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kernels", default="async,python", help="async, python (reference)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--roundtrips", type=int, default=200)
    parser.add_argument("--kernel-from", metavar="COMMIT", help="async-kernel's wheel from a "
                        "commit (default: the working tree)")  # fmt: skip
    parser.add_argument("--no-build", action="store_true", help="reuse build/lite-bench")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kernels = [k for k in args.kernels.split(",") if k]
    unknown = set(kernels) - set(KERNELS)
    if unknown:
        parser.error(f"unknown kernels: {', '.join(sorted(unknown))}")
    # playwright: an e2e dependency, imported only here (the build above needs none of it)
    sync_playwright: Any = importlib.import_module("playwright.sync_api").sync_playwright

    if not args.no_build:
        build(args.kernel_from)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        server = serve(port, Path(tmp) / "server.log")
        runs: list[dict[str, Any]] = []
        try:
            with sync_playwright() as pw:
                for repeat in range(args.repeats):
                    order = kernels[repeat % len(kernels) :] + kernels[: repeat % len(kernels)]
                    for kernel in order:
                        run = one_run(pw, url, kernel, args.roundtrips)
                        runs.append(run)
                        trips = run["roundtrip_ms"]
                        trip = f"{statistics.median(trips):.1f} ms" if trips else "-"
                        stall = f", stalled at execute {run['stalled_at']}" * bool(
                            run["stalled_at"]
                        )
                        print(f"repeat {repeat + 1} {LABELS[kernel]}: first cell "
                              f"{run['first_cell_s']:.1f} s, round trip {trip}{stall}",
                              flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    result = table(runs, kernels)
    print()
    print(f"machine: {os.cpu_count()} cores; {args.repeats} cold page opens per kernel, "
          f"{args.roundtrips} round trips each")  # fmt: skip
    print(result)
    if args.markdown:
        args.markdown.write_text(result + "\n")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
