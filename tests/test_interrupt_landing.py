"""Where the SIGINT handler lets a KeyboardInterrupt land, judged on real frames in-process.

Code is compiled under file names that place it in the library (site-packages) or in the
user's files, as the handler tells them apart; the "cell runner" stands for ``run_code``.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from types import FrameType
from typing import Any

from async_kernel.interrupt import _shows_an_ended_cell

LIBRARY_FILE = os.path.join(sysconfig.get_path("purelib"), "a_formatter_of_errors.py")
USER_FILE = os.path.join(tempfile.gettempdir(), "a_users_cell.py")

SOURCE = """
import sys

def here():
    return sys._getframe()

def call(then):
    return then()
"""


def compiled_in(filename: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, filename, "exec"), namespace)
    return namespace


library, user = compiled_in(LIBRARY_FILE), compiled_in(USER_FILE)


def runner(then: Callable[[], FrameType]) -> FrameType:
    """Stands for ``run_code``: calls the cell, or (after it ended) the error's display."""
    return then()


CELL_CODES = {runner.__code__}


def test_the_display_of_an_ended_cell_error_is_not_the_cell() -> None:
    # run_code -> IPython's showtraceback -> stack_data ... (all library code)
    frame = runner(functools.partial(library["call"], library["here"]))
    assert _shows_an_ended_cell(frame, CELL_CODES)
    frame = runner(library["here"])
    assert _shows_an_ended_cell(frame, CELL_CODES)


def test_a_running_cell_is_the_cell() -> None:
    # run_code -> the cell (user code) -> a library it calls
    frame = runner(lambda: user["call"](lambda: library["call"](library["here"])))
    assert not _shows_an_ended_cell(frame, CELL_CODES)
    frame = runner(user["here"])
    assert not _shows_an_ended_cell(frame, CELL_CODES)


def test_user_code_the_display_calls_is_user_code() -> None:
    # run_code -> showtraceback -> a __repr__ of the user's: interruptible as user code
    frame = runner(lambda: library["call"](user["here"]))
    assert not _shows_an_ended_cell(frame, CELL_CODES)


def test_the_runner_itself_and_no_runner() -> None:
    assert not _shows_an_ended_cell(sys._getframe(), CELL_CODES)  # no runner on the stack
    frame = runner(lambda: sys._getframe(1))  # the runner's own frame
    assert not _shows_an_ended_cell(frame, CELL_CODES)
