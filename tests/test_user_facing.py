"""What a user sees as in ipykernel: a cell's ``logging`` output, imports after ``%cd``,
``%autoawait``, and the traceback of a failing background task."""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from typing import Any

from conftest import TIMEOUT, execute, execute_ok, run_ok, start_kernel, stream_text
from jupyter_client.blocking.client import BlockingKernelClient
from test_fd_output import kernel_with_terminal, wait_for_text

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def stderr_of(kc: BlockingKernelClient, code: str) -> str:
    return stream_text(execute_ok(kc, code), "stderr")


def test_logging_in_a_cell_reaches_the_cell(tmp_path: Path, backend: str) -> None:
    with kernel_with_terminal(tmp_path, f"--interface.backend={backend}") as (kc, terminal):
        # The root logger is the user's: basicConfig in a cell takes effect.
        configure = (
            "import logging\n"
            "logging.basicConfig(level=logging.INFO, format='%(levelname)s|%(name)s|%(message)s')\n"
            "logging.info('info-line')\n"
            "logging.getLogger('mylib').warning('lib-line')\n"
        )
        assert stderr_of(kc, configure) == "INFO|root|info-line\nWARNING|mylib|lib-line\n"
        # The kernel's log stays on the terminal, even with a handler on the root logger.
        assert (
            stderr_of(kc, "logging.getLogger('async_kernel.kernel').warning('kernel-line')") == ""
        )
        wait_for_text(terminal, "kernel-line")
        # Unconfigured, as a fresh ipykernel shows it: logging.error configures the root
        # logger on the cell's sys.stderr.
        unconfigured = "logging.getLogger().handlers.clear()\nlogging.error('error-line')"
        assert stderr_of(kc, unconfigured) == "ERROR:root:error-line\n"
        # IPython's %gui reports through logging.error.
        assert "nosuchgui" in stderr_of(kc, "%gui nosuchgui")
        assert "-line" not in stderr_of(kc, "print('x', end='')")  # nothing came late
        content = terminal.read_text(errors="replace")
        assert "info-line" not in content
        assert "error-line" not in content


def test_imports_follow_the_working_directory(tmp_path: Path) -> None:
    start, later = tmp_path / "start", tmp_path / "later"
    for folder, module in ((start, "in_start_dir"), (later, "in_later_dir")):
        folder.mkdir()
        (folder / f"{module}.py").write_text(f"WHERE = {folder.name!r}\n")
    with start_kernel(cwd=start) as (_, kc):
        assert run_ok(kc, "import in_start_dir\nprint(in_start_dir.WHERE)") == "start\n"
        code = f"%cd {later}\nimport in_later_dir\nprint(in_later_dir.WHERE)"
        assert run_ok(kc, code).endswith("later\n")
        # '' after the standard library: a user's file does not shadow it; the start
        # directory itself is no longer on the path.
        order = run_ok(kc, "import sys\nprint(sys.path.index(''))\nprint(sys.path)")
        index, path = order.splitlines()
        assert sysconfig.get_paths()["stdlib"] in eval(path)[: int(index)]
        assert str(start) not in path


def test_autoawait_names_the_kernels_backend(kc: BlockingKernelClient, backend: str) -> None:
    other = "trio" if backend == "asyncio" else "asyncio"
    assert run_ok(kc, "%autoawait") == f"IPython autoawait is `on`, and set to use `{backend}`\n"
    reply, _ = execute(kc, f"%autoawait {other}")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UsageError"
    for hint in ("%%trio", "%%asyncio", "--interface.backend"):
        assert hint in reply["content"]["evalue"]
    execute_ok(kc, f"%autoawait {backend}")
    execute_ok(kc, "%autoawait off")
    try:
        assert "`off`" in run_ok(kc, "%autoawait")
        reply, _ = execute(kc, "import anyio\nawait anyio.sleep(0)")
        assert reply["content"]["ename"] == "SyntaxError"
    finally:
        execute_ok(kc, "%autoawait on")
    assert run_ok(kc, "await anyio.sleep(0)\nprint('awaited')") == "awaited\n"


def late_error(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    """The ``error`` output published under cell ``msg_id``, after the cell has ended."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "error":
            return msg["content"]


def test_background_task_traceback_starts_in_user_code(
    kc: BlockingKernelClient, backend: str
) -> None:
    code = (
        "import anyio\n"
        "from async_kernel import Caller\n"
        "async def failing_task():\n"
        "    await anyio.sleep(0)\n"
        "    raise ValueError('background-boom')\n"
        "Caller.current().start_soon(failing_task)\n"
    )
    msg_id = kc.execute(code)
    error = late_error(kc, msg_id)
    assert error["evalue"] == "background-boom"
    traceback = ANSI.sub("", "\n".join(error["traceback"]))
    assert "background.py" not in traceback
    frames = [line for line in traceback.splitlines() if re.search(r", line \d+", line)]
    assert frames and "failing_task" in frames[0], traceback
