"""The shortcut past IPython's static input transforms must change nothing they would.

``PlainPythonTransformerManager`` returns a cell as it is when it sees none of the syntax
IPython's transforms react to; these tests hold it to IPython's own output, on cells built
from exactly the pieces that syntax is made of.
"""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from IPython.core.inputtransformer2 import TransformerManager

from async_kernel.shell.transform import PlainPythonTransformerManager

PIECES = [
    *"ab =()[]{}\n\t \r,;/%!?.>:'\"#\\\x0c\x0b\x1c\x85\u2028",
    "In [1]: ",
    ">>> ",
    "...: ",
    "   ...: ",
    "    ",
    "if a:\n",
    '"""',
    "x.y",
    "pass",
    "%%time\n",
    "a = %pwd",
    "b = !ls",
]
cells = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


def _transform(manager: TransformerManager, cell: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IPython warns on some odd line endings
        try:
            return manager.transform_cell(cell)
        except Exception as err:  # IPython's own failures must stay the same too
            return f"raised {type(err).__name__}"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells)
@example("if a:\n  if a:\n : ,(")  # found by Hypothesis: IPython's tokenizer raises
def test_shortcut_matches_ipython(cell: str) -> None:
    assert _transform(PlainPythonTransformerManager(), cell) == _transform(
        TransformerManager(), cell
    )


def test_plain_cells_take_the_shortcut_and_others_do_not() -> None:
    manager = PlainPythonTransformerManager()
    assert manager.transform_cell("pass") == "pass\n"
    assert manager.transform_cell("x = 1\ny = 2\n") == "x = 1\ny = 2\n"
    assert manager.transform_cell("a = %pwd") == "a = get_ipython().run_line_magic('pwd', '')\n"
    assert manager.transform_cell("  x = 1\n  y = 2") == "x = 1\ny = 2\n"


def test_an_added_transform_turns_the_shortcut_off() -> None:
    manager = PlainPythonTransformerManager()
    manager.cleanup_transforms.append(lambda lines: [line.upper() for line in lines])
    assert manager.transform_cell("x = 1") == "X = 1\n"
