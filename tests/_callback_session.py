"""A host of the callback interface: runs one session and prints what it saw as JSON.

Run in its own process by tests/test_callback_interface.py (the kernel installs process-wide
hooks: sys.stdout, the IPython singleton, comm's manager).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import anyio

from async_kernel.kernel.callback import CallbackKernel

STEP_TIMEOUT = 10.0


def make(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "session": "host",
        "username": "host",
        "date": "2025-01-01T00:00:00Z",
        "version": "5.5",
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


async def session(backend: str) -> dict[str, Any]:  # noqa: PLR0915 - one scripted host
    seen: list[tuple[str, dict[str, Any]]] = []
    results: dict[str, Any] = {}

    def on_message(channel: str, msg: dict[str, Any]) -> None:
        json.dumps({k: v for k, v in msg.items() if k != "buffers"})  # JSON-ready
        seen.append((channel, msg))
        if channel == "stdin" and msg["msg_type"] == "input_request":
            # Answered from inside the callback: the only way a one-thread host can.
            reply = make("input_reply", {"value": "from host"})
            reply["parent_header"] = msg["header"]
            kernel.receive(json.dumps(reply), "stdin")

    kernel = CallbackKernel(on_message, backend=backend)

    def of(msg_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(c, m) for c, m in seen if m["parent_header"].get("msg_id") == msg_id]

    async def wait_for(predicate: Any) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out; seen {[m['msg_type'] for _, m in seen][-20:]}")
            await anyio.sleep(0.005)

    def finished(msg_id: str, replies: bool = True) -> bool:
        mine = of(msg_id)
        return (not replies or any(c != "iopub" for c, _ in mine)) and any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for _, m in mine
        )

    async def request(channel: str, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        msg = make(msg_type, content)
        kernel.receive(msg, channel)
        replies = msg_type.endswith("_request")
        await wait_for(lambda: finished(msg["header"]["msg_id"], replies))
        mine = of(msg["header"]["msg_id"])
        reply = next((m for c, m in mine if c != "iopub"), {"content": None})
        return {
            "reply": reply["content"],
            "channel": next((c for c, _ in mine if c != "iopub"), None),
            "iopub": [(m["msg_type"], m["content"]) for c, m in mine if c == "iopub"],
        }

    async def interrupt_awaiting_cell(how: str) -> None:
        cell = make("execute_request", {"code": "import anyio\nawait anyio.sleep(30)"})
        cell_id = cell["header"]["msg_id"]
        kernel.receive(cell)
        await wait_for(lambda: any(m["msg_type"] == "execute_input" for _, m in of(cell_id)))
        await anyio.sleep(0.05)
        if how == "interface":
            kernel.interrupt()
        else:
            results["interrupt_reply"] = (await request("control", how, {}))["reply"]
        await wait_for(lambda: finished(cell_id))
        results[f"cancelled_by_{how}"] = next(m["content"] for c, m in of(cell_id) if c == "shell")

    async def host() -> None:
        results["kernel_info"] = await request("shell", "kernel_info_request", {})
        results["print"] = await request(
            "shell", "execute_request", {"code": "print('hello'); 6 * 7", "silent": False}
        )
        results["input"] = await request(
            "shell", "execute_request", {"code": "print(input('? '))", "allow_stdin": True}
        )
        await request(
            "shell",
            "execute_request",
            {
                "code": (
                    "from comm import get_comm_manager\n"
                    "def target(comm, msg):\n"
                    "    comm.on_msg(lambda m: comm.send({'echo': m['content']['data']}))\n"
                    "get_comm_manager().register_target('echo', target)\n"
                )
            },
        )
        await request("shell", "comm_open", {"comm_id": "c1", "target_name": "echo", "data": {}})
        results["comm"] = await request("shell", "comm_msg", {"comm_id": "c1", "data": {"x": 1}})
        results["complete"] = await request(
            "shell", "complete_request", {"code": "import o", "cursor_pos": 8}
        )
        for how in ("interrupt_request", "interface"):
            await interrupt_awaiting_cell(how)
        results["shutdown"] = await request("control", "shutdown_request", {"restart": False})

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(host)
            await kernel.run()
    results["zmq_imported"] = any(m.split(".")[0] == "zmq" for m in sys.modules)
    return results


if __name__ == "__main__":
    backend = sys.argv[1]
    found = anyio.run(session, backend, backend=backend)
    sys.__stdout__.write(json.dumps(found) + "\n")
