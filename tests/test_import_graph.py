"""The package's import graph: no circles, and layers that only look down.

Imports are read from the source (ast): every one counts, those inside functions and those
under ``if TYPE_CHECKING:`` too.  A part that needs something of what composes it (the
kernel, for the router, the handlers and the debugger) is given it as an object, and names
what it uses as a type of its own layer or below (a Protocol, a dataclass of parts).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "async_kernel"

# Layers, top to bottom: a module may import its own layer and the ones below.
LAYERS = [
    {"app"},
    {"kernel"},
    {"shell", "transport", "debugger"},
    {"toolkit", "guest", "gui_hosts"},
    {"settings", "parent", "interrupt", "cells", "async_exceptions", "_version"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (at run time or for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("async_kernel"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("async_kernel"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    return {
        name: {m for m in imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_circles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                circle = [*stack[stack.index(target) :], target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's own __init__ re-exports from every layer
    for index, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return index
    return None


def test_layers_only_look_down() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if (a := layer_of(source)) is not None and (b := layer_of(target)) is not None and b < a
    ]
    assert not upward, "imports that run up the layers: " + ", ".join(sorted(upward))
