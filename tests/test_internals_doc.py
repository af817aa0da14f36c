"""docs/internals.md stays true: every module it names exists, every module is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "async_kernel"
DOC = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")


def package_modules() -> set[str]:
    """Every module of the package, as 'folder/name.py' below async_kernel/."""
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts and path.name not in ("__init__.py", "_version.py")
    }


def named_in_map() -> set[str]:
    """The modules the map names: 'name.py' under the folder heading it stands beneath."""
    block = DOC.split("```", 2)[1]
    named: set[str] = set()
    folder = ""
    for line in block.splitlines()[1:]:
        heading = re.match(r"  (\w+)/", line)
        if heading:
            folder = heading.group(1) + "/"
        elif re.match(r"  \S", line):
            folder = ""
        for name in re.findall(r"(\w+\.py)\b", line):
            named.add(name if name == "__main__.py" else folder + name)
    return named


def test_every_module_is_on_the_map() -> None:
    missing = package_modules() - named_in_map() - {"__main__.py"}
    assert not missing, f"docs/internals.md does not name {sorted(missing)}"


def test_every_module_on_the_map_exists() -> None:
    ghosts = named_in_map() - package_modules() - {"__main__.py", "__init__.py"}
    assert not ghosts, f"docs/internals.md names modules that do not exist: {sorted(ghosts)}"


def test_paths_in_the_text_exist() -> None:
    for path in re.findall(r"`((?:\w+/)+\w+\.py)", DOC):
        where = ROOT if path.startswith("tests/") else PACKAGE
        assert (where / path).is_file(), f"docs/internals.md names {path}"


def test_names_in_the_text_exist() -> None:
    """`module.py: name` and `Class.method` references point at real definitions."""
    for path, name in re.findall(r"`((?:\w+/)*\w+\.py): (\w+)", DOC):
        source = (PACKAGE / path).read_text(encoding="utf-8")
        assert re.search(rf"(def|class) {name}\b", source), f"{path} defines no {name}"
