#!/usr/bin/env bash
# Set up, then run every test: lint, types, the pytest suite (GUI, e2e and docs included),
# then the core suite on every other Python >= 3.11 the machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/qt_bindings.sh  # PyQt6/PyQt5 beside PySide6, for tests/test_qt_bindings.py
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check async_kernel tests bench scripts
.venv/bin/ruff format --check async_kernel tests bench scripts
PATH="$PWD/.venv/bin:$PATH" .venv/bin/pyright async_kernel
.venv/bin/python -m pytest tests "$@"
scripts/test_interpreters.sh
