"""input() and getpass() over the stdin channel, as jupyter_client sends replies."""

from __future__ import annotations

from conftest import TIMEOUT, collect_outputs, execute, shell_reply
from jupyter_client.blocking.client import BlockingKernelClient


def test_input_round_trip(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("name = input('who? ')\nprint('hi', name)", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["content"] == {"prompt": "who? ", "password": False}
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input("Ada")  # exactly what jupyter_client sends: no extra fields
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    text = "".join(
        m["content"]["text"] for m in collect_outputs(kc, msg_id) if m["msg_type"] == "stream"
    )
    assert "hi Ada" in text


def test_getpass_asks_for_a_password(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("import getpass\nsecret = getpass.getpass()\nlen(secret)", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["content"]["password"] is True
    kc.input("hunter2")
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"


def test_input_without_allow_stdin_is_a_clear_error(kc: BlockingKernelClient) -> None:
    reply, _ = execute(kc, "input('x')", allow_stdin=False)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StdinNotImplementedError"
    assert "allow_stdin" in reply["content"]["evalue"]
