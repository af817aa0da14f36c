"""Magics for threads, loops and background work.

``%callers`` lists the running callers; ``%%thread [name=...] [backend=...]`` runs the cell
on that caller (found or started); ``%%trio`` / ``%%asyncio`` run the cell on that backend
whatever the kernel's is; ``%task`` lists the background tasks that cells started.

The cell magics return an awaitable that the cell awaits (an input transform puts the
``await`` in), so the kernel's loop stays free, an interrupt cancels the work, prints land
under the cell and the value of the cell's last expression is its result.

:class:`FrontEndMagics` are the terminal's magics remade for a kernel whose user sits at a
notebook or console front end (``%autosave``, ``%connect_info``, ``%qtconsole``, ``%clear``,
``%less``, ``%more``, ``%man``, ``%edit``), as ipykernel provides them.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ..settings import Backend
    from .namespaces import NamespaceShell

__all__ = ["AsyncKernelMagics", "FrontEndMagics", "register"]

_OURS = re.compile(r"^get_ipython\(\)\.run_cell_magic\('(thread|trio|asyncio)',")


def _await_our_cell_magics(lines: list[str]) -> list[str]:
    """Input transform: ``%%thread`` and friends become ``await ...run_cell_magic(...)``."""
    if lines and _OURS.match(lines[0]):
        return ["await " + lines[0], *lines[1:]]
    return lines


def register(shell: InteractiveShell) -> None:
    """Add the magics and their input transform to ``shell``."""
    shell.register_magics(AsyncKernelMagics, FrontEndMagics)
    traits: Any = shell  # the transforms are an untyped traitlets List on IPython's shell
    transforms: list[Callable[[list[str]], list[str]]] = traits.input_transformers_post
    if _await_our_cell_magics not in transforms:
        transforms.append(_await_our_cell_magics)


async def run_cell_body(code: str, namespace: dict[str, Any]) -> Any:
    """Run a cell's code (top-level ``await`` allowed) in ``namespace``; the value of its
    last expression, if it ends with one."""
    tree = ast.parse(code)
    last: ast.Expression | None = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):
        tree.body.pop()
        last = ast.Expression(final.value)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body = compile(tree, "<cell>", "exec", flags=flags)
    outcome = eval(body, namespace)
    if inspect.iscoroutine(outcome):
        await outcome
    if last is None:
        return None
    value = eval(compile(last, "<cell>", "eval", flags=flags), namespace)
    if inspect.iscoroutine(value):
        value = await value
    return value


def _options(line: str, allowed: set[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if not sep or key not in allowed:
            raise UsageError(f"unknown option {word!r}: expected {' '.join(sorted(allowed))}")
        options[key] = value
    return options


@magics_class
class AsyncKernelMagics(Magics):
    """``%callers``, ``%%thread``, ``%%trio``, ``%%asyncio`` and ``%task``."""

    @line_magic
    def callers(self, line: str = "") -> None:
        """List the running callers: name, backend, thread, work outstanding and queued."""
        from ..toolkit.caller import Caller
        from ..toolkit.workers import POOL

        rows = [("name", "backend", "thread", "running", "queued")]
        for caller in Caller.all():
            queued = ", ".join(caller.queued()) or "-"
            rows.append(
                (caller.name, caller.backend, caller.thread.name, str(caller.outstanding()), queued)
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        busy = POOL.workers - POOL.idle
        print(
            f"to_thread workers: {POOL.workers} ({busy} busy, {POOL.backlog} waiting; "
            f"limit {Caller.thread_limit})"
        )

    @line_magic
    def task(self, line: str = "") -> None:
        """List the background tasks cells started that are still running
        (``%task cancel ID`` cancels one)."""
        from ..toolkit.background import running_tasks

        words = line.split()
        tasks = running_tasks()
        if words[:1] == ["cancel"] and len(words) == 2:
            for entry in tasks:
                if str(entry.id) == words[1] and entry.cancel is not None:
                    entry.cancel()
                    print(f"cancelled task {entry.id} ({entry.name})")
                    return
            raise UsageError(f"no running task {words[1]}")
        if words:
            raise UsageError("usage: %task [cancel ID]")
        if not tasks:
            print("no background tasks running")
            return
        now = time.monotonic()
        for entry in tasks:
            print(
                f"{entry.id:>4}  {entry.name}  on {entry.thread}  for {now - entry.started:.1f} s"
                f"  from cell {entry.cell[:8]}"
            )

    @cell_magic
    def thread(self, line: str, cell: str) -> Any:
        """``%%thread [name=NAME] [backend=asyncio|trio]``: run the cell on that caller
        (started if none runs by that name; default name "thread")."""
        from ..toolkit.caller import Caller

        options = _options(line, {"name", "backend"})
        backend = options.get("backend")
        if backend not in (None, "asyncio", "trio"):
            raise UsageError(f"unknown backend {backend!r}: expected asyncio or trio")
        caller = Caller.get(options.get("name", "thread"), backend)
        if caller.thread is threading.current_thread():
            return run_cell_body(cell, self._namespace())
        return caller.call_soon(run_cell_body, cell, self._namespace())

    @cell_magic
    def trio(self, line: str, cell: str) -> Any:
        """``%%trio``: run the cell on trio (a guest run on this thread if the kernel runs
        asyncio)."""
        return self._on_backend("trio", line, cell)

    @cell_magic
    def asyncio(self, line: str, cell: str) -> Any:
        """``%%asyncio``: run the cell on asyncio (a guest run on this thread if the kernel
        runs trio)."""
        return self._on_backend("asyncio", line, cell)

    def _on_backend(self, backend: Backend, line: str, cell: str) -> Any:
        from ..toolkit.backends import call_using_backend

        if line.strip():
            raise UsageError(f"%%{backend} takes no options")
        return call_using_backend(backend, run_cell_body, cell, self._namespace())

    def _namespace(self) -> dict[str, Any]:
        shell = cast("NamespaceShell | None", self.shell)  # IPython's user_ns is untyped
        assert shell is not None
        return shell.user_ns


AUTOSAVE_NOTE = (
    "Autosave is handled by the front end, not the kernel (JupyterLab and Notebook 7: "
    "Settings > Settings Editor > Document Manager > Autosave Interval)."
)


@magics_class
class FrontEndMagics(Magics):
    """``%autosave``, ``%connect_info``, ``%qtconsole``, ``%clear``, ``%less``, ``%more``,
    ``%man`` and ``%edit``: what a terminal does for them, a front end does here."""

    _autosave_noted = False

    @line_magic
    def autosave(self, line: str = "") -> None:
        """``%autosave [N]``: accepted and left to the front end (the note is printed once).

        ipykernel sends javascript that only the classic notebook (Notebook 6) understood;
        JupyterLab and Notebook 7 show it as "Javascript Error: IPython is not defined".
        Old notebooks start with this line, so it must not fail a run (nbclient, papermill).
        """
        try:
            if line.strip():  # bare, it only asks: nothing to check
                int(line)
        except ValueError:
            raise UsageError(f"%autosave requires an integer, got {line!r}") from None
        if not FrontEndMagics._autosave_noted:
            FrontEndMagics._autosave_noted = True
            print(AUTOSAVE_NOTE)

    @line_magic
    def connect_info(self, line: str = "") -> None:
        """Print this kernel's connection file and how to connect another client to it."""
        path = self._connection_file()
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read the connection file {path}: {err}") from None
        from jupyter_core.paths import jupyter_runtime_dir

        # A client finds a file of the runtime directory by its name alone.
        name = os.path.basename(path) if os.path.dirname(path) == jupyter_runtime_dir() else path
        print(json.dumps(info, indent=2))
        print(
            "\nTo connect another client (jupyter console, jupyter qtconsole), put the JSON\n"
            "above in a file and run:\n"
            "    $> jupyter console --existing <file>\n"
            "or, on this machine:\n"
            f"    $> jupyter console --existing {name}"
        )

    @line_magic
    def qtconsole(self, line: str = "") -> None:
        """Open a Qt console on this kernel (``jupyter qtconsole --existing``), if the
        qtconsole package is installed."""
        from importlib.util import find_spec

        if find_spec("qtconsole") is None:
            raise UsageError(
                "%qtconsole needs the qtconsole package (pip install qtconsole); any other "
                "client can connect to this kernel: see %connect_info"
            )
        path = self._connection_file()
        # Its own session: an interrupt meant for the kernel (SIGINT to its process group)
        # must not close the console.
        console = subprocess.Popen(
            [sys.executable, "-m", "qtconsole", "--existing", path, *shlex.split(line)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        print(f"qtconsole started (pid {console.pid})")

    @line_magic
    def clear(self, line: str = "") -> None:
        """Clear the cell's output (a terminal would clear its screen)."""
        from IPython.display import clear_output

        clear_output()

    @line_magic
    def less(self, line: str = "") -> None:
        """``%less FILE``: show the file in the front end's pager (Python highlighted)."""
        self._page_file("less", line)

    @line_magic
    def more(self, line: str = "") -> None:
        """``%more FILE``: as ``%less``."""
        self._page_file("more", line)

    def _page_file(self, magic: str, line: str) -> None:
        from IPython.utils import openpy

        name = os.path.expanduser(line.strip())
        if not name:
            raise UsageError(f"%{magic} needs a file name")
        try:
            if name.endswith(".py"):
                source = openpy.read_py_file(name, skip_encoding_cookie=False)
                shell: Any = self._shell()  # IPython leaves pycolorize untyped
                text = shell.pycolorize(source) or source
            else:
                with open(name, encoding="utf-8", errors="replace") as f:
                    text = f.read()
        except OSError as err:
            raise UsageError(f"cannot read {name}: {err.strerror}") from None
        _page(text)

    @line_magic
    def man(self, line: str = "") -> None:
        """``%man PAGE``: the man page, in the front end's pager."""
        if shutil.which("man") is None:
            raise UsageError("%man needs the man command, which this system does not have")
        # Not to a terminal: man writes plain text, without its pager.
        done = subprocess.run(
            ["man", *shlex.split(line)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise UsageError(done.stderr.strip() or f"man exited with status {done.returncode}")
        _page(done.stdout)

    @line_magic
    def edit(self, line: str = "") -> None:
        """Refused: IPython's ``%edit`` waits for a terminal editor, which a kernel has not.

        ipykernel sends an ``edit_magic`` payload instead, which only qtconsole acts on:
        JupyterLab and Notebook 7 drop it, and the cell would seem to do nothing.
        """
        raise UsageError("%edit needs a terminal editor; open the file in the front end")

    def _connection_file(self) -> str:
        """This kernel's connection file (set at start-up, see notebook_env.py)."""
        config: Any = self._shell().config  # traitlets' Config: an untyped dict
        path = config["IPKernelApp"].get("connection_file") if "IPKernelApp" in config else None
        if not path:
            raise UsageError("this kernel has no connection file: it is not served over ZMQ")
        return str(path)

    def _shell(self) -> InteractiveShell:
        shell = self.shell
        assert shell is not None
        return shell


def _page(text: str) -> None:
    """Show ``text`` through the shell's pager hook: a ``page`` payload on the reply."""
    from IPython.core import page

    pager: Any = page  # IPython leaves page() untyped
    pager.page(text)
