"""Build and serve the JupyterLite site with async-kernel (used by scripts/lite.sh).

    python lite/lite_site.py build OUT     # the static site, in folder OUT
    python lite/lite_site.py serve OUT [--port N]   # serve it with the COOP/COEP headers
    python lite/lite_site.py serve OUT --no-isolation   # without them, as GitHub Pages serves
    python lite/lite_site.py build OUT --reference --notebooks DIR   # as bench/lite.py builds

Everything the page loads comes from the site itself: Pyodide's core files from the npm
package ``pyodide`` (lite/node_modules), micropip and the kernel's pure-Python wheels from
PyPI at build time, async-kernel's own wheel built from this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
from pathlib import Path

LITE = Path(__file__).resolve().parent
REPO = LITE.parent
CACHE = REPO / "build" / "lite-cache"
PYODIDE_NPM = LITE / "node_modules" / "pyodide"
PYODIDE_FILES = [
    "pyodide.mjs",
    "pyodide.js",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
]
PYTHON_VERSION = "3.14"  # Python inside the pinned Pyodide (its lock file says so too)
MICROPIP = "micropip==0.11.1"  # the version pyodide-lock.json names
# The kernel's pure-Python dependencies (pyzmq, orjson and psutil are not needed in the
# browser: no sockets; orjson has a json-based stand-in in the bridge; psutil only serves
# usage_request) and what the docs notebooks use (ipywidgets).
DEPENDENCIES = [
    "anyio",
    "aiologic",
    "sniffio",
    "ipython",
    "comm",
    "traitlets",
    "matplotlib-inline",
    "ipywidgets",
]
PLUGIN_ID = "async-kernel-lite:kernel"
REFERENCE_PLUGIN_ID = "@jupyterlite/pyodide-kernel-extension:kernel"


def run(*argv: str | Path, cwd: Path = REPO) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True)


def lock_constraints() -> Path:
    """Pin the packages Pyodide's lock file names to the lock's versions (those that Pyodide
    release was tested with), except the kernel's own dependencies: the kernel needs their
    current versions (anyio's TaskHandle, for one), as on the desktop."""
    lock = json.loads((PYODIDE_NPM / "pyodide-lock.json").read_text())
    ours = {name.lower() for name in DEPENDENCIES}
    lines = [f"{name}=={pkg['version']}" for name, pkg in sorted(lock["packages"].items())
             if pkg["file_name"].endswith("-none-any.whl")  # pure ones: what we can use
             and name.lower() not in ours]  # fmt: skip
    path = CACHE / "constraints.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def pip_download(dest: Path, *requirements: str) -> None:
    run(sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--platform", "any", "--python-version", PYTHON_VERSION, "--implementation", "py",
        "--abi", "none", "-c", lock_constraints(), "-d", dest, *requirements)  # fmt: skip


def wheels(dest: Path, kernel_ref: str | None) -> dict[str, str | list[str]]:
    """async-kernel's wheel, its dependencies' and micropip's, in ``dest``; their list."""
    dest.mkdir(parents=True, exist_ok=True)
    deps = CACHE / "wheels"
    stamp = deps / "pyodide-lock.json"
    if not stamp.exists() or stamp.read_bytes() != (PYODIDE_NPM / "pyodide-lock.json").read_bytes():
        shutil.rmtree(deps, ignore_errors=True)  # another Pyodide: other pins
    if not list(deps.glob("ipython-*.whl")):
        pip_download(deps, *DEPENDENCIES)
    if not list(deps.glob("micropip-*.whl")):
        pip_download(deps, "--no-deps", MICROPIP)
        shutil.copy2(PYODIDE_NPM / "pyodide-lock.json", stamp)
    ours = CACHE / "ours"
    shutil.rmtree(ours, ignore_errors=True)
    source = REPO
    if kernel_ref:  # a commit instead of the working tree (uncommitted edits left out)
        source = CACHE / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", kernel_ref], cwd=REPO, check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", ours, source)
    for wheel in [*deps.glob("*.whl"), *ours.glob("*.whl")]:
        shutil.copy2(wheel, dest / wheel.name)
    names = sorted(p.name for p in dest.glob("*.whl"))
    micropip = next(n for n in names if n.startswith("micropip-"))
    return {"micropip": micropip, "wheels": [n for n in names if n != micropip]}


def lock_closure(lock: dict[str, dict[str, object]], roots: list[str]) -> list[str]:
    """The packages of Pyodide's lock file that ``roots`` need, roots included."""
    names: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name not in names:
            names.append(name)
            todo += [str(d) for d in lock[name]["depends"]]  # type: ignore[union-attr]
    return sorted(names)


def reference_packages(out: Path) -> None:
    """What jupyterlite-pyodide-kernel loads by name from Pyodide's distribution, on the site.

    The reference kernel loads micropip, IPython and jedi with ``pyodide.loadPackage``, which
    fetches the file the lock names from the site's Pyodide folder and checks its sha256.
    The npm package ships no package files and Pyodide rebuilds its pure wheels, so the site
    gets the same versions from PyPI and its lock file their hashes.
    """
    lock_path = out / "static" / "pyodide" / "pyodide-lock.json"
    lock = json.loads(lock_path.read_text())
    packages: dict[str, dict[str, object]] = lock["packages"]
    cache = CACHE / "reference-wheels"
    for name in lock_closure(packages, ["micropip", "ipython", "jedi"]):
        pkg = packages[name]
        file_name = str(pkg["file_name"])
        if not file_name.endswith("-none-any.whl"):
            sys.exit(f"the reference kernel needs {file_name}, which is not pure Python")
        wheel = cache / file_name
        if not wheel.exists():
            pip_download(cache, "--no-deps", f"{name}=={pkg['version']}")
        if not wheel.exists():
            sys.exit(f"PyPI has no {file_name}")
        shutil.copy2(wheel, out / "static" / "pyodide" / file_name)
        pkg["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock_path.write_text(json.dumps(lock))


def build(
    out: Path,
    kernel_ref: str | None = None,
    expose_app: bool = False,
    reference: bool = False,
    extra_notebooks: Path | None = None,
) -> None:
    """Build the site into ``out``.  ``reference``: also make jupyterlite-pyodide-kernel's
    "Python (Pyodide)" work offline (for bench/lite.py); ``extra_notebooks``: a folder whose
    notebooks go on the site too."""
    if not (PYODIDE_NPM / "pyodide.mjs").exists():
        sys.exit(f"no Pyodide in {PYODIDE_NPM}: run `npm ci` in lite/ (scripts/setup.sh does)")
    src = CACHE / "lite-dir"
    shutil.rmtree(src, ignore_errors=True)
    pyodide = src / "static" / "pyodide"
    pyodide.mkdir(parents=True)
    for name in PYODIDE_FILES:
        shutil.copy2(PYODIDE_NPM / name, pyodide / name)
    (src / "jupyter-lite.json").write_text(
        json.dumps(
            {
                "jupyter-lite-schema-version": 0,
                "jupyter-config-data": {
                    "appName": "async-kernel in the browser",
                    # window.jupyterapp, for tests that drive the page from script
                    **({"exposeAppInBrowser": True} if expose_app else {}),
                    "litePluginSettings": {
                        PLUGIN_ID: {
                            "pyodideUrl": "./static/pyodide/pyodide.mjs",
                            "wheelsUrl": "./static/async-kernel/",
                        },
                        # the reference kernel (if installed) must not reach for PyPI either
                        REFERENCE_PLUGIN_ID: {"disablePyPIFallback": True},
                    },
                },
            },
            indent=2,
        )
    )
    notebooks = src / "files"
    notebooks.mkdir()
    for nb in sorted((REPO / "docs" / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, notebooks / nb.name)
    for nb in sorted((LITE / "notebooks").glob("*.ipynb")):
        shutil.copy2(nb, notebooks / nb.name)
    for nb in sorted(extra_notebooks.glob("*.ipynb")) if extra_notebooks else []:
        shutil.copy2(nb, notebooks / nb.name)
    if reference:  # comm: the reference kernel installs it with piplite, from the site's index
        (src / "pypi").mkdir()
        cache = CACHE / "reference-wheels"
        if not list(cache.glob("comm-*.whl")):
            pip_download(cache, "--no-deps", "comm")
        for wheel in cache.glob("comm-*.whl"):
            shutil.copy2(wheel, src / "pypi" / wheel.name)
    shutil.rmtree(out, ignore_errors=True)
    run(sys.executable, "-m", "jupyterlite_core", "build", "--lite-dir", src,
        "--output-dir", out, "--no-sourcemaps", cwd=src)  # fmt: skip
    if not (out / "static" / "pyodide" / "pyodide.mjs").exists():  # no pyodide addon installed
        shutil.copytree(pyodide, out / "static" / "pyodide", dirs_exist_ok=True)
    if reference:
        reference_packages(out)
    listing = wheels(out / "static" / "async-kernel", kernel_ref)
    (out / "static" / "async-kernel" / "wheels.json").write_text(json.dumps(listing, indent=2))
    extensions = json.loads((out / "jupyter-lite.json").read_text())["jupyter-config-data"]
    names = [e["name"] for e in extensions.get("federated_extensions", [])]
    if "async-kernel-lite" not in names:
        sys.exit(f"the site has no async-kernel-lite extension (found {names}): pip install ./lite")
    print(f"built {out} ({len(listing['wheels'])} wheels, extensions: {', '.join(names)})")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, with the headers that make the page cross-origin isolated.

    Isolation gives the page SharedArrayBuffer: the kernel's worker waits on it for input()
    and Pyodide reads SIGINT from it to interrupt a busy cell.
    """

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".ipynb": "application/json",
        ".whl": "application/octet-stream",
    }

    def end_headers(self) -> None:
        if self.server.isolated:  # type: ignore[attr-defined]
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def serve(root: Path, host: str, port: int, verbose: bool, isolated: bool = True) -> None:
    handler = functools.partial(Handler, directory=str(root))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        server.verbose = verbose  # type: ignore[attr-defined]
        server.isolated = isolated  # type: ignore[attr-defined]
        url = f"http://{host}:{server.server_address[1]}/lab/index.html"
        print(f"serving {root} at {url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--kernel-from", metavar="COMMIT", help="build async-kernel's wheel from "
                   "this commit (default: the working tree)")  # fmt: skip
    b.add_argument("--expose-app", action="store_true", help="set window.jupyterapp (tests)")
    b.add_argument("--reference", action="store_true", help="make jupyterlite-pyodide-kernel "
                   "work offline too (bench/lite.py compares it)")  # fmt: skip
    b.add_argument("--notebooks", type=Path, help="a folder of extra notebooks for the site")
    s = sub.add_parser("serve")
    s.add_argument("root", type=Path)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--verbose", action="store_true")
    s.add_argument("--no-isolation", action="store_true", help="no COOP/COEP headers: no "
                   "shared memory (input() then goes through the service worker)")  # fmt: skip
    args = parser.parse_args()
    if args.command == "build":
        build(args.out.resolve(), args.kernel_from, args.expose_app, args.reference,
              args.notebooks.resolve() if args.notebooks else None)  # fmt: skip
    else:
        serve(args.root.resolve(), args.host, args.port, args.verbose, not args.no_isolation)


if __name__ == "__main__":
    main()
