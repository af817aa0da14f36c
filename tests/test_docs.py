"""The documentation builds with ``mkdocs build --strict`` (broken links and pages left out
of the nav fail), and the command-line page agrees with ``async-kernel --help``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is not installed (pip install mkdocs)")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "index.html").exists()
    assert (site / "images" / "jupyterlab.png").exists()


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    missing = sorted(p for p in pages if p not in nav)
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_cli_page_names_every_option() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "async_kernel", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    options = set(re.findall(r"(--[a-z][a-z_.-]+)", help_text)) - {"--help"}
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = sorted(o for o in options if o not in page)
    assert not missing, f"docs/cli.md does not describe: {missing}"


def test_readme_shows_the_screenshot() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/images/jupyterlab.png" in readme
    assert (DOCS / "images" / "jupyterlab.png").exists()
