"""Kernels whose host loop is Tk or Qt, end to end through jupyter_client.

Why: the host loop is chosen at start-up and owns the main thread, so everything a
client can do (execute, await, control, interrupt, shutdown, figure windows) must be
checked against a real kernel process of each host x backend combination.  Each
combination is one kernel for the whole module, started from the kernel spec that
``async-kernel -a`` wrote into a temporary prefix, under a private Xvfb display
(Qt then uses its real X11 platform plugin, as on a desktop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _xvfb import xvfb_display
from conftest import (
    TIMEOUT,
    collect_outputs,
    execute,
    run_ok,
    shell_replies,
    shell_reply,
    wait_for_stream,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

pytestmark = pytest.mark.gui

COMBINATIONS = [("tk", "asyncio"), ("tk", "trio"), ("qt", "asyncio"), ("qt", "trio")]
ARTIFACTS = Path(__file__).parent / "artifacts"

Kernel = tuple[KernelManager, BlockingKernelClient, str, str]


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb_display() as name:
        yield name


def write_spec(prefix: Path, loop: str, backend: str) -> str:
    """Run ``async-kernel -a`` as a user would; returns the spec's name."""
    name = f"async-{loop}" + ("-trio" if backend == "trio" else "")
    args = ["-a", name, f"--interface.loop={loop}", f"--prefix={prefix}"]
    if backend == "trio":
        args.append("--interface.backend=trio")
    done = subprocess.run(
        [sys.executable, "-m", "async_kernel", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return name


@pytest.fixture(scope="module", params=COMBINATIONS, ids="-".join)
def gui_kernel(
    request: pytest.FixtureRequest, display: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kernel]:
    loop, backend = request.param
    prefix = tmp_path_factory.mktemp(f"prefix-{loop}-{backend}")
    name = write_spec(prefix, loop, backend)
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    env = {**os.environ, "DISPLAY": display}
    env.pop("QT_QPA_PLATFORM", None)  # Qt on the X server, like a desktop
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield km, kc, loop, backend
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
        else:  # shut down by a test: still close the manager's sockets and context
            km.cleanup_resources()


@pytest.fixture
def gk(gui_kernel: Kernel) -> Kernel:
    kc = gui_kernel[1]
    if not gui_kernel[0].is_alive():
        pytest.fail("the kernel of this combination has exited")
    for channel in (kc.iopub_channel, kc.shell_channel, kc.control_channel):
        while channel.msg_ready():
            channel.get_msg(timeout=0.01)
    return gui_kernel


def test_spec_and_host(gk: Kernel, tmp_path: Path) -> None:
    km, kc, loop, backend = gk
    spec = km.kernel_spec
    assert spec is not None
    assert f"--interface.loop={loop}" in spec.argv
    assert spec.argv[0] == sys.executable
    assert ("--interface.backend=trio" in spec.argv) == (backend == "trio")
    out = run_ok(
        kc,
        "from async_kernel.gui_hosts import current_host, tk_root, qt_app\n"
        "import sniffio\n"
        "print(current_host(), (tk_root() or qt_app()) is not None, "
        "sniffio.current_async_library())",
    )
    assert out.split() == [loop, "True", backend]


def test_execute_and_await(gk: Kernel) -> None:
    _, kc, _, backend = gk
    native = "trio.sleep" if backend == "trio" else "asyncio.sleep"
    out = run_ok(
        kc,
        f"import anyio, asyncio, trio\nawait anyio.sleep(0.01)\nawait {native}(0.01)\n"
        "print(sum(range(10)))",
    )
    assert out == "45\n"


TIMER = """
from async_kernel.gui_hosts import current_host, tk_root
ticks = []
ticking = True
if current_host() == "tk":
    root = tk_root()
    def _tick():
        ticks.append(1)
        if ticking:
            root.after(10, _tick)
    root.after(10, _tick)
else:
    from PySide6.QtCore import QTimer
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
"""


def test_host_timer_fires_while_awaiting_and_idle(gk: Kernel) -> None:
    kc = gk[1]
    run_ok(kc, TIMER)
    # While a cell awaits: the cell waits (bounded) until the host has ticked 5 times.
    waited = run_ok(
        kc,
        "n = len(ticks)\nfor _ in range(1000):\n    if len(ticks) - n >= 5:\n        break\n"
        "    await anyio.sleep(0.01)\nprint(len(ticks) - n >= 5)",
    )
    assert waited == "True\n"
    # While idle: only the host loop can run the timer between these short cells.
    run_ok(kc, "n_idle = len(ticks)")
    deadline = time.monotonic() + TIMEOUT
    while int(run_ok(kc, "print(len(ticks) - n_idle)")) < 5:
        assert time.monotonic() < deadline, "the host's timer did not fire while idle"
        time.sleep(0.05)
    run_ok(kc, "ticking = False\nif current_host() == 'qt':\n    timer.stop()")


def test_control_answers_while_cell_blocks(gk: Kernel) -> None:
    km, kc, _, _ = gk
    msg_id = kc.execute("import time\nprint('blocking', flush=True)\ntime.sleep(60)")
    wait_for_stream(kc, msg_id, "blocking")
    kc.control_channel.send(kc.session.msg("kernel_info_request"))
    reply = kc.control_channel.get_msg(timeout=TIMEOUT)
    assert reply["msg_type"] == "kernel_info_reply"
    assert not kc.shell_channel.msg_ready(), "answered only after the cell ended"
    km.interrupt_kernel()
    assert shell_reply(kc, msg_id)["content"]["ename"] == "KeyboardInterrupt"
    collect_outputs(kc, msg_id)


def test_shell_asks_answered_while_cell_blocks(gk: Kernel) -> None:
    """Never deaf on a GUI host too: the host's thread is blocked, the responder answers."""
    km, kc, _, _ = gk
    code = "name_before_block = 1\nimport time\nprint('blocking', flush=True)\ntime.sleep(60)"
    msg_id = kc.execute(code)
    wait_for_stream(kc, msg_id, "blocking")
    asks = {
        "kernel_info": kc.kernel_info(),
        "complete": kc.complete("name_before_bl", 14),
        "inspect": kc.inspect("name_before_block", 17),
        "history": kc.history(hist_access_type="tail", n=1),
    }
    replies = shell_replies(kc, list(asks.values()))
    assert not kc.shell_channel.msg_ready(), "the blocked cell ended early"
    assert replies[asks["kernel_info"]]["content"]["status"] == "ok"
    assert "name_before_block" in replies[asks["complete"]]["content"]["matches"]
    assert replies[asks["inspect"]]["content"]["found"]
    assert replies[asks["history"]]["content"]["history"][-1][2] == code
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect_outputs(kc, msg_id)


@pytest.mark.parametrize(
    "code",
    [
        "import time\nprint('go', flush=True)\ntime.sleep(10)",
        "import anyio\nprint('go', flush=True)\nawait anyio.sleep(10)",
    ],
    ids=["blocking", "awaiting"],
)
def test_interrupt(gk: Kernel, code: str) -> None:
    km, kc, _, _ = gk
    msg_id = kc.execute(code)
    wait_for_stream(kc, msg_id, "go")
    started = time.monotonic()
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)
    took = time.monotonic() - started
    assert reply["content"]["status"] == "error", (took, reply["content"])
    assert took < 5, f"the interrupt took {took:.1f} s"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect_outputs(kc, msg_id)
    assert run_ok(kc, "print('alive')") == "alive\n"


FIGURE = """
import matplotlib, matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation
fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
ax.set_title("async-kernel: live figure on the host loop")
line, = ax.plot(range(10), [0] * 10)
ax.set_ylim(-0.5, 9.5)
frames = []
def _update(i):
    frames.append(i)
    line.set_ydata([((i + x) % 10) for x in range(10)])
    return (line,)
ani = FuncAnimation(fig, _update, interval=20, cache_frame_data=False)
plt.show()
print(matplotlib.get_backend(), matplotlib.is_interactive())
"""

WINDOW = {
    "tk": """
import anyio
window = plt.get_current_fig_manager().window
for _ in range(200):
    if window.winfo_viewable():
        break
    await anyio.sleep(0.02)
await anyio.sleep(0.3)  # let it draw
print(window.winfo_viewable(), window.winfo_rootx(), window.winfo_rooty(),
      window.winfo_width(), window.winfo_height())
""",
    "qt": """
import anyio
from PySide6.QtWidgets import QApplication
window = plt.get_current_fig_manager().window
for _ in range(200):
    if window in [w for w in QApplication.topLevelWidgets() if w.isVisible()]:
        break
    await anyio.sleep(0.02)
await anyio.sleep(0.3)  # let it draw
g = window.frameGeometry()
print(int(window.isVisible()), g.x(), g.y(), g.width(), g.height())
""",
}


def test_matplotlib_window_on_host(gk: Kernel, display: str) -> None:
    _, kc, loop, backend = gk
    other = "qt" if loop == "tk" else "tk"
    reply, _ = execute(kc, f"%matplotlib {other}")
    assert reply["content"]["status"] == "error"
    assert f"async-kernel -a async-{other} --interface.loop={other}" in reply["content"]["evalue"]
    run_ok(kc, f"%matplotlib {loop}")  # the refused GUI must not stick
    assert run_ok(kc, FIGURE).split() == [f"{loop}agg", "True"]
    visible, x, y, width, height = map(int, run_ok(kc, WINDOW[loop]).split())
    assert visible == 1 and width > 100 and height > 100
    run_ok(kc, "n_frames = len(frames)")
    time.sleep(0.5)  # idle kernel: the host loop alone drives the animation
    assert int(run_ok(kc, "print(len(frames) - n_frames)")) >= 5
    if backend == "asyncio":
        save_screenshot(display, (x, y, x + width, y + height), f"{loop}-figure.png")
    run_ok(kc, "ani.pause(); plt.close('all')")


def save_screenshot(display: str, box: tuple[int, int, int, int], name: str) -> None:
    """Grab the figure window from the X server into tests/artifacts (not committed)."""
    from PIL import ImageGrab

    image = ImageGrab.grab(bbox=box, xdisplay=display)
    colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colors is None or len(colors) > 4, "the window looks blank"
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / name, optimize=True)


def test_shutdown_closes_host_and_exits(gk: Kernel) -> None:
    km, kc, _, _ = gk
    msg_id = kc.shutdown()
    reply = shell_reply_on_control(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    process: Any = getattr(km.provisioner, "process", None)
    assert process is not None
    assert process.wait(timeout=TIMEOUT) == 0


def shell_reply_on_control(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    while True:
        msg = kc.control_channel.get_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


@pytest.mark.parametrize("loop", ["tk", "qt"])
def test_no_display_fails_fast_with_a_hint(loop: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()}
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(var, None)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "async_kernel",
            "-f",
            str(tmp_path / "k.json"),
            f"--interface.loop={loop}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 10
    assert f"cannot start the {loop} host loop" in done.stderr
    assert "set DISPLAY" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "k.json").exists()  # nothing half-started


def test_missing_pyside6_names_the_install(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['PySide6'] = None\n"
        "from async_kernel.app.cli import main\n"
        f"main(['-f', {str(tmp_path / 'k.json')!r}, '--interface.loop=qt'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        check=False,
    )
    assert done.returncode != 0
    assert "pip install 'async-kernel[qt]'" in done.stderr
    assert "Traceback" not in done.stderr


# Run in the kernel's process before its own code: when the GUI toolkit is first imported,
# say whether the connection file's shell port is already taken (by the kernel's socket).
_PORT_AT_TOOLKIT_IMPORT = """
import importlib.abc, json, socket, sys

class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {toolkit!r}:
            sys.meta_path.remove(self)
            port = json.load(open({conn!r}))["shell_port"]
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
                bound = False
            except OSError:
                bound = True
            finally:
                probe.close()
            print("shell port bound at the toolkit's import:", bound, file=sys.stderr)
        return None

sys.meta_path.insert(0, Probe())
from async_kernel.app.cli import main
main(["-f", {conn!r}, "--interface.loop={loop}"])
"""


@pytest.mark.parametrize("loop", ["tk", "qt"])
def test_sockets_are_bound_before_the_gui_toolkit_is_imported(loop: str, tmp_path: Path) -> None:
    """The connection file's ports are free only until another process takes one (the
    client picked each by binding port 0 and letting it go): the kernel binds them before
    the slow imports of a GUI host.  Here the host then fails (no display), which also
    shows the error path with sockets already bound."""
    from jupyter_client.connect import write_connection_file

    conn = str(tmp_path / "k.json")
    write_connection_file(conn, ip="127.0.0.1", key=b"k")
    toolkit = "tkinter" if loop == "tk" else "PySide6"
    code = _PORT_AT_TOOLKIT_IMPORT.format(toolkit=toolkit, conn=conn, loop=loop)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )
    assert "shell port bound at the toolkit's import: True" in done.stderr, done.stderr
    assert f"cannot start the {loop} host loop" in done.stderr
    assert Path(conn).exists()  # the client's file, not the kernel's: left as it was
