"""The debugger, driven as JupyterLab drives it: DAP in debug_request on control.

One kernel per backend runs a whole session: a breakpoint in a cell and one inside a
coroutine the cell awaits, inspection while stopped, a step, and continue to the end.
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT, shell_reply, start_kernel
from jupyter_client.blocking.client import BlockingKernelClient

import async_kernel
from async_kernel.debugger.cells import murmur2

pytest.importorskip("debugpy")

_seq = itertools.count(1)

CELL = """\
async def bump(x):
    y = x + 1
    return y

a = 10
b = await bump(a)
print("b is", b)
"""
PACKAGE = str(Path(async_kernel.__file__).resolve().parent)
LINE_IN_COROUTINE = 2
LINE_IN_CELL = 5
UNDEFINED = {"data": {}, "metadata": {}}  # richInspectVariables: not in this context


def dap(
    kc: BlockingKernelClient, command: str, subshell_id: str | None = None, **arguments: Any
) -> dict[str, Any]:
    """Send one DAP request on control and return its response (the debug_reply content);
    ``subshell_id`` names the shell it is about, in the header."""
    content = {"type": "request", "seq": next(_seq), "command": command, "arguments": arguments}
    msg = kc.session.msg("debug_request", content)
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.control_channel.send(msg)
    while True:
        reply = kc.control_channel.get_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["msg_type"] == "debug_reply"
            return reply["content"]


def next_event(kc: BlockingKernelClient, name: str) -> dict[str, Any]:
    """The next debug_event called ``name`` on iopub (others are skipped)."""
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["msg_type"] == "debug_event" and msg["content"]["event"] == name:
            return msg["content"]


def test_debug_session(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (_, kc):
        info = shell_reply(kc, kc.kernel_info())["content"]
        assert info["debugger"] is True
        assert "debugger" in info["supported_features"]

        init = dap(
            kc,
            "initialize",
            clientID="test",
            adapterID="python",
            linesStartAt1=True,
            columnsStartAt1=True,
            pathFormat="path",
        )
        assert init["success"], init
        assert dap(kc, "attach")["success"]
        path = dap(kc, "dumpCell", code=CELL)["body"]["sourcePath"]
        debug_info = dap(kc, "debugInfo")["body"]
        assert debug_info["isStarted"] is True
        assert path.startswith(debug_info["tmpFilePrefix"])
        assert path.endswith(debug_info["tmpFileSuffix"])
        set_bp = dap(
            kc,
            "setBreakpoints",
            source={"path": path},
            breakpoints=[{"line": LINE_IN_CELL}, {"line": LINE_IN_COROUTINE}],
        )
        assert set_bp["success"] and all(b["verified"] for b in set_bp["body"]["breakpoints"])
        assert dap(kc, "configurationDone")["success"]

        msg_id = kc.execute(CELL)
        stopped = next_event(kc, "stopped")
        thread = stopped["body"]["threadId"]
        # Control still answers while the main thread is held at the breakpoint.
        kc.control_channel.send(kc.session.msg("kernel_info_request"))
        assert kc.control_channel.get_msg(timeout=TIMEOUT)["msg_type"] == "kernel_info_reply"
        assert dap(kc, "debugInfo")["body"]["stoppedThreads"] == [thread]

        frames = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"]
        assert (frames[0]["source"]["path"], frames[0]["line"]) == (path, LINE_IN_CELL)
        ours = [
            f["name"] for f in frames if f.get("source", {}).get("path", "").startswith(PACKAGE)
        ]
        assert not ours, f"the kernel's own frames are on the user's stack: {ours}"
        scopes = dap(kc, "scopes", frameId=frames[0]["id"])["body"]["scopes"]
        names = {
            v["name"]: v["value"]
            for s in scopes
            for v in dap(kc, "variables", variablesReference=s["variablesReference"])["body"][
                "variables"
            ]
        }
        assert "a" not in names  # line 5 has not run yet

        assert dap(kc, "next", threadId=thread)["success"]
        next_event(kc, "stopped")
        frames = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"]
        assert frames[0]["line"] == LINE_IN_CELL + 1
        evaluated = dap(kc, "evaluate", expression="a * 2", frameId=frames[0]["id"], context="repl")
        assert evaluated["body"]["result"] == "20"

        assert dap(kc, "continue", threadId=thread)["success"]
        stopped = next_event(kc, "stopped")  # inside the awaited coroutine
        frames = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"]
        assert (frames[0]["name"], frames[0]["line"]) == ("bump", LINE_IN_COROUTINE)
        rich = dap(kc, "richInspectVariables", variableName="x", frameId=frames[0]["id"])
        assert rich["body"]["data"]["text/plain"] == "10"
        # A name the frame lacks is "undefined" (empty data), not a failed request.
        missing = dap(kc, "richInspectVariables", variableName="nope", frameId=frames[0]["id"])
        assert missing["success"] and missing["body"] == UNDEFINED

        assert dap(kc, "continue", threadId=thread)["success"]
        # (A late reply to one of wait_for_ready's kernel_info requests may come first.)
        reply = shell_reply(kc, msg_id)
        assert reply["content"]["status"] == "ok"

        check_after_the_cell(kc, path)


def check_after_the_cell(kc: BlockingKernelClient, path: str) -> None:
    """The Jupyter extensions, then disconnect."""
    variables = {v["name"]: v for v in dap(kc, "inspectVariables")["body"]["variables"]}
    assert variables["b"]["value"] == "11"
    assert dap(kc, "richInspectVariables", variableName="b")["body"]["data"] == {"text/plain": "11"}
    # JupyterLab's open variable view asks again after the frame is gone (x was bump's).
    missing = dap(kc, "richInspectVariables", variableName="x", frameId=1)
    assert missing["success"] and missing["body"] == UNDEFINED
    assert dap(kc, "source", source={"path": path})["body"]["content"] == CELL
    modules = dap(kc, "modules", startModule=0, moduleCount=5)["body"]
    assert len(modules["modules"]) == 5 and modules["totalModules"] > 5
    assert dap(kc, "disconnect", restart=False, terminateDebuggee=False)["success"]
    assert dap(kc, "debugInfo")["body"]["isStarted"] is False


def test_debug_request_before_initialize() -> None:
    with start_kernel() as (_, kc):
        response = dap(kc, "stackTrace", threadId=1)
        assert response["success"] is False
        assert "initialize" in response["message"]


def test_debug_info_is_started_from_initialize_to_disconnect() -> None:
    """JupyterLab asks debugInfo while its attach is in flight: isStarted must already be true.

    Lab's session takes each debugInfo's isStarted as the truth; a false between initialize
    and attach turned its debugger off again (sidebar titled "-", gutter clicks ignored).
    """
    with start_kernel() as (_, kc):
        assert dap(kc, "debugInfo")["body"]["isStarted"] is False
        assert dap(kc, "initialize", clientID="test", adapterID="python")["success"]
        assert dap(kc, "debugInfo")["body"]["isStarted"] is True
        assert dap(kc, "attach")["success"]
        assert dap(kc, "debugInfo")["body"]["isStarted"] is True
        assert dap(kc, "disconnect", restart=False, terminateDebuggee=False)["success"]
        assert dap(kc, "debugInfo")["body"]["isStarted"] is False


def test_source_of_a_cell_that_was_never_dumped() -> None:
    """A frame in a cell without breakpoints names a file dumpCell never wrote.

    JupyterLab asks for its source when that frame is selected in the call stack.
    """
    code = 'print("not dumped")\n'
    with start_kernel() as (_, kc):
        kc.execute_interactive(code, timeout=TIMEOUT)
        prefix = dap(kc, "debugInfo")["body"]["tmpFilePrefix"]
        path = f"{prefix}{murmur2(code)}.py"
        source = dap(kc, "source", source={"path": path})
        assert source["success"], source
        assert source["body"]["content"] == code


def test_without_debugpy_the_kernel_says_what_to_install() -> None:
    """The shipped spec tells JupyterLab a debugger is there (a spec cannot know); without
    debugpy the kernel does not advertise one, and a debug_request fails saying why."""
    import sys

    from jupyter_client.manager import KernelManager

    hide_debugpy = (
        "import sys; sys.modules['debugpy'] = None; "
        "from async_kernel.app.cli import main; sys.exit(main())"
    )
    km = KernelManager(kernel_name="async")
    km.kernel_spec.argv = [sys.executable, "-c", hide_debugpy, "-f", "{connection_file}"]
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        info = shell_reply(kc, kc.kernel_info())["content"]
        assert info["debugger"] is False
        assert "debugger" not in info["supported_features"]
        response = dap(kc, "initialize", clientID="test", adapterID="python")
        assert response["success"] is False
        assert "pip install 'async-kernel[debug]'" in response["message"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


COPY_CELL = """\
def make():
    local_value = 41 + 1
    return local_value

made = make()
"""
LINE_AFTER_LOCAL = 3


def test_copy_to_globals_from_a_stopped_frame(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (_, kc):
        assert dap(kc, "initialize", clientID="test", adapterID="python")["success"]
        assert dap(kc, "attach")["success"]
        assert dap(kc, "debugInfo")["body"]["copyToGlobals"] is True  # JupyterLab's switch
        path = dap(kc, "dumpCell", code=COPY_CELL)["body"]["sourcePath"]
        set_bp = dap(
            kc, "setBreakpoints", source={"path": path}, breakpoints=[{"line": LINE_AFTER_LOCAL}]
        )
        assert set_bp["success"]
        assert dap(kc, "configurationDone")["success"]
        msg_id = kc.execute(COPY_CELL)
        thread = next_event(kc, "stopped")["body"]["threadId"]
        frames = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"]
        assert frames[0]["name"] == "make"
        # As JupyterLab sends it: the top frame's local, under the same name or another.
        copied = dap(
            kc,
            "copyToGlobals",
            srcVariableName="local_value",
            dstVariableName="copied_value",
            srcFrameId=frames[0]["id"],
        )
        assert copied["success"], copied
        assert copied["command"] == "copyToGlobals"
        assert dap(kc, "continue", threadId=thread)["success"]
        # (A late reply to one of wait_for_ready's kernel_info requests may come first.)
        reply = shell_reply(kc, msg_id)
        assert reply["content"]["status"] == "ok"
        variables = {
            v["name"]: v["value"] for v in dap(kc, "inspectVariables")["body"]["variables"]
        }
        assert variables["copied_value"] == "42"
        assert "local_value" not in variables
        # Without a stopped frame there is nothing to copy from: a failed response.
        again = dap(kc, "copyToGlobals", srcVariableName="made", dstVariableName="x", srcFrameId=1)
        assert again["success"] is False
        assert dap(kc, "disconnect", restart=False, terminateDebuggee=False)["success"]


def _control(kc: BlockingKernelClient, msg_type: str, **content: Any) -> dict[str, Any]:
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    while True:
        reply = kc.control_channel.get_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]


def _run_in(kc: BlockingKernelClient, subshell_id: str | None, code: str) -> None:
    msg = kc.session.msg("execute_request", {"code": code, "silent": False})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["content"]["status"] == "ok", reply["content"]
            return


def test_variables_of_the_shell_the_request_names(backend: str) -> None:
    with start_kernel(f"--interface.backend={backend}") as (_, kc):
        own = _control(kc, "create_subshell_request", user_ns="own")["subshell_id"]
        shared = _control(kc, "create_subshell_request", user_ns="main")["subshell_id"]
        _run_in(kc, None, "main_only = 1")
        _run_in(kc, own, "own_only = 2")

        def names(subshell_id: str | None) -> dict[str, str]:
            response = dap(kc, "inspectVariables", subshell_id=subshell_id)
            assert response["success"], response
            return {v["name"]: v["value"] for v in response["body"]["variables"]}

        assert names(None)["main_only"] == "1" and "own_only" not in names(None)
        assert names(own)["own_only"] == "2" and "main_only" not in names(own)
        assert names(shared)["main_only"] == "1" and "own_only" not in names(shared)
        rich = dap(kc, "richInspectVariables", subshell_id=own, variableName="own_only")
        assert rich["body"]["data"] == {"text/plain": "2"}
        absent = dap(kc, "richInspectVariables", subshell_id=own, variableName="main_only")
        assert absent["success"] and absent["body"] == UNDEFINED
        unknown = dap(kc, "inspectVariables", subshell_id="no-such-subshell")
        assert unknown["success"] is False and "no-such-subshell" in unknown["message"]


def _initialize(kc: BlockingKernelClient) -> dict[str, Any]:
    return dap(kc, "initialize", clientID="test", adapterID="python", linesStartAt1=True)


def _stop_at(kc: BlockingKernelClient, code: str, line: int) -> tuple[str, str, int]:
    """Run ``code`` with a breakpoint on ``line`` (an attached session); the cell's msg_id,
    its file and the stopped thread."""
    path = dap(kc, "dumpCell", code=code)["body"]["sourcePath"]
    set_bp = dap(kc, "setBreakpoints", source={"path": path}, breakpoints=[{"line": line}])
    assert set_bp["success"], set_bp
    assert dap(kc, "configurationDone")["success"]
    msg_id = kc.execute(code)
    return msg_id, path, next_event(kc, "stopped")["body"]["threadId"]


def test_initialize_while_a_cell_blocks(backend: str) -> None:
    """debugpy starts on the main thread; a cell blocking it must not hold control.

    The initialize is answered at once with a DAP failure that says why, control goes on
    answering (kernel_info, the interrupt that ends the cell), and the start that runs
    once the cell has ended is kept: the next initialize uses it (debugpy.listen can be
    called only once in a process).
    """
    with start_kernel(f"--interface.backend={backend}") as (_, kc):
        msg_id = kc.execute('import time\nprint("blocking", flush=True)\ntime.sleep(120)')
        while True:  # the cell is in its sleep (its print came)
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] == "stream" and "blocking" in msg["content"]["text"]:
                break
        busy = _initialize(kc)
        assert busy["success"] is False and busy["command"] == "initialize", busy
        assert "cell ends" in busy["message"]
        assert _control(kc, "kernel_info_request")["status"] == "ok"
        assert _control(kc, "interrupt_request")["status"] == "ok"
        # All of that before the cell ended: only the interrupt ends it.
        reply = shell_reply(kc, msg_id)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"

        assert _initialize(kc)["success"]
        assert dap(kc, "attach")["success"]
        msg_id, _, thread = _stop_at(kc, COPY_CELL, LINE_AFTER_LOCAL)
        assert dap(kc, "continue", threadId=thread)["success"]
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


BLANK_LINES_CELL = "\n\na1 = 1\na2 = 2\na3 = 3\n"
LINE_OF_A2 = 4  # as the dumped cell numbers it, blank lines included


def test_breakpoint_in_a_cell_that_starts_with_blank_lines() -> None:
    """IPython drops a cell's leading blank lines before compiling it; the compiled lines
    must still be those of the cell as the frontend dumped it."""
    with start_kernel() as (_, kc):
        assert _initialize(kc)["success"]
        assert dap(kc, "attach")["success"]
        msg_id, path, thread = _stop_at(kc, BLANK_LINES_CELL, LINE_OF_A2)
        frame = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"][0]
        assert (frame["source"]["path"], frame["line"]) == (path, LINE_OF_A2)
        evaluated = dap(kc, "evaluate", expression="'a2' in globals()", frameId=frame["id"])
        assert evaluated["body"]["result"] == "False"  # stopped before a2 = 2, after a1 = 1
        assert dap(kc, "evaluate", expression="a1", frameId=frame["id"])["body"]["result"] == "1"
        assert dap(kc, "continue", threadId=thread)["success"]
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


PANEL_CELL = """\
from IPython.display import HTML
page, png = HTML("<b>bold</b>"), type("P", (), {"_repr_png_": lambda _: b"\\x89PNG"})()
def show(_own):
    inner = _own + 1
    return inner
show(2)
"""
LINE_AT_TOP_LEVEL = 6
LINE_IN_SHOW = 5
IPYTHONS = {"In", "Out", "_", "_dh", "_i", "_i1", "_ih", "_ii", "_iii", "_oh", "exit", "quit"}
IPYTHONS |= {"get_ipython", "__builtins__"}


GROUPS = ("special variables", "protected variables", "function variables", "class variables")


def _scope_names(kc: BlockingKernelClient, frame_id: int) -> dict[str, set[str]]:
    """Each scope's variable names, those of debugpy's groups (functions, ...) included."""

    def names(reference: int) -> set[str]:
        found: set[str] = set()
        for v in dap(kc, "variables", variablesReference=reference)["body"]["variables"]:
            found.add(v["name"])
            if v["name"] in GROUPS:
                found |= names(v["variablesReference"])
        return found

    scopes = dap(kc, "scopes", frameId=frame_id)["body"]["scopes"]
    return {s["name"]: names(s["variablesReference"]) for s in scopes}


def _stopped_in_panel_cell(kc: BlockingKernelClient, lines: list[int]) -> tuple[str, int]:
    """PANEL_CELL run with breakpoints on ``lines``, after a cell that filled IPython's names
    (``_``, ``_i1``, ``Out``, ...): its msg_id and the stopped thread."""
    kc.execute_interactive("1 + 1", timeout=TIMEOUT)
    assert _initialize(kc)["success"]
    assert dap(kc, "attach")["success"]
    path = dap(kc, "dumpCell", code=PANEL_CELL)["body"]["sourcePath"]
    breakpoints = [{"line": line} for line in lines]
    assert dap(kc, "setBreakpoints", source={"path": path}, breakpoints=breakpoints)["success"]
    assert dap(kc, "configurationDone")["success"]
    msg_id = kc.execute(PANEL_CELL)
    return msg_id, next_event(kc, "stopped")["body"]["threadId"]


def test_variables_panel_while_stopped_hides_ipythons_names() -> None:
    """While stopped, a cell's globals (and its top level's locals, the same dict) are shown
    without IPython's own names, as inspectVariables shows them; a function's locals whole."""
    with start_kernel() as (_, kc):
        msg_id, thread = _stopped_in_panel_cell(kc, [LINE_AT_TOP_LEVEL, LINE_IN_SHOW])
        frame = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"][0]
        assert frame["line"] == LINE_AT_TOP_LEVEL
        names = _scope_names(kc, frame["id"])
        for scope in ("Locals", "Globals"):
            assert {"page", "show", "HTML"} <= names[scope], names[scope]
            assert not names[scope] & IPYTHONS, names[scope] & IPYTHONS

        assert dap(kc, "continue", threadId=thread)["success"]
        next_event(kc, "stopped")
        frame = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"][0]
        assert (frame["name"], frame["line"]) == ("show", LINE_IN_SHOW)
        names = _scope_names(kc, frame["id"])
        assert {"_own", "inner"} <= names["Locals"]  # a function's own names, "_" or not
        assert "page" in names["Globals"] and not names["Globals"] & IPYTHONS
        assert dap(kc, "continue", threadId=thread)["success"]
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


def test_rich_view_of_a_variable_while_stopped() -> None:
    """A variable's rich view while stopped is its whole mime bundle, formatted in the
    stopped frame (JupyterLab renders the HTML)."""
    with start_kernel() as (_, kc):
        msg_id, thread = _stopped_in_panel_cell(kc, [LINE_AT_TOP_LEVEL])
        frame = dap(kc, "stackTrace", threadId=thread)["body"]["stackFrames"][0]
        rich = dap(kc, "richInspectVariables", variableName="page", frameId=frame["id"])
        assert rich["success"], rich
        assert rich["body"]["data"]["text/html"] == "<b>bold</b>"
        assert "text/plain" in rich["body"]["data"]
        # Bytes travel as base64, as in the kernel's display messages (not their repr).
        image = dap(kc, "richInspectVariables", variableName="png", frameId=frame["id"])
        assert image["body"]["data"]["image/png"] == base64.b64encode(b"\x89PNG").decode()
        assert dap(kc, "continue", threadId=thread)["success"]
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


def test_a_second_attach_and_a_failing_request_get_dap_failures() -> None:
    """A second initialize + attach (another panel, no disconnect) is refused as a DAP
    failure, and the session goes on; so is any request whose handling raises."""
    with start_kernel() as (_, kc):
        assert _initialize(kc)["success"]
        assert dap(kc, "attach")["success"]
        assert _initialize(kc)["success"]
        again = dap(kc, "attach")
        assert again["success"] is False and "already attached" in again["message"], again
        broken = dap(kc, "modules", startModule="first")
        assert broken["success"] is False and broken["command"] == "modules", broken
        assert "first" in broken["message"]
        msg_id, _, thread = _stop_at(kc, COPY_CELL, LINE_AFTER_LOCAL)
        assert dap(kc, "continue", threadId=thread)["success"]
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
