"""A cell's input transforms, skipped when the cell has none of IPython's special syntax."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from IPython.core import inputtransformer2
from IPython.core.inputtransformer2 import (
    EscapedCommand,
    HelpEnd,
    MagicAssign,
    SystemAssign,
    TokenTransformBase,
    TransformerManager,
)

__all__ = ["PlainPythonTransformerManager"]

# What IPython's static transforms react to, or a line break other than "\n" (each of those
# starts a line for the tokenizer, where the "^" below would not look): the prompts
# (">>>", "In [", "...:"), escapes ("%", "!", "?", and ",", ";", "/" opening a line) and a
# whitespace-only line (which ``leading_indent``'s dedent empties).
_IPYTHON_SYNTAX = re.compile(
    r"[%!?\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]|>>>|\.\.\.:|In \[|^[^\S\n]*[,;/]|^[^\S\n]+$",
    re.MULTILINE,
)

LinesTransform = Callable[[list[str]], list[str]]

# The transforms the pattern above was written for.  IPython leaves its transform functions
# unannotated: they are read through ``Any`` here, typed by the lists.
_transforms: Any = inputtransformer2
_CLEANUP: list[LinesTransform] = [
    _transforms.leading_empty_lines,
    _transforms.leading_indent,
    _transforms.classic_prompt,
    _transforms.ipython_prompt,
]
_LINE: list[LinesTransform] = [_transforms.cell_magic]
_TOKEN: list[type[TokenTransformBase]] = [MagicAssign, SystemAssign, EscapedCommand, HelpEnd]


class PlainPythonTransformerManager(TransformerManager):
    """IPython's static input transforms, skipped for a cell that has none of their syntax.

    Tokenizing every cell to look for special syntax (again after each change) was the
    largest part of a short cell's run (~20 µs for ``pass``).  A cell that starts with code and
    has none of the characters those transforms look for comes out of them unchanged
    (plus a final newline), so it skips them.  Only while the transforms are IPython's own
    defaults: one an extension adds may react to anything.
    """

    # IPython's lists, typed (its ``__init__`` fills them, unannotated).
    cleanup_transforms: list[LinesTransform]
    line_transforms: list[LinesTransform]
    token_transformers: list[type[TokenTransformBase]]

    keep_line_numbers = False
    """Whether the code keeps the cell's line numbers (see :func:`_leading_blank_lines`):
    while a debugger is attached, whose breakpoints name lines of the cell as dumped."""

    def transform_cell(self, cell: str) -> str:
        if (
            cell
            and not cell[0].isspace()
            and _IPYTHON_SYNTAX.search(cell) is None
            and _indents_tokenize(cell)
            and self.token_transformers == _TOKEN
            and self.line_transforms == _LINE
            and self.cleanup_transforms == _CLEANUP
        ):
            return cell if cell.endswith("\n") else cell + "\n"
        transformed = super().transform_cell(cell)
        if self.keep_line_numbers and _transforms.leading_empty_lines in self.cleanup_transforms:
            transformed = "\n" * _leading_blank_lines(cell) + transformed
        return transformed


def _leading_blank_lines(cell: str) -> int:
    """How many lines ``leading_empty_lines`` drops from the start of ``cell``.

    IPython drops them so that a cell magic or an indented first line is still found on the
    cell's first line; that moves every compiled line up against the cell as the debugger
    numbers it (a breakpoint set on the dumped cell never hits, or hits another line).  As
    many empty lines put back in front of the transformed code keep both.  Only while
    debugging: otherwise the code (and the line numbers of its tracebacks) stays IPython's.
    """
    lines = cell.splitlines()
    for number, line in enumerate(lines):
        if line and not line.isspace():
            return number
    return 0


def _indents_tokenize(cell: str) -> bool:
    """Whether each line's indent is one Python's tokenizer takes without an error: spaces
    only, and on a dedent a level opened before.  IPython's transforms tokenize the cell
    and raise the tokenizer's IndentationError (seen: a line indented one space under two
    levels of 0 and 2); the shortcut must fail the same way, so such a cell takes the full
    path.  A continuation line (inside brackets or a string) may look irregular here and
    only loses the shortcut.
    """
    levels = [0]
    for line in cell.split("\n"):
        code = line.lstrip(" ")
        if not code or code[0] == "#":
            continue
        if code[0].isspace():  # a tab, or other whitespace, in the indent
            return False
        indent = len(line) - len(code)
        if indent > levels[-1]:
            levels.append(indent)
            continue
        while indent < levels[-1]:
            levels.pop()
        if indent != levels[-1]:
            return False
    return True
