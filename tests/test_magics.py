"""The kernel's magics over a real kernel: the toolkit's (%callers, %%thread, %%trio,
%%asyncio, %task) and those a front end stands in for (%autosave, %connect_info, ...)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import execute, execute_ok, run_ok, shell_reply, stream_text, wait_for_stream
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def result_of(outputs: list[dict[str, Any]]) -> str | None:
    for msg in outputs:
        if msg["msg_type"] == "execute_result":
            return str(msg["content"]["data"]["text/plain"])
    return None


def test_thread_magic_runs_the_cell_on_a_named_caller(
    kc: BlockingKernelClient, backend: str
) -> None:
    outputs = execute_ok(
        kc,
        f"%%thread name=magic-worker backend={backend}\n"
        "import threading, sniffio, anyio\n"
        "await anyio.sleep(0.001)\n"
        "print(threading.current_thread().name, sniffio.current_async_library())\n"
        "answer = 40 + 2\n"
        "answer",
    )
    assert stream_text(outputs) == f"async-kernel-magic-worker {backend}\n"
    assert result_of(outputs) == "42"
    assert run_ok(kc, "print(answer)") == "42\n"  # the user's namespace
    listing = run_ok(kc, "%callers")
    assert "magic-worker" in listing and "shell" in listing and "to_thread workers" in listing


def test_thread_magic_errors_show_as_the_cells(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "%%thread\nraise ValueError('on the thread')")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "ValueError"
    assert any(m["msg_type"] == "error" for m in outputs)
    reply, _ = execute(kc, "%%thread colour=blue\npass")
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "UsageError"


def test_backend_magics_run_on_either_backend(kc: BlockingKernelClient, backend: str) -> None:
    for wanted in ("trio", "asyncio"):
        outputs = execute_ok(
            kc,
            f"%%{wanted}\n"
            "import sniffio, anyio, threading\n"
            "await anyio.sleep(0.001)\n"
            "(sniffio.current_async_library(), threading.current_thread().name)",
        )
        assert result_of(outputs) == f"('{wanted}', 'MainThread')"
    assert run_ok(kc, "import sniffio; print(sniffio.current_async_library())") == f"{backend}\n"


def test_task_magic_lists_and_cancels_background_tasks(kc: BlockingKernelClient) -> None:
    execute_ok(
        kc,
        "import anyio\n"
        "from async_kernel import Caller\n"
        "async def ticking():\n"
        "    try:\n"
        "        await anyio.sleep(60)\n"
        "    finally:\n"
        "        print('ticking ended')\n"
        "Caller.current().start_soon(ticking)",
    )
    listing = run_ok(kc, "%task")
    assert "ticking" in listing, listing
    task_id = listing.split()[0]
    assert run_ok(kc, f"%task cancel {task_id}").startswith(f"cancelled task {task_id}")
    assert run_ok(kc, "await anyio.sleep(0.05)\n%task") == "no background tasks running\n"


def test_interrupt_cancels_a_thread_cell(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = kernel
    msg_id = kc.execute(
        "%%thread name=interrupted\n"
        "import anyio\n"
        "try:\n"
        "    print('waiting', flush=True)\n"
        "    await anyio.sleep(60)\n"
        "finally:\n"
        "    print('thread cell cancelled', flush=True)\n"
    )
    wait_for_stream(kc, msg_id, "waiting")
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert run_ok(kc, "print('alive')") == "alive\n"


def usage_error(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code``, insist it fails with a UsageError (no traceback); the error's text."""
    reply, outputs = execute(kc, code)
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "UsageError", content
    assert not any(m["msg_type"] == "error" for m in outputs)  # a message, not a traceback
    return str(content["evalue"])


def page_of(reply: dict[str, Any]) -> str:
    """The text of the ``page`` payload on an execute_reply."""
    pages = [p for p in reply["content"]["payload"] if p["source"] == "page"]
    assert len(pages) == 1, reply["content"]
    return re.sub(r"\x1b\[[0-9;]*m", "", pages[0]["data"]["text/plain"])


def test_autosave_is_accepted_and_left_to_the_front_end(kc: BlockingKernelClient) -> None:
    assert "handled by the front end" in run_ok(kc, "%autosave 10")
    assert run_ok(kc, "%autosave 0\n%autosave") == ""  # the note comes once
    assert "requires an integer" in usage_error(kc, "%autosave ten")


def test_connect_info_prints_the_connection_file(kc: BlockingKernelClient) -> None:
    text = run_ok(kc, "%connect_info")
    info = json.loads(text[: text.index("\n}\n") + 2])
    msg = kc.session.msg("connect_request", {})
    kc.shell_channel.send(msg)
    ports = shell_reply(kc, msg["header"]["msg_id"])["content"]
    assert info["shell_port"] == ports["shell_port"] == kc.shell_port
    assert info["key"] == kc.session.key.decode()
    assert info["transport"] == "tcp" and info["signature_scheme"] == "hmac-sha256"
    assert "jupyter console --existing" in text
    assert Path(kc.connection_file).name in text


def test_less_and_more_page_a_file(kc: BlockingKernelClient, tmp_path: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_text("first line\nsecond line\n")
    script = tmp_path / "script.py"
    script.write_text("answer = 42\n")
    for magic, path, expected in (
        ("less", plain, "first line\nsecond line"),
        ("more", script, "answer = 42"),
    ):
        reply, _ = execute(kc, f"%{magic} {path}")
        assert reply["content"]["status"] == "ok", reply["content"]
        assert expected in page_of(reply)
    assert "needs a file name" in usage_error(kc, "%less")
    assert "cannot read" in usage_error(kc, f"%less {tmp_path / 'missing.txt'}")


def test_man_pages_the_manual_or_says_why_not(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "%man ls")
    content = reply["content"]
    if content["status"] == "ok":
        assert "ls" in page_of(reply)
    else:  # no man command, or no manual installed (a slim image)
        assert content["ename"] == "UsageError", content
        assert shutil.which("man") is None or "ls" in content["evalue"], content


def test_clear_clears_the_output(kc: BlockingKernelClient) -> None:
    outputs = execute_ok(kc, "print('before')\n%clear\nprint('after')")
    kinds = [m["msg_type"] for m in outputs if m["msg_type"] in ("stream", "clear_output")]
    assert kinds == ["stream", "clear_output", "stream"]
    assert stream_text(outputs) == "before\nafter\n"


def test_qtconsole_without_qtconsole_says_so(kc: BlockingKernelClient) -> None:
    if importlib.util.find_spec("qtconsole") is not None:  # the kernel's environment too
        pytest.skip("qtconsole is installed: %qtconsole would open a window")
    assert usage_error(kc, "%qtconsole").startswith("%qtconsole needs the qtconsole package")


def test_edit_says_to_use_the_front_end(kc: BlockingKernelClient) -> None:
    for code in ("%edit x.py", "%ed x.py", "%edit"):
        assert usage_error(kc, code) == (
            "%edit needs a terminal editor; open the file in the front end"
        )
