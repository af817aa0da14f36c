"""An interrupt that lands in code Python runs on the side of a cell (a ``__del__``, a gc
callback), where exceptions are swallowed, is delivered again: the cell still ends with
KeyboardInterrupt, and nothing is printed as "Exception ignored" (async_exceptions.py).

Each cell makes its first side run wait for the interrupt, so the interrupt lands there for
certain; without redelivery the cell runs on to its end and returns "ran on".
"""

from __future__ import annotations

import pytest
from conftest import TIMEOUT, collect_outputs, shell_reply, stream_text, wait_for_stream
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

RUN_ON = 20  # seconds the cell goes on if the interrupt is lost (more than any wait below)

SIDE = """
import gc, time
first = [True]

def side_run(*args):
    if first[0]:
        first[0] = False
        if side_run in gc.callbacks:
            gc.callbacks.remove(side_run)  # (here: the interrupt may end the cell before)
        print("on the side", flush=True)
        waited = time.monotonic()
        while time.monotonic() - waited < {run_on}:  # the interrupt lands here
            pass

class Finalized:
    def __del__(self):
        side_run()
"""

TRIGGER = {
    "__del__": "Finalized()",
    "gc callback": "gc.callbacks.append(side_run); gc.collect()",
}

CELL = """{prefix}
{trigger}
ends = time.monotonic() + {run_on}
while time.monotonic() < ends:
    time.sleep(0.01)
"ran on"
"""


@pytest.mark.parametrize("where", ["__del__", "gc callback"])
@pytest.mark.parametrize("thread", ["main", "# thread"])
def test_an_interrupt_swallowed_on_the_side_of_a_cell_is_delivered_again(
    kernel: tuple[KernelManager, BlockingKernelClient], where: str, thread: str
) -> None:
    km, kc = kernel
    setup = kc.execute(SIDE.format(run_on=RUN_ON))
    assert shell_reply(kc, setup)["content"]["status"] == "ok"
    prefix = "# thread" if thread == "# thread" else ""
    cell = CELL.format(prefix=prefix, trigger=TRIGGER[where], run_on=RUN_ON)
    msg_id = kc.execute(cell)
    wait_for_stream(kc, msg_id, "on the side")
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=RUN_ON / 2)  # lost: the cell ran on past this
    outputs = collect_outputs(kc, msg_id)
    assert reply["content"]["status"] == "error", reply["content"]
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert "Exception ignored" not in stream_text(outputs, "stderr")
    after = kc.execute("assert side_run not in gc.callbacks")
    assert shell_reply(kc, after, timeout=TIMEOUT)["content"]["status"] == "ok"
