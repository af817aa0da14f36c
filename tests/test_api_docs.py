"""The API reference (docs/api.md) is generated from the docstrings and names everything
public; every public name and every public method of a public class has a docstring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_is_documented() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import api_docs
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert api_docs.undocumented() == []


def test_api_page_names_everything_public() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "api_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
