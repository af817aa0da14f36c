#!/usr/bin/env bash
# Set up a fresh machine for async-kernel: system packages, a virtual environment in .venv,
# the package with every extra, and the default kernel spec (installed as package data).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

if [ "${SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null; then
    # xvfb: a display for Tk; chromium: JupyterLab e2e; tmux: jupyter console e2e;
    # Qt's runtime libraries; nodejs/npm (the Pyodide test) only where no node exists, since
    # Debian's npm conflicts with a node installed by other means.
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        xvfb xauth chromium tmux iproute2 \
        libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 \
        libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 >/dev/null
    if ! command -v node >/dev/null; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
EXTRAS="${EXTRAS:-test,trio,qt,matplotlib,debug,e2e}"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
.venv/bin/jupyter kernelspec list

# JupyterLite (issue 20): the extension's npm packages (incl. Pyodide) for scripts/lite.sh and
# tests/e2e/test_lite.py. Only when npm exists; lite.sh itself installs the Python side.
if command -v npm >/dev/null; then
    (cd lite && npm ci --no-audit --no-fund --loglevel=error)
fi
