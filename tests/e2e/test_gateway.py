"""A kernel behind Jupyter Kernel Gateway: the protocol through its REST + WebSocket API, and
JupyterLab started with ``--gateway-url`` running the JupyterLab e2e through it.

The gateway (``jupyter kernelgateway``) serves this interpreter's ``async`` kernel spec on a
free loopback port with a token and Jupyter state of its own; JupyterLab is a second server
that owns no kernels and forwards every kernel request and websocket to the gateway.

Issue #21: "through Jupyter Kernel Gateway the kernel status stays unknown" when a second
websocket with the same session id opens (the server's new ZMQ sockets carry the old identity,
and a ROUTER without ``ROUTER_HANDOVER`` keeps routing replies to the old connection).

JupyterLab's relay to the gateway leaks a websocket when the browser closes one before the
gateway has accepted it (Lab opens, closes and reopens its kernel websocket on every page
load): the gateway then keeps two sets of ZMQ sockets with the page's session id as identity.
Whichever connects to the kernel last owns that identity, and the other is left connected to
nothing; when that is the page's own (after a restart, or a page load under CPU load), the page
gets no reply at all. ``_answered_or_reload`` tells that case from any other silence by the
gateway's log. See docs/reliability.md (kernels on other machines).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from _processes import stop_process

# The JupyterLab e2e, collected again here so that it runs against the gateway-backed server
# (this module's ``lab_server`` fixture overrides conftest's).
from . import lab_page as lab
from .conftest import (
    SERVER_START_TIMEOUT,
    LabServer,
    free_port,
    isolated_jupyter_env,
    require,
)
from .test_jupyterlab import (  # noqa: F401
    CELLS,
    LAB_SETTINGS,
    NOTEBOOK,
    test_cell_awaits_a_button_click,
    test_run_cell_shows_output,
    test_toolbar_interrupts_a_running_cell,
)

REPLY_TIMEOUT = 30.0  # seconds any one reply through the gateway may take
# The guard against a hang, per test and the fixtures it sets up (the page's among them):
# two servers, a browser, and up to RELOADS page reloads of up to a minute each under load.
pytestmark = pytest.mark.timeout(600)


@dataclass
class Gateway:
    url: str
    token: str
    log: Path
    pid: int

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def open_websockets(self, kernel_id: str, session: str) -> int:
        """How many websockets with this session id the gateway holds open for the kernel,
        by its log (each one has ZMQ sockets of its own with the session id as identity)."""
        text = self.log_tail(chars=10_000_000)
        where = f"/api/kernels/{kernel_id}/channels?session_id={session} "
        opened = sum(1 for line in text.splitlines() if " 101 GET " in line and where in line)
        closed = text.count(f"Websocket closed {kernel_id}:{session}\n")
        return opened - closed

    def dump_kernel_stacks(self) -> str:
        """``kill -USR1`` each kernel the gateway runs (launch.py's handler writes every
        thread's stack to the kernel's stderr, which is the gateway's log); the log's tail."""
        kernels = [
            child
            for child in psutil.Process(self.pid).children(recursive=True)
            if "async_kernel" in " ".join(child.cmdline())
        ]
        before = len(self.log_tail(chars=10_000_000))
        for kernel in kernels:
            with contextlib.suppress(psutil.Error):
                os.kill(kernel.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "Thread 0x" not in self.log_tail(10_000_000)[before:]:
            time.sleep(0.1)
        return self.log_tail(chars=12_000)


def _wait_up(proc: subprocess.Popen[bytes], probe: Any, what: str, tail: Any) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}):\n{tail()}")
        try:
            probe()
            return
        except (urllib.error.URLError, OSError, ValueError):
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not up in {SERVER_START_TIMEOUT}s:\n{tail()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    try:
        import kernel_gateway  # noqa: F401
    except ImportError:
        require(False, "jupyter_kernel_gateway (pip install jupyter_kernel_gateway)")
    base = tmp_path_factory.mktemp("gateway")
    env = isolated_jupyter_env(base / "state")
    port, token = free_port(), secrets.token_hex(16)
    log = base / "gateway.log"
    jupyter = Path(sys.executable).with_name("jupyter")
    argv = [
        str(jupyter) if jupyter.exists() else "jupyter",
        "kernelgateway",
        "--KernelGatewayApp.ip=127.0.0.1",
        f"--KernelGatewayApp.port={port}",
        "--KernelGatewayApp.port_retries=0",
        f"--KernelGatewayApp.auth_token={token}",
        "--KernelGatewayApp.default_kernel_name=async",
        "--JupyterWebsocketPersonality.list_kernels=True",
        "--KernelGatewayApp.log_level=DEBUG",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT)
    gw = Gateway(f"http://127.0.0.1:{port}", token, log, proc.pid)
    try:
        _wait_up(proc, lambda: gw.request("GET", "/api"), "the kernel gateway", gw.log_tail)
        specs = gw.request("GET", "/api/kernelspecs")["kernelspecs"]
        require("async" in specs, "the `async` kernel spec (async-kernel -a async)")
        yield gw
    finally:
        stop_process(proc, grace=15)


# -- the protocol through the gateway's REST + WebSocket API ---------------------------------


def _message(session: str, msg_type: str, content: dict[str, Any], channel: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session,
            "username": "e2e",
            "date": datetime.now(UTC).isoformat(),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": channel,
        "buffers": [],
    }


class Channels:
    """One websocket on ``/api/kernels/<id>/channels``; every read bounded."""

    def __init__(self, ws: Any, session: str) -> None:
        self.ws = ws
        self.session = session
        self.seen: list[dict[str, Any]] = []  # every message received, for failure reports
        self.closed = False

    @classmethod
    async def open(cls, gw: Gateway, kernel_id: str, session: str) -> Channels:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = gw.url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        req = HTTPRequest(
            f"{url}?session_id={session}",
            headers={"Authorization": f"token {gw.token}"},
            connect_timeout=REPLY_TIMEOUT,
            request_timeout=REPLY_TIMEOUT,
        )
        ws = await asyncio.wait_for(websocket_connect(req), REPLY_TIMEOUT)
        return cls(ws, session)

    async def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg = _message(self.session, msg_type, content, channel)
        await self.ws.write_message(json.dumps(msg))
        return msg["header"]["msg_id"]

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), REPLY_TIMEOUT)
        assert raw is not None, f"websocket closed; seen: {self._summary()}"
        msg = json.loads(raw)
        self.seen.append(msg)
        return msg

    async def until_idle(self, msg_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the shell reply to ``msg_id``, its iopub messages up to and including idle)."""
        reply: dict[str, Any] | None = None
        outputs: list[dict[str, Any]] = []
        idle = False
        while reply is None or not idle:
            try:
                msg = await self.recv()
            except TimeoutError:
                pytest.fail(f"no reply/idle for {msg_id} in {REPLY_TIMEOUT}s: {self._summary()}")
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["channel"] == "shell":
                assert reply is None, f"two replies to {msg_id}"
                reply = msg
            elif msg["channel"] == "iopub":
                outputs.append(msg)
                state = msg["content"].get("execution_state")
                idle = idle or (msg["msg_type"] == "status" and state == "idle")
        return reply, outputs

    def _summary(self) -> list[tuple[str, str, str]]:
        return [
            (m.get("channel", "?"), m["msg_type"], m["parent_header"].get("msg_id", "")[:8])
            for m in self.seen[-30:]
        ]

    async def close(self) -> None:
        """Close and wait (bounded) until the connection is gone, socket included."""
        if self.closed:
            return
        self.closed = True
        self.ws.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REPLY_TIMEOUT):
                while await self.ws.read_message() is not None:
                    pass


def run_async(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(fn())`` in a thread of its own: Playwright's sync API (the Lab tests of
    this module) keeps an event loop running in the main thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, fn()).result(timeout=10 * REPLY_TIMEOUT)


def _stdout(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


async def _execute(ch: Channels, code: str) -> tuple[dict[str, Any], str]:
    msg_id = await ch.send("execute_request", {"code": code, "silent": False})
    reply, outputs = await ch.until_idle(msg_id)
    return reply, _stdout(outputs)


@pytest.fixture
def gateway_kernel(gateway: Gateway) -> Iterator[str]:
    kernel = gateway.request("POST", "/api/kernels", {"name": "async"})
    try:
        yield kernel["id"]
    finally:
        with contextlib.suppress(urllib.error.HTTPError):
            gateway.request("DELETE", f"/api/kernels/{kernel['id']}")


def test_gateway_runs_the_kernel(gateway: Gateway, gateway_kernel: str) -> None:
    async def go() -> None:
        ch = await Channels.open(gateway, gateway_kernel, uuid.uuid4().hex)
        try:
            msg_id = await ch.send("kernel_info_request", {})
            reply, _ = await ch.until_idle(msg_id)
            assert reply["msg_type"] == "kernel_info_reply"
            assert reply["content"]["status"] == "ok"
            assert reply["content"]["implementation"] == "async_kernel"
            reply, out = await _execute(ch, "print('through the gateway', 6 * 7)")
            assert reply["content"]["status"] == "ok", reply["content"]
            assert out == "through the gateway 42\n"
            # the control channel is forwarded too
            msg_id = await ch.send("kernel_info_request", {}, channel="control")
            while True:
                msg = await ch.recv()
                if msg["parent_header"].get("msg_id") == msg_id and msg["channel"] == "control":
                    break
            assert msg["content"]["status"] == "ok"
        finally:
            await ch.close()

    run_async(go)
    kernels = {k["id"]: k for k in gateway.request("GET", "/api/kernels")}
    assert kernels[gateway_kernel]["execution_state"] == "idle"


def test_second_websocket_with_the_same_session_is_answered(
    gateway: Gateway, gateway_kernel: str
) -> None:
    """The gateway opens new ZMQ sockets for the second websocket with the first one's
    identity (its session id); the kernel must hand the identity over and answer there."""

    async def go() -> None:
        session = uuid.uuid4().hex
        first = await Channels.open(gateway, gateway_kernel, session)
        second: Channels | None = None
        try:
            reply, out = await _execute(first, "state = 'kept'; print('first socket')")
            assert out == "first socket\n"
            # A reconnect while the first websocket is still open (Lab's retry after a
            # failed attempt; a tab reload before the server saw the old socket close).
            second = await Channels.open(gateway, gateway_kernel, session)
            msg_id = await second.send("kernel_info_request", {})
            reply, outputs = await second.until_idle(msg_id)
            assert reply["content"]["status"] == "ok"
            assert any(m["msg_type"] == "status" for m in outputs), "no status: state unknown"
            reply, out = await _execute(second, "print('second socket', state)")
            assert reply["content"]["status"] == "ok", reply["content"]
            assert out == "second socket kept\n"
            # and a third time, after the others are gone
            await first.close()
            await second.close()
            second = None
            third = await Channels.open(gateway, gateway_kernel, session)
            try:
                reply, out = await _execute(third, "print('third socket')")
                assert out == "third socket\n"
            finally:
                await third.close()
        finally:
            await first.close()
            if second is not None:
                await second.close()

    run_async(go)


def test_interrupt_and_restart_through_the_gateway(gateway: Gateway, gateway_kernel: str) -> None:
    async def go() -> None:
        ch = await Channels.open(gateway, gateway_kernel, uuid.uuid4().hex)
        try:
            await _execute(ch, "marker = 1")
            msg_id = await ch.send(
                "execute_request", {"code": "import time\nprint('sleeping')\ntime.sleep(120)"}
            )
            while True:  # the cell is running once it has printed
                msg = await ch.recv()
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    break
            await asyncio.to_thread(
                gateway.request, "POST", f"/api/kernels/{gateway_kernel}/interrupt"
            )
            reply, _ = await ch.until_idle(msg_id)
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
        finally:
            await ch.close()
        await asyncio.to_thread(gateway.request, "POST", f"/api/kernels/{gateway_kernel}/restart")
        ch = await Channels.open(gateway, gateway_kernel, uuid.uuid4().hex)
        try:
            reply, out = await _execute(ch, "print('marker' in globals())")
            assert out == "False\n"
        finally:
            await ch.close()

    run_async(go)


# -- JupyterLab with --gateway-url ---------------------------------------------------------


@pytest.fixture(scope="module")
def lab_server(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab that runs no kernel itself: kernels and specs come from the gateway."""
    base = tmp_path_factory.mktemp("lab-gw")
    root = base / "notebooks"
    root.mkdir()
    env = isolated_jupyter_env(base / "state", LAB_SETTINGS)
    port, token = free_port(), secrets.token_hex(16)
    log = base / "server.log"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--gateway-url={gateway.url}",
        f"--GatewayClient.auth_token={gateway.token}",
        "--GatewayClient.request_timeout=60",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.log_level=INFO",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log)
    try:
        _wait_up(proc, lambda: server.api("/api/status"), "JupyterLab", server.log_tail)
        specs = server.api("/api/kernelspecs")["kernelspecs"]
        require("async" in specs, "the `async` kernel spec, served by the gateway")
        yield server
    finally:
        stop_process(proc, grace=15)


@dataclass
class LabSockets:
    """What the page's websockets carried, for a failure (``gateway-ws-frames.txt``: each
    message's channel, type, state, own and parent id), and which kernel and session id each
    kernel websocket was for, latest last."""

    t0: float = field(default_factory=time.monotonic)
    frames: list[str] = field(default_factory=list[str])
    kernel_sockets: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    answered: set[int] = field(default_factory=set[int])  # indexes that got a kernel_info reply

    def note(self, line: str) -> None:
        self.frames.append(f"{time.monotonic() - self.t0:8.3f} {line}")

    def ready(self, page: Any, timeout: int, newer_than: int = -1) -> None:
        """Lab's newest kernel websocket (one opened after the first ``newer_than + 1``) got
        a kernel_info reply, and Lab shows the kernel idle (it may show idle before it has
        a kernel at all); AssertionError when not within ``timeout`` ms."""
        deadline = time.monotonic() + timeout / 1000
        newest = len(self.kernel_sockets) - 1
        while newest <= newer_than or newest not in self.answered:
            if time.monotonic() > deadline:
                raise AssertionError(f"no kernel_info reply on Lab's kernel websocket {newest}")
            page.wait_for_timeout(100)  # Playwright delivers the websockets' events meanwhile
            newest = len(self.kernel_sockets) - 1
        lab.wait_idle(page, timeout=max(1, int((deadline - time.monotonic()) * 1000)))

    def record(self, page: Any) -> None:
        def summary(direction: str, payload: Any, index: int | None = None) -> None:
            try:
                msg = json.loads(payload)
                if index is not None and msg["header"]["msg_type"] == "kernel_info_reply":
                    self.answered.add(index)
                own = msg["header"].get("msg_id", "")[:8]
                parent = msg.get("parent_header", {}).get("msg_id", "")[:8]
                content = msg.get("content", {})
                what = content.get("execution_state") or content.get("status") or ""
                line = f"{msg.get('channel')} {msg['header']['msg_type']} {what} {own} re {parent}"
            except (ValueError, KeyError, TypeError, AttributeError):
                line = f"(binary or other, {len(payload)} bytes)"
            self.note(f"{direction} {line}")

        def on_ws(ws: Any) -> None:
            self.note(f"== open {ws.url}")
            found = re.search(r"/api/kernels/([^/]+)/channels\?session_id=([^&]+)", ws.url)
            index = len(self.kernel_sockets) if found else None
            if found:
                self.kernel_sockets.append((found[1], found[2]))
            ws.on("framesent", lambda payload: summary(">", payload))
            ws.on("framereceived", lambda payload: summary("<", payload, index))
            ws.on("close", lambda _ws: self.note("== close"))

        page.on("websocket", on_ws)


RELOADS = 2  # reloads a page stuck behind the relay's leaked websocket may take (each can meet it)


def _answered_or_reload(
    page: Any, gateway: Gateway, sockets: LabSockets, check: Callable[[int], None], first: int
) -> None:
    """``check(timeout_ms)`` (it raises AssertionError when what it waits for did not come).

    When it fails and the gateway holds two websockets with the page's session id, one of
    them leaked by Lab's relay (the module's docstring), the page's ZMQ sockets may be the
    ones left connected to nothing: Lab then shows the kernel's status as never idle and runs
    nothing, and its user reloads the page (a new session id), which is done here, at most
    RELOADS times. Any other silence, or one that outlasts the reloads, fails with every
    kernel thread's stack and the gateway's log.
    """
    from playwright.sync_api import expect

    reloads = 0
    timeout = first
    while True:
        try:
            check(timeout)
            return
        except AssertionError:
            kernel_id, session = sockets.kernel_sockets[-1] if sockets.kernel_sockets else ("", "")
            held = gateway.open_websockets(kernel_id, session) if session else 0
            sockets.note(f"== no answer in {timeout} ms; the gateway holds {held} websockets")
            if held < 2 and timeout < lab.LOAD:  # not the relay's leak: only slow, perhaps
                timeout = lab.LOAD
                continue
            if held < 2 or reloads == RELOADS:
                pytest.fail(
                    f"no answer through the gateway in {timeout} ms ({reloads} reloads; "
                    f"websockets the gateway holds with the page's session id: {held}); "
                    f"frames in gateway-ws-frames.txt; the gateway's log, kernel stacks "
                    f"last:\n{gateway.dump_kernel_stacks()}"
                )
            reloads += 1
            sockets.note("== reload")
            print(f"reload {reloads}: the gateway holds {held} websockets with session {session}")
            page.reload(timeout=lab.LOAD)
            expect(lab.cell(page, len(CELLS) - 1)).to_be_visible(timeout=lab.LOAD)
            timeout = first


@pytest.fixture(scope="module")
def lab_sockets() -> LabSockets:
    return LabSockets()


@pytest.fixture(scope="module")
def page(
    lab_server: LabServer, gateway: Gateway, browser: Any, artifacts: Path, lab_sockets: LabSockets
) -> Iterator[Any]:
    """test_jupyterlab's page, its kernel idle, recording the websockets' frames (in
    ``tests/artifacts/gateway-ws-frames.txt``: what Lab sent and got, for a failure)."""
    kernel = os.environ.get("ASYNC_KERNEL_GATEWAY_E2E_KERNEL", "async")  # "python3": compare
    page = lab.open_notebook(
        lab_server, browser, NOTEBOOK, CELLS, lab_sockets.record, kernel=kernel, idle=False
    )
    try:
        _answered_or_reload(
            page, gateway, lab_sockets, lambda ms: lab_sockets.ready(page, ms), lab.STEP
        )
        yield page
    finally:
        (artifacts / "gateway-ws-frames.txt").write_text("\n".join(lab_sockets.frames))
        page.close()


def test_toolbar_restart_through_the_gateway(
    page: Any, gateway: Gateway, artifacts: Path, lab_sockets: LabSockets, lab_server: LabServer
) -> None:
    """test_jupyterlab's restart: the same kernel, fresh.

    After a restart through the gateway, Lab's own websocket often stays silent (its requests
    get no reply, the status never comes back): in about half the runs, idle or beside CPU
    hogs, and with ipykernel 7.4 in the same setup (``ASYNC_KERNEL_GATEWAY_E2E_KERNEL=python3``)
    in 4 of 5. The relay's leaked websocket (module docstring) reconnects to the new kernel
    beside the page's new one, with the same identity, and took it over. The page is then
    reloaded, as its user would, only in that case (``_answered_or_reload``).
    """
    from playwright.sync_api import expect

    sockets_before = len(lab_sockets.kernel_sockets)  # the page's fixture saw one answered
    kernel_before = lab_sockets.kernel_sockets[-1][0]
    lab.toolbar(page, "restart").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    dialog.locator("button.jp-mod-accept").click()
    expect(dialog).to_have_count(0)

    def fresh(ms: int) -> None:  # Lab reconnects after a restart: a new websocket answered
        lab_sockets.ready(page, ms, newer_than=sockets_before - 1)
        lab.output(lab.run(page, 5), "fresh kernel", timeout=ms)

    _answered_or_reload(page, gateway, lab_sockets, fresh, 15_000)
    # Restarted, not new: the notebook's session still has the same kernel.  (The page's
    # last websocket was the witness; once, after a reload, it was another kernel's, and
    # whether that was the notebook's, replaced, or another kernel Lab reconnected is not
    # known: a failure now says the sessions and the websockets.)
    sessions = {
        s.get("path"): (s.get("kernel") or {}).get("id") for s in lab_server.api("/api/sessions")
    }
    assert sessions.get(NOTEBOOK) == kernel_before, (
        f"the notebook's kernel: {sessions.get(NOTEBOOK)} after the restart, {kernel_before} "
        f"before; sessions {sessions}; websockets {lab_sockets.kernel_sockets}"
    )
    assert kernel_before in {k["id"] for k in gateway.request("GET", "/api/kernels")}
    page.screenshot(path=str(artifacts / "gateway-restart.png"))


def test_lab_kernels_live_in_the_gateway(
    lab_server: LabServer, gateway: Gateway, page: Any
) -> None:
    """Runs after the Lab e2e above (file order): its kernel is the gateway's."""
    lab_ids = {k["id"] for k in lab_server.api("/api/kernels")}
    gateway_ids = {k["id"] for k in gateway.request("GET", "/api/kernels")}
    assert lab_ids, "JupyterLab has no kernel"
    assert lab_ids <= gateway_ids, (lab_ids, gateway_ids)
