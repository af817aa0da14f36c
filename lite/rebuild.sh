#!/usr/bin/env bash
# Development loop: rebuild the extension, reinstall it, rebuild the site (no npm install).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
(cd lite && npm run --silent build >/dev/null)
.venv/bin/python -m pip install -q --no-deps --force-reinstall ./lite 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python lite/lite_site.py build "${1:-build/lite}" ${LITE_KERNEL_FROM:+--kernel-from "$LITE_KERNEL_FROM"} 2>&1 | grep -v '^WARNING: Location' | tail -1
