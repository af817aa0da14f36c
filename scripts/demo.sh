#!/usr/bin/env bash
# Set up, then run the concurrency demo notebook through the real kernel on asyncio and trio.
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_APT="${SKIP_APT:-1}" EXTRAS=trio,demo scripts/setup.sh
.venv/bin/async-kernel -a async-trio --interface.backend=trio --prefix "$PWD/.venv"
.venv/bin/python scripts/run_demo.py --kernel async
.venv/bin/python scripts/run_demo.py --kernel async-trio
