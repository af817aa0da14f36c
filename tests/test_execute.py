"""Execution through a real kernel: ordering of messages, counts, errors, output."""

from __future__ import annotations

import base64
import re

from conftest import TIMEOUT, collect_outputs, execute, shell_reply, stream_text
from jupyter_client.blocking.client import BlockingKernelClient


def types(outputs: list[dict]) -> list[str]:
    return [m["msg_type"] for m in outputs]


def test_status_order_and_result(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "print('hello')\n6 * 7")
    assert reply["content"]["status"] == "ok"
    assert types(outputs) == ["status", "execute_input", "stream", "execute_result", "status"]
    assert outputs[0]["content"]["execution_state"] == "busy"
    assert outputs[-1]["content"]["execution_state"] == "idle"
    assert stream_text(outputs) == "hello\n"
    result = outputs[3]["content"]
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == reply["content"]["execution_count"]


def test_execution_count_increments_and_silent_does_not(kc: BlockingKernelClient) -> None:
    first, _ = execute(kc, "x = 1")
    second, _ = execute(kc, "x += 1")
    assert second["content"]["execution_count"] == first["content"]["execution_count"] + 1
    silent, outputs = execute(kc, "x += 1", silent=True)
    assert "execute_input" not in types(outputs)
    third, _ = execute(kc, "x")
    assert third["content"]["execution_count"] == second["content"]["execution_count"] + 1
    assert silent["content"]["status"] == "ok"


def test_store_history_false_keeps_count(kc: BlockingKernelClient) -> None:
    before, _ = execute(kc, "1")
    execute(kc, "2", store_history=False)
    after, _ = execute(kc, "3")
    assert after["content"]["execution_count"] == before["content"]["execution_count"] + 1


def test_user_expressions(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "a = 3", user_expressions={"double": "a * 2", "bad": "1/0"})
    exprs = reply["content"]["user_expressions"]
    assert exprs["double"]["status"] == "ok"
    assert exprs["double"]["data"]["text/plain"] == "6"
    assert exprs["bad"]["status"] == "error"
    assert exprs["bad"]["ename"] == "ZeroDivisionError"


def test_error_reply_and_iopub_error(kc: BlockingKernelClient) -> None:
    reply, outputs = execute(kc, "1 / 0")
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "ZeroDivisionError"
    assert content["traceback"]
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["content"]["ename"] == "ZeroDivisionError"


def test_syntax_error(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "def (:")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SyntaxError"


def test_stop_on_error_aborts_queued_executes(kc: BlockingKernelClient) -> None:
    failing = kc.execute("import time; time.sleep(0.3); 1/0")
    queued = [kc.execute("print('must not run')") for _ in range(3)]
    assert shell_reply(kc, failing)["content"]["status"] == "error"
    for msg_id in queued:
        assert shell_reply(kc, msg_id)["content"]["status"] == "aborted"
    reply, _ = execute(kc, "'still alive'")
    assert reply["content"]["status"] == "ok"


def test_stop_on_error_false_runs_queued(kc: BlockingKernelClient) -> None:
    failing = kc.execute("import time; time.sleep(0.2); 1/0", stop_on_error=False)
    queued = kc.execute("'runs'")
    assert shell_reply(kc, failing)["content"]["status"] == "error"
    assert shell_reply(kc, queued)["content"]["status"] == "ok"


def test_display_update_and_clear(kc: BlockingKernelClient) -> None:
    code = (
        "from IPython.display import display, clear_output\n"
        "h = display('first', display_id='d1')\n"
        "h.update('second')\n"
        "clear_output(wait=True)\n"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    kinds = types(outputs)
    assert kinds.count("display_data") == 1
    assert kinds.count("update_display_data") == 1
    assert kinds.count("clear_output") == 1
    update = next(m for m in outputs if m["msg_type"] == "update_display_data")
    assert update["content"]["transient"]["display_id"] == "d1"
    assert update["content"]["data"]["text/plain"] == "'second'"


def test_rich_display_png(kc: BlockingKernelClient) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 16).decode()
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode('{png}'), format='png'))"
    )
    _, outputs = execute(kc, code)
    data = next(m for m in outputs if m["msg_type"] == "display_data")["content"]["data"]
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")


def test_stderr_stream(kc: BlockingKernelClient) -> None:
    _, outputs = execute(kc, "import sys; print('oops', file=sys.stderr)")
    assert stream_text(outputs, "stderr") == "oops\n"


def test_hundred_thousand_lines_in_order(kc: BlockingKernelClient) -> None:
    n = 100_000
    msg_id = kc.execute(f"for i in range({n}): print(i)")
    outputs = collect_outputs(kc, msg_id, timeout=60)
    text = stream_text(outputs)
    lines = text.splitlines()
    assert len(lines) == n
    assert lines == [str(i) for i in range(n)]
    streams = [m for m in outputs if m["msg_type"] == "stream"]
    assert len(streams) < n // 100, "output must be batched"
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


def test_thread_output_after_its_cell_ended_goes_to_the_running_cell(
    kc: BlockingKernelClient,
) -> None:
    """A thread the first cell started prints while the second cell runs: under the second,
    the one the client is reading (nbclient and VS Code keep no other); see
    test_thread_output_parent.py for the whole rule."""
    code = (
        "import threading, time\n"
        "ev = threading.Event()\n"
        "def later():\n"
        "    ev.wait(5)\n"
        "    print('from thread')\n"
        "threading.Thread(target=later).start()\n"
    )
    first = kc.execute(code)
    assert shell_reply(kc, first)["content"]["status"] == "ok"
    collect_outputs(kc, first)
    second = kc.execute("ev.set(); time.sleep(0.3)")
    shell_reply(kc, second)
    got: dict[str, str] = {}
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "stream":
            got[msg["parent_header"]["msg_id"]] = msg["content"]["text"]
        is_status = msg["parent_header"].get("msg_id") == second and msg["msg_type"] == "status"
        if is_status and msg["content"]["execution_state"] == "idle":
            break
    assert got.get(second) == "from thread\n"
    assert first not in got


def test_payload_set_next_input(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "get_ipython().set_next_input('next cell')")
    payload = reply["content"]["payload"]
    assert payload == [{"source": "set_next_input", "text": "next cell", "replace": False}]


def test_top_level_await_uses_backend(kc: BlockingKernelClient, backend: str) -> None:
    code = (
        "import sniffio, anyio\nawait anyio.sleep(0.01)\nsniffio.current_async_library()"
        if backend == "asyncio"
        else "import trio, sniffio\nawait trio.sleep(0.01)\nsniffio.current_async_library()"
    )
    reply, outputs = execute(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    result = next(m for m in outputs if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == repr(backend)


def test_traceback_starts_at_the_users_code(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "def broken():\n    1 / 0\nbroken()")
    # Without colours: Python 3.12+ underlines the failing call inside the line.
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(reply["content"]["traceback"]))
    assert "skipping hidden" not in text
    assert "async_kernel" not in text
    assert "broken()" in text


def test_notebook_detection_sees_a_kernel(kc: BlockingKernelClient) -> None:
    _, outputs = execute(kc, "'IPKernelApp' in get_ipython().config")
    result = next(m for m in outputs if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "True"


def test_pooled_thread_output_goes_to_the_submitting_cell(kc: BlockingKernelClient) -> None:
    first, _ = execute(
        kc,
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(1)\n"
        "pool.submit(print, 'from A').result()",
    )
    assert first["content"]["status"] == "ok"
    msg_id = kc.execute("pool.submit(print, 'from B').result()")
    outputs = collect_outputs(kc, msg_id)
    assert stream_text(outputs) == "from B\n"


def test_output_before_idle_even_if_the_cell_replaces_stdout(kc: BlockingKernelClient) -> None:
    code = "import io, sys\nsaved = sys.stdout\nprint('before')\nsys.stdout = io.StringIO()"
    try:
        _, outputs = execute(kc, code)
        assert stream_text(outputs) == "before\n", "the kernel flushes its own stream"
    finally:
        execute(kc, "sys.stdout = saved")
