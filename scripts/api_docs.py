"""Write docs/api.md from the docstrings of the package's public names.

    python scripts/api_docs.py          # rewrite docs/api.md
    python scripts/api_docs.py --check  # exit 1 if docs/api.md lacks a public name

tests/test_api_docs.py runs the check, and fails for a public name (or a public method of
a public class) without a docstring.  The check asks for every heading the generator would
write, not for the same bytes: a docstring edited without regenerating is not an error.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"

INTRO = """# API reference

Generated from the docstrings by `scripts/api_docs.py` (do not edit by hand; a test checks
it names everything public).  Everything here is importable from `async_kernel`; for how the pieces
fit together see [Threads, loops and background work](toolkit.md).
"""


def public_names() -> list[str]:
    sys.path.insert(0, str(ROOT))
    import async_kernel

    return [name for name in async_kernel.__all__ if not name.startswith("_")]


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` itself, in source order."""
    for name, attribute in vars(cls).items():
        if name.startswith("_") and name not in ("__aenter__", "__await__", "__aiter__"):
            continue
        if name.startswith("__"):
            continue
        value = (
            attribute.__func__ if isinstance(attribute, (staticmethod, classmethod)) else attribute
        )
        if callable(value) or isinstance(value, property):
            yield name, value


def signature(obj: Any) -> str:
    """``(a: int, *, b: str = 'x') -> None``, with the annotations as written."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"

    def shown(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    params = [
        p.replace(annotation=_Raw(shown(p.annotation)))
        if p.annotation is not inspect.Parameter.empty
        else p
        for p in sig.parameters.values()
        if p.name not in ("self", "cls")
    ]
    ret = sig.return_annotation
    sig = sig.replace(
        parameters=params,
        return_annotation=_Raw(shown(ret)) if ret is not inspect.Signature.empty else ret,
    )
    return str(sig)


class _Raw:
    """An annotation shown as its text, without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def undocumented() -> list[str]:
    import async_kernel

    missing: list[str] = []
    for name in public_names():
        obj = getattr(async_kernel, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and obj.__module__.startswith("async_kernel"):
            for member, value in members(obj):
                if not (value.__doc__ or "").strip():
                    missing.append(f"{name}.{member}")
    return missing


def headings(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith("#")}


def render() -> str:
    import async_kernel

    out = [INTRO]
    for name in public_names():
        obj = getattr(async_kernel, name)
        if inspect.isclass(obj):
            out.append(f"## `{name}`\n\n```python\nclass {name}{signature(obj)}\n```\n")
        elif callable(obj):
            out.append(f"## `{name}`\n\n```python\n{name}{signature(obj)}\n```\n")
        else:
            continue
        out.append((inspect.getdoc(obj) or "") + "\n")
        if inspect.isclass(obj) and obj.__module__.startswith("async_kernel"):
            for member, value in members(obj):
                doc = inspect.getdoc(value) or ""
                if isinstance(value, property):
                    out.append(f"### `{name}.{member}` (property)\n\n{doc}\n")
                else:
                    out.append(f"### `{name}.{member}{signature(value)}`\n\n{doc}\n")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        have = headings(PAGE.read_text(encoding="utf-8")) if PAGE.exists() else set()
        missing = sorted(headings(text) - have)
        if missing:
            print("docs/api.md lacks (run python scripts/api_docs.py):", *missing, sep="\n  ")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
