#!/usr/bin/env bash
# PyQt6 and PyQt5 beside the venv's PySide6, for tests/test_qt_bindings.py only: each goes
# into .venv/qt-bindings/NAME (pip --target), which that test puts on a kernel's PYTHONPATH.
# The venv itself keeps one binding, so no other test (or matplotlib) sees more than one.
set -euo pipefail
cd "$(dirname "$0")/.."
for pair in pyqt6:PyQt6 pyqt5:PyQt5; do
    name="${pair%%:*}"
    module="${pair##*:}"
    target=".venv/qt-bindings/$name"
    if [ ! -d "$target/$module" ]; then
        rm -rf "$target"
        .venv/bin/python -m pip install -q --target "$target" "$module"
    fi
done
