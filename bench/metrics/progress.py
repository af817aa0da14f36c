"""Progress bar: one cell drives a ``tqdm.auto`` bar through N updates; time to idle.

Every update is sent (``mininterval=0, miniters=1``): the worst case for a kernel's comm
path, where a real bar sends one update per 0.1 s.  The bar must be the widget bar (tqdm's
notebook mode) on every kernel, or the comparison would be text against widgets.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import Config
    from bench.session import KernelSession, Msg
    from bench.stats import Value


def measure(s: KernelSession, cfg: Config, timeout: float = 120.0) -> dict[str, Value]:
    n = cfg.progress_updates
    setup = s.execute_request(
        "import warnings\nwarnings.simplefilter('ignore')\n"
        "from tqdm.auto import tqdm\nfrom tqdm.notebook import tqdm_notebook\n"
        "print(issubclass(tqdm, tqdm_notebook))"
    )
    shown: list[str] = []

    def collect_setup(msg: Msg) -> None:
        if msg["msg_type"] == "stream":
            shown.append(msg["content"]["text"])

    s.wait_idle(setup, timeout, on_msg=collect_setup)
    s.reply(setup)
    updates = 0

    def count(msg: Msg) -> None:
        nonlocal updates
        if msg["msg_type"] == "comm_msg":
            updates += 1

    t0 = time.perf_counter()
    msg_id = s.execute_request(f"for _ in tqdm(range({n}), mininterval=0, miniters=1):\n    pass")
    s.wait_idle(msg_id, timeout, on_msg=count)
    elapsed = time.perf_counter() - t0
    s.reply(msg_id)
    return {
        "progress_s": elapsed,
        "progress_widget": "".join(shown).strip() == "True" and updates >= n,
    }
