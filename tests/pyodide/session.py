# Runs inside Pyodide: install the wheels, then one cell through the callback interface.
import glob
import json
import site
import sys
import zipfile

target = site.getsitepackages()[0]
for wheel in glob.glob("/wheels/*.whl"):
    zipfile.ZipFile(wheel).extractall(target)
sys.path[:0] = ["/src", "/shims"]

import asyncio  # noqa: E402

from async_kernel.kernel.callback import CallbackKernel  # noqa: E402

seen = []
kernel = CallbackKernel(lambda channel, msg: seen.append((channel, msg)))


def request(msg_type, content, msg_id):
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "session": "node",
        "username": "node",
        "date": "2025-01-01T00:00:00Z",
        "version": "5.5",
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


async def main():
    run = asyncio.ensure_future(kernel.run())
    kernel.receive(
        request("execute_request", {"code": "import sys\nprint(sys.platform, 6 * 7)"}, "e1")
    )
    for _ in range(1000):
        if any(m["msg_type"] == "execute_reply" for _, m in seen):
            break
        await asyncio.sleep(0.01)
    kernel.receive(request("shutdown_request", {}, "s1"), "control")
    await asyncio.wait_for(run, 10)
    return json.dumps(
        {
            "platform": sys.platform,
            "messages": [
                [c, m["msg_type"], m["content"]]
                for c, m in seen
                if m["parent_header"].get("msg_id") == "e1"
            ],
            "zmq": "zmq" in sys.modules,
        }
    )


await main()  # noqa: F704, PLE1142 - runPythonAsync allows top-level await
