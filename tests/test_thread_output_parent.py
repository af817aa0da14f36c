"""Which cell a thread's output goes to, when the thread has no request of its own.

Why: nbclient (papermill, ``jupyter execute``) and VS Code keep only the output whose parent
is the cell they run.  A pool or queue worker an earlier cell started, printing for the cell
now running, must be stamped with that cell (as ipykernel does), or its output is lost; a
thread that no cell started (a library's, started at import) must not be sent parentless.
Yet a thread still goes to the cell that started it while that cell runs, also when a later
cell runs concurrently on a subshell (concurrent cells do not take each other's output).
Each test learns the parent of a line of output; which thread prints when is set by events
and files, never by sleeping.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import TIMEOUT, execute_ok, shell_replies, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient
from test_subshells import control, create_subshell, execute_in


def texts_until_idle(kc: BlockingKernelClient, msg_id: str) -> dict[str, str]:
    """The stdout sent until cell ``msg_id`` is idle, by parent msg_id ('' for none).

    Lines of threads printing at once may interleave (``print`` is two writes): tests look
    for words in a parent's text, not for whole lines."""
    texts: dict[str, str] = {}
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        parent = str(msg["parent_header"].get("msg_id", ""))
        if msg["msg_type"] == "stream":
            texts[parent] = texts.get(parent, "") + msg["content"]["text"]
        elif parent == msg_id and msg["content"].get("execution_state") == "idle":
            return texts


def parent_of(kc: BlockingKernelClient, text: str) -> str:
    """The parent's msg_id ('' for none) of the stdout that holds ``text``, when it comes."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["msg_type"] == "stream" and text in msg["content"]["text"]:
            return str(msg["parent_header"].get("msg_id", ""))


def run_cell(kc: BlockingKernelClient, code: str) -> str:
    """Send ``code`` to the main shell; its msg_id."""
    return execute_in(kc, None, code)


def test_thread_pool_workers_print_under_the_running_cell(kc: BlockingKernelClient) -> None:
    execute_ok(kc, "from multiprocessing.pool import ThreadPool\npool = ThreadPool(2)\n")
    cell = run_cell(kc, "pool.map(print, ['job1', 'job2'])\nprint('cell 2 done')\n")
    texts = texts_until_idle(kc, cell)
    assert shell_reply(kc, cell)["content"]["status"] == "ok"
    execute_ok(kc, "pool.terminate()")
    assert list(texts) == [cell], texts
    assert all(word in texts[cell] for word in ("job1", "job2", "cell 2 done")), texts


def test_queue_worker_prints_under_the_cell_that_feeds_it(kc: BlockingKernelClient) -> None:
    execute_ok(
        kc,
        "import queue, threading\n"
        "jobs = queue.Queue()\n"
        "def work():\n"
        "    while (item := jobs.get()) is not None:\n"
        "        print(item)\n"
        "        jobs.task_done()\n"
        "worker = threading.Thread(target=work, daemon=True)\n"
        "worker.start()\n",
    )
    cell = run_cell(kc, "jobs.put('fed by cell 4')\njobs.join()\nprint('cell 4 done')\n")
    texts = texts_until_idle(kc, cell)
    assert shell_reply(kc, cell)["content"]["status"] == "ok"
    execute_ok(kc, "jobs.put(None)\nworker.join(10)")
    assert texts == {cell: "fed by cell 4\ncell 4 done\n"}, texts


def test_thread_prints_under_its_running_cell_while_a_later_cell_runs(
    kc: BlockingKernelClient,
) -> None:
    sid = create_subshell(kc)
    try:
        # The thread prints once the later cell (on the subshell) runs; both cells wait for
        # it, so both run when it prints.
        first = run_cell(
            kc,
            "import threading\n"
            "go = threading.Event()\n"
            "mine = threading.Thread(target=lambda: go.wait(10) and print('own cell'))\n"
            "mine.start()\n"
            "print('first running')\n"
            "mine.join(10)\n",
        )
        assert parent_of(kc, "first running") == first
        later = execute_in(kc, sid, "go.set()\nmine.join(10)\nprint('later done')\n")
        texts = texts_until_idle(kc, later)  # the thread's print is flushed by then
        assert texts == {first: "own cell\n", later: "later done\n"}, texts
        replies = shell_replies(kc, [first, later])  # in whatever order they come
        assert all(reply["content"]["status"] == "ok" for reply in replies.values())
    finally:
        control(kc, "delete_subshell_request", subshell_id=sid)


def test_thread_prints_under_its_finished_cell_while_nothing_runs(
    kc: BlockingKernelClient, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    cell = run_cell(
        kc,
        "import os, threading, time\n"
        "def late():\n"
        "    deadline = time.monotonic() + 10\n"
        f"    while not os.path.exists({str(flag)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    print('after its cell')\n"
        "threading.Thread(target=late, daemon=True).start()\n",
    )
    texts_until_idle(kc, cell)
    assert shell_reply(kc, cell)["content"]["status"] == "ok"
    flag.touch()
    assert parent_of(kc, "after its cell") == cell


def test_thread_no_cell_started_prints_under_the_running_then_the_latest_cell(
    kc: BlockingKernelClient, tmp_path: Path
) -> None:
    # As a library's thread started at import during start-up: in a context with no request.
    flag = tmp_path / "go"
    execute_ok(
        kc,
        "import contextvars, os, queue, threading, time\n"
        "lines = queue.Queue()\n"
        "def echo():\n"
        "    print(lines.get())\n"
        "    lines.task_done()\n"
        "    deadline = time.monotonic() + 10\n"
        f"    while not os.path.exists({str(flag)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    print('while nothing runs')\n"
        "contextvars.Context().run(threading.Thread(target=echo, daemon=True).start)\n",
    )
    cell = run_cell(kc, "lines.put('while a cell runs')\nlines.join()\n")
    texts = texts_until_idle(kc, cell)
    assert shell_reply(kc, cell)["content"]["status"] == "ok"
    assert texts == {cell: "while a cell runs\n"}, texts
    flag.touch()  # no cell runs now: the cell started last gets it
    assert parent_of(kc, "while nothing runs") == cell
