"""Authentication and exposure: forged messages are dropped, files and sockets stay private.

Forged messages are sent by raw pyzmq peers next to a real jupyter_client client, which must
keep being served.  Encryption (CurveZMQ) is provisioned by jupyter_client itself
(``transport_encryption="required"``), so the test covers the real client end to end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq
from _processes import stop_process
from _raw import raw_peers, recv_for, signed_frames, wait_idle
from conftest import TIMEOUT, collect_outputs, execute, kernel_argv, shell_reply, stream_text
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from async_kernel.transport.connection import ConnectionInfo, write_connection_file

SILENCE = 0.5  # seconds we listen for a reply that must not come


@contextmanager
def logged_kernel(
    tmp_path: Path, *settings: str, encryption: bool = False
) -> Iterator[tuple[KernelManager, BlockingKernelClient, Path]]:
    """A kernel whose stderr (its log) goes to a file we can read."""
    km = KernelManager(kernel_name="async")
    km.kernel_spec.argv = kernel_argv(*settings)
    if encryption:
        km.kernel_spec.metadata["supported_encryption"] = ["curve"]
        km.transport_encryption = "required"
    log_path = tmp_path / "kernel.log"
    log_file = log_path.open("wb")
    km.start_kernel(stderr=log_file, env={**os.environ})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield km, kc, log_path
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        log_file.close()


def _forge(key: bytes, how: str, msg_type: str) -> tuple[str, list[bytes]]:
    msg_id, frames = signed_frames(key, msg_type, {"code": "1", "value": "x"})
    parts = frames[2:6]
    if how == "missing":
        frames[1] = b""
    elif how == "wrong":
        frames[1] = b"0" * 64
    elif how == "truncated":
        frames[1] = frames[1][:32]
    elif how == "other-scheme":
        frames[1] = hmac.new(key, b"".join(parts), hashlib.sha512).hexdigest().encode()
    elif how == "other-key":
        frames[1] = hmac.new(b"not the key", b"".join(parts), hashlib.sha256).hexdigest().encode()
    return msg_id, frames


HOWS = ["missing", "wrong", "truncated", "other-scheme", "other-key", "replay"]


def test_forged_messages_are_dropped_on_every_channel(tmp_path: Path) -> None:
    with logged_kernel(tmp_path) as (km, kc, log_path), raw_peers(km.get_connection_info()) as raw:
        iopub = raw.connect("iopub")
        time.sleep(0.3)  # let the subscription arrive
        for channel in ("shell", "control", "stdin"):
            sock = raw.connect(channel)
            msg_type = "input_reply" if channel == "stdin" else "kernel_info_request"
            for how in HOWS:
                if how == "replay":
                    msg_id, frames = signed_frames(raw.key, msg_type, {})
                    sock.send_multipart(frames)
                    if channel != "stdin":  # the original is answered, once
                        assert recv_for(sock, msg_id, TIMEOUT) is not None
                        wait_idle(iopub, msg_id, TIMEOUT)
                else:
                    msg_id, frames = _forge(raw.key, how, msg_type)
                sock.send_multipart(frames)
                assert recv_for(sock, msg_id, SILENCE / 5) is None, (channel, how)
                # The real client is still served, on shell and control alike.
                reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
                assert reply["content"]["status"] == "ok"
                kc.control_channel.send(kc.session.msg("kernel_info_request", {}))
                assert kc.control_channel.get_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
                assert recv_for(iopub, msg_id, 0.05) is None, (channel, how, "status")
        reply, outputs = execute(kc, "print('still here')")
        assert stream_text(outputs) == "still here\n"
        time.sleep(0.2)
        log = log_path.read_text(errors="replace")
    for channel in ("shell", "control", "stdin"):
        dropped = [line for line in log.splitlines() if f"dropped a message on {channel}" in line]
        assert len(dropped) == len(HOWS), (channel, dropped)
    assert log.count("replayed message") == 3


def test_connection_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "conn.json"
    write_connection_file(path, ConnectionInfo())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_connection_file(path, ConnectionInfo())  # overwriting keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _run_until_file(argv: list[str], path: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Start a kernel on ``path``, wait until it has written it, stop it; (file, stderr)."""
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if path.exists() and json.loads(path.read_text() or "{}").get("shell_port"):
                    break
                time.sleep(0.05)
            mode = stat.S_IMODE(path.stat().st_mode)
            data = {**json.loads(path.read_text()), "_mode": mode}
            time.sleep(0.3)
        finally:
            stop_process(proc)
    return data, err_path.read_text(errors="replace")


def test_kernel_writes_its_own_file_private_and_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "own.json"
    data, stderr = _run_until_file(
        [sys.executable, "-m", "async_kernel", "-f", str(path)], path, tmp_path
    )
    assert data["_mode"] == 0o600
    assert data["ip"] == "127.0.0.1"
    assert data["key"]
    assert "WITHOUT ENCRYPTION" not in stderr


def test_public_address_without_encryption_warns(tmp_path: Path) -> None:
    path = tmp_path / "public.json"
    info = ConnectionInfo(ip="0.0.0.0")
    write_connection_file(path, info)
    data, stderr = _run_until_file(
        [sys.executable, "-m", "async_kernel", "-f", str(path)], path, tmp_path
    )
    assert data["_mode"] == 0o600
    assert "WITHOUT ENCRYPTION" in stderr


def test_public_address_with_encryption_does_not_warn(tmp_path: Path) -> None:
    path = tmp_path / "public-curve.json"
    public, secret = zmq.curve_keypair()
    info = ConnectionInfo(ip="0.0.0.0")
    info.extra = {"curve_publickey": public.decode(), "curve_secretkey": secret.decode()}
    write_connection_file(path, info)
    data, stderr = _run_until_file(
        [sys.executable, "-m", "async_kernel", "-f", str(path)], path, tmp_path
    )
    assert data["curve_publickey"] == public.decode()
    assert "WITHOUT ENCRYPTION" not in stderr


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_encryption_end_to_end(tmp_path: Path) -> None:
    with logged_kernel(tmp_path, encryption=True) as (km, kc, log_path):
        info = km.get_connection_info()
        assert info.get("curve_publickey"), "jupyter_client did not provision CURVE keys"
        file_data = json.loads(Path(km.connection_file).read_text())
        assert file_data["curve_secretkey"]
        reply, outputs = execute(kc, "print('over curve')")
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "over curve\n"
        assert kc.is_alive()
        deadline = time.monotonic() + TIMEOUT
        while not kc.hb_channel.is_beating() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kc.hb_channel.is_beating()

        server_public = info["curve_publickey"]
        if isinstance(server_public, str):
            server_public = server_public.encode()
        with raw_peers(info) as raw:
            # A plain-text peer that even holds the signing key gets nowhere ...
            plain = raw.connect("shell")
            msg_id, frames = signed_frames(raw.key, "execute_request", {"code": "1/0"})
            plain.send_multipart(frames)
            assert recv_for(plain, msg_id, SILENCE) is None
            # ... nor does a CURVE peer that knows the server's public key but not the file's
            # secret (it presents its own keypair), nor one that guesses the wrong server.
            for server_key in (server_public, zmq.curve_keypair()[0]):
                stranger = raw.socket(zmq.DEALER)
                stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
                stranger.curve_serverkey = server_key
                raw.connect("shell", stranger)
                msg_id, frames = signed_frames(raw.key, "execute_request", {"code": "1/0"})
                stranger.send_multipart(frames)
                assert recv_for(stranger, msg_id, SILENCE) is None
        # The real client is unaffected.
        msg_id = kc.execute("print(6 * 7)")
        assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
        assert stream_text(collect_outputs(kc, msg_id)) == "42\n"
        log = log_path.read_text(errors="replace")
    assert "refused a CURVE connection" in log
