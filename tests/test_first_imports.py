"""Modules that are not safe to import for the first time from two threads at once are
imported by the kernel before it serves any request (see ``import_before_threads``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import execute, start_kernel

from async_kernel.shell.interactive import SELF_REPLACING_MODULES

# One thread imports pygments.lexers for the first time; the other imports a lexer from it
# while that import runs (held there by an audit hook, so the race is certain).
RACE = textwrap.dedent(
    """
    import sys, threading, time
    if sys.argv[1] == "imported-first":
        from async_kernel.shell.interactive import import_before_threads
        import_before_threads()
    mid_import = threading.Event()

    def hold_the_first_import(event, args):
        if event == "import" and args[0] == "pygments.modeline":
            if threading.current_thread().name == "first":
                mid_import.set()
                time.sleep(0.05)

    sys.addaudithook(hold_the_first_import)
    errors = []

    def first():  # as a traceback's formatting does
        from pygments.lexers import get_lexer_by_name
        get_lexer_by_name("python3")

    def second():  # as an inspection does
        mid_import.wait(2)
        try:
            from pygments.lexers import PythonLexer
        except ImportError as err:
            errors.append(err)

    threads = [threading.Thread(target=second), threading.Thread(target=first, name="first")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    print(errors[0] if errors else "ok")
    """
)


def race(mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RACE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_first_import_of_pygments_lexers_on_two_threads_breaks_the_second() -> None:
    """The library race itself (the control: without the early import it shows)."""
    assert "cannot import name 'PythonLexer'" in race("as-is")


def test_imported_first_on_one_thread_the_race_is_gone() -> None:
    assert race("imported-first") == "ok"


def test_a_kernel_has_them_imported_before_its_first_request() -> None:
    """The first cell, run at once (before the warm-up 0.5 s after start), finds them."""
    with start_kernel() as (_, kc):
        code = f"import sys; print(sorted(set({SELF_REPLACING_MODULES!r}) - set(sys.modules)))"
        reply, outputs = execute(kc, code)
        assert reply["content"]["status"] == "ok"
        assert [o["content"]["text"] for o in outputs if o["msg_type"] == "stream"] == ["[]\n"]
