"""Protocol details a real client notices, where the kernel must answer as the spec (and
ipykernel) do: inspect's mime types, shutdown_reply on iopub."""

from __future__ import annotations

import time
from typing import Any

from conftest import (
    TIMEOUT,
    collect_outputs,
    execute_ok,
    shell_reply,
    start_kernel,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


def wait_until_gone(km: KernelManager) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while km.is_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- inspect ------------------------------------------------------------------------------
def test_inspect_sends_no_html_unless_the_html_pager_is_on(kc: BlockingKernelClient) -> None:
    def inspect_data() -> dict[str, Any]:
        reply = shell_reply(kc, kc.inspect("print", 5))["content"]
        assert reply["status"] == "ok" and reply["found"], reply
        return reply["data"]

    data = inspect_data()
    assert "text/plain" in data and "text/html" not in data
    execute_ok(kc, "get_ipython().enable_html_pager = True")
    try:
        assert "text/html" in inspect_data()
    finally:
        execute_ok(kc, "get_ipython().enable_html_pager = False")


# -- shutdown -----------------------------------------------------------------------------
def test_shutdown_reply_is_also_published_on_iopub(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (km, kc):
        msg_id = kc.shutdown(restart=True)
        reply = kc.get_control_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        published = [m for m in collect_outputs(kc, msg_id) if m["msg_type"] == "shutdown_reply"]
        assert len(published) == 1
        assert published[0]["content"] == {"status": "ok", "restart": True}
        assert wait_until_gone(km)
