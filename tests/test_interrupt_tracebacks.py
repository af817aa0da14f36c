"""What an interrupt's traceback shows, and what formatting it keeps.

Where an interrupt strikes is chance: in the cell runner, in ``input()``'s wait, in the
handling of a comm message that wait lets through, in a library the user called.  The
traceback shows the user's frames and those of the libraries they called, never the
kernel's (nor the library frames the kernel called): IPython's formatter (stack_data) parses
and keeps the source file of every frame it is given, so each kernel file an interrupt
first landed in grew the kernel's memory for good (0.2-1 MiB of objects a file; the
clients soak's RSS check failed on it).

In-process: :func:`users_frames` on real tracebacks of code compiled under file names in the
kernel, the library (site-packages) and the user's files.  Over a kernel: the tracebacks, and
stack_data's cache of parsed files afterwards.
"""

from __future__ import annotations

import functools
import os
import re
import sysconfig
import tempfile
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from conftest import TIMEOUT, execute, run_ok, shell_reply, start_kernel
from jupyter_client.blocking.client import BlockingKernelClient

import async_kernel
from async_kernel.interrupt import users_frames

KERNEL_FILE = os.path.join(os.path.dirname(async_kernel.__file__), "a_kernel_part.py")
LIBRARY_FILE = os.path.join(sysconfig.get_path("purelib"), "a_library.py")
USER_FILE = os.path.join(tempfile.gettempdir(), "a_users_module.py")

SOURCE = """
def call(then):
    return then()

def fail():
    raise KeyboardInterrupt
"""


def compiled_in(filename: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, filename, "exec"), namespace)
    return namespace


kernel, library, user = (compiled_in(f) for f in (KERNEL_FILE, LIBRARY_FILE, USER_FILE))


def traceback_of(*chain: dict[str, Any]) -> TracebackType:
    """The traceback of a KeyboardInterrupt raised by the last of ``chain``, each of which
    calls the next (through ``functools.partial``, which adds no frame): one frame of each,
    the first (the runner) being where it is caught."""
    then: Callable[[], object] = chain[-1]["fail"]
    for module in reversed(chain[:-1]):
        then = functools.partial(module["call"], then)
    try:
        then()
    except KeyboardInterrupt as err:
        assert err.__traceback__ is not None and err.__traceback__.tb_next is not None
        return err.__traceback__.tb_next  # the runner's frame on (not this function's)
    raise AssertionError("nothing raised")


def entries(tb: TracebackType | None) -> list[TracebackType]:
    out: list[TracebackType] = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def files(tb: TracebackType | None) -> list[str]:
    """Where each frame of ``tb`` is: in the kernel, a library or the user's files."""
    where = {KERNEL_FILE: "kernel", LIBRARY_FILE: "library", USER_FILE: "user"}
    return [where[t.tb_frame.f_code.co_filename] for t in entries(tb)]


def test_the_users_frames_and_the_libraries_they_called_are_kept() -> None:
    tb = traceback_of(kernel, user, library, library)  # run_code, cell, numpy, numpy
    assert files(tb) == ["kernel", "user", "library", "library"]
    assert files(users_frames(tb)) == ["user", "library", "library"]


def test_the_kernels_frames_and_the_libraries_it_called_are_left_out() -> None:
    # run_code, cell, input(), its wait's comm handling, the comm library, the user's comm
    # callback, then the kernel's send, a library it calls, the signal handler's frame.
    tb = traceback_of(kernel, user, kernel, kernel, library, user, kernel, library, kernel)
    assert files(users_frames(tb)) == ["user", "user"]


def test_nothing_of_the_users_leaves_no_frame() -> None:
    # Interrupted in the runner before the cell's code started.
    assert users_frames(traceback_of(kernel, kernel, library)) is None


def test_the_same_frames_and_lines_are_shown_and_the_traceback_is_left_as_it_was() -> None:
    tb = traceback_of(kernel, user, kernel, user)

    def lines(tbs: list[TracebackType]) -> list[tuple[Any, ...]]:
        return [(t.tb_frame, t.tb_lineno, t.tb_lasti) for t in tbs]

    before = lines(entries(tb))
    users = [t for t, where in zip(entries(tb), files(tb), strict=True) if where == "user"]
    assert lines(entries(users_frames(tb))) == lines(users)
    assert lines(entries(tb)) == before


# -- over a kernel -------------------------------------------------------------------------

# The source files stack_data has parsed and keeps (its cache, keyed by file name and lines):
# none of the kernel's, nor of the comm library; the warm-up's own line shows the cache is
# where this looks.
PARSED = """
import os, async_kernel, comm, stack_data
parsed = {name for name, _ in stack_data.Source.__dict__["__source_cache_with_lines"]}
assert "<async-kernel warm-up>" in parsed, parsed
places = (os.path.dirname(async_kernel.__file__), os.path.dirname(comm.__file__))
print(sorted(name for name in parsed if name.startswith(places)))
"""
# The cell awaits, so the loop that runs the warm-up is free.
WARMED = "import sys, anyio\nwhile 'stack_data' not in sys.modules: await anyio.sleep(0.05)"

# A comm target whose callback blocks (the user's code); input() lets the comm_open through.
SLOW_TARGET = """
import time
def _slow_target(comm, msg):
    print('in the callback', flush=True)
    time.sleep(30)
get_ipython().kernel.comm_manager.register_target('slow', _slow_target)
"""


def plain(reply: dict[str, Any]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["content"]["traceback"]))


def wait_for_stream(kc: BlockingKernelClient, parent: str, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if (
            msg["msg_type"] == "stream"
            and msg["parent_header"].get("msg_id") == parent
            and text in msg["content"]["text"]
        ):
            return
    raise AssertionError(f"no {text!r} from {parent} in {TIMEOUT}s")


def interrupt(kc: BlockingKernelClient) -> None:
    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    assert kc.control_channel.get_msg(timeout=TIMEOUT)["msg_type"] == "interrupt_reply"


def test_an_interrupt_in_a_comm_callback_under_input_shows_the_users_frames_only() -> None:
    """The interrupt strikes the user's comm callback, which input()'s wait runs for a
    comm_open: the traceback is the cell's input() line, then the callback's sleep; none of
    the kernel's or the comm library's frames between them, and their files never parsed."""
    with start_kernel() as (_, kc):
        execute(kc, WARMED)
        run_ok(kc, SLOW_TARGET)
        cell = kc.execute("answer = input('?')", allow_stdin=True)
        assert kc.get_stdin_msg(timeout=TIMEOUT)["msg_type"] == "input_request"
        opened = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "slow", "data": {}})
        kc.shell_channel.send(opened)
        wait_for_stream(kc, opened["header"]["msg_id"], "in the callback")
        interrupt(kc)
        reply = shell_reply(kc, cell)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        text = plain(reply)
        assert "answer = input('?')" in text and "time.sleep(30)" in text, text
        assert text.index("input('?')") < text.index("time.sleep(30)"), text
        for hidden in ("async_kernel", "comm/", "skipping hidden"):
            assert hidden not in text, text
        assert run_ok(kc, PARSED) == "[]\n"


def test_an_interrupt_in_a_library_the_cell_called_shows_that_library() -> None:
    """Struck in the standard library's Python code the cell called (``Event.wait``), the
    traceback goes on from the cell's line into it, as the user's own call led there."""
    with start_kernel() as (_, kc):
        cell = kc.execute("import threading\nthreading.Event().wait(30)")
        # A '# thread' cell runs beside the blocked main one: it waits until the main
        # thread is inside threading.py (bounded).
        run_ok(kc, IN_THREADING)
        interrupt(kc)
        reply = shell_reply(kc, cell)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        text = plain(reply)
        assert "threading.Event().wait(30)" in text and "threading.py" in text, text
        assert "async_kernel" not in text, text


IN_THREADING = f"""# thread
import sys, threading, time
deadline = time.monotonic() + {TIMEOUT}
main = threading.main_thread().ident
while not sys._current_frames()[main].f_code.co_filename.endswith("threading.py"):
    assert time.monotonic() < deadline, "the main thread never reached threading.py"
    time.sleep(0.01)
"""


def test_the_warm_up_keeps_no_kernel_file() -> None:
    """The start-up's warm-up traceback runs a line of its own: before, its frame in
    kernel/handlers.py made stack_data parse and keep that file (~0.9 MiB) in every kernel."""
    with start_kernel() as (_, kc):
        execute(kc, WARMED)
        assert run_ok(kc, PARSED) == "[]\n"
        # The warm-up's line was in linecache only while it was formatted.
        assert (
            run_ok(kc, "import linecache\nprint('<async-kernel warm-up>' in linecache.cache)")
            == "False\n"
        )
