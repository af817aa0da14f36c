"""Magics for threads, loops and background work.

``%callers`` lists the running callers; ``%%thread [name=...] [backend=...]`` runs the cell
on that caller (found or started); ``%%trio`` / ``%%asyncio`` run the cell on that backend
whatever the kernel's is; ``%task`` lists the background tasks that cells started.

The cell magics return an awaitable that the cell awaits (an input transform puts the
``await`` in), so the kernel's loop stays free, an interrupt cancels the work, prints land
under the cell and the value of the cell's last expression is its result.
"""

from __future__ import annotations

import ast
import inspect
import re
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

__all__ = ["AsyncKernelMagics", "register"]

_OURS = re.compile(r"^get_ipython\(\)\.run_cell_magic\('(thread|trio|asyncio)',")


def _await_our_cell_magics(lines: list[str]) -> list[str]:
    """Input transform: ``%%thread`` and friends become ``await ...run_cell_magic(...)``."""
    if lines and _OURS.match(lines[0]):
        return ["await " + lines[0], *lines[1:]]
    return lines


def register(shell: InteractiveShell) -> None:
    """Add the magics and their input transform to ``shell``."""
    shell.register_magics(AsyncKernelMagics)
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
