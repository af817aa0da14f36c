"""The toolkit's magics over a real kernel: %callers, %%thread, %%trio, %%asyncio, %task."""

from __future__ import annotations

from typing import Any

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
