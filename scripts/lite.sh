#!/usr/bin/env bash
# Build the JupyterLite site with async-kernel ("Python (async)") into a folder and serve it.
#
#   scripts/lite.sh                 # build into build/lite, serve on http://127.0.0.1:8000/
#   scripts/lite.sh --build-only    # build only
#   scripts/lite.sh --out DIR --port N
#   scripts/lite.sh --no-isolation       # serve without COOP/COEP (as GitHub Pages would)
#   scripts/lite.sh --kernel-from HEAD   # async-kernel's wheel from a commit, not the tree
#
# Needs scripts/setup.sh first (the venv, node/npm). The build installs what it needs:
# jupyterlite-core, the extension (lite/, built with npm), Pyodide from npm, the wheels.
# After the build nothing is fetched from the network: the page loads everything from the site.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build/lite
PORT=8000
BUILD_ONLY=0
BUILD_ARGS=()
SERVE_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build-only) BUILD_ONLY=1 ;;
        --out) OUT="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --kernel-from) BUILD_ARGS+=(--kernel-from "$2"); shift ;;  # a commit, not the tree
        --expose-app) BUILD_ARGS+=(--expose-app) ;;  # window.jupyterapp, for the e2e test
        --no-isolation) SERVE_ARGS+=(--no-isolation) ;;
        --reference) BUILD_ARGS+=(--reference) ;;  # jupyterlite-pyodide-kernel offline too (bench)
        --notebooks) BUILD_ARGS+=(--notebooks "$2"); shift ;;  # a folder of extra notebooks
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"
# jupyterlite-pyodide-kernel: its pins (Pyodide's version) and the reference kernel beside ours
"$PY" -m pip install -q "jupyterlite-core==0.8.6" "jupyterlite-pyodide-kernel==0.8.6" \
    "jupyter_server>=2" "jupyter_builder>=1.3"
PYODIDE_VERSION=$("$PY" -c "from jupyterlite_pyodide_kernel.constants import PYODIDE_VERSION as v; print(v)")
(
    cd lite
    if [ ! -f node_modules/pyodide/pyodide.mjs ] \
        || [ "$(node -p "require('./node_modules/pyodide/package.json').version")" != "$PYODIDE_VERSION" ] \
        || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
    grep -q "\"pyodide\": \"$PYODIDE_VERSION\"" package.json \
        || { echo "lite/package.json pins another pyodide than $PYODIDE_VERSION" >&2; exit 1; }
    npm run --silent build >/dev/null
)
"$PY" -m pip install -q --no-deps --force-reinstall ./lite
"$PY" lite/lite_site.py build "$OUT" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"}
if [ "$BUILD_ONLY" = "1" ]; then
    exit 0
fi
exec "$PY" lite/lite_site.py serve "$OUT" --port "$PORT" ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"}
