"""The ZMQ transport's sockets and heartbeat on their own: ports chosen and written into the
connection info (tcp and ipc), iopub's bound set, sockets closed once, Curve's helpers served,
and a heartbeat that echoes (also for a CURVE client with a throwaway key) and frees its port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from async_kernel.transport.binding import IO_CHANNELS, Sockets
from async_kernel.transport.connection import ConnectionInfo
from async_kernel.transport.curve import CurveKeys
from async_kernel.transport.heartbeat import Heartbeat
from async_kernel.transport.iopub import IOPUB_HWM

pytestmark = pytest.mark.timeout(60)

Context = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def ctx() -> Iterator[Context]:
    context: Context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


def test_tcp_ports_are_chosen_and_written_into_the_connection_info() -> None:
    info = ConnectionInfo()
    sockets = Sockets(info, None)
    try:
        ports = [info.port(channel) for channel in IO_CHANNELS]
        assert all(ports) and len(set(ports)) == 4
        for channel in IO_CHANNELS:
            endpoint = sockets.by_channel[channel].get_string(zmq.LAST_ENDPOINT)
            assert endpoint == info.url(channel)
        assert sockets.by_channel["iopub"].sndhwm == IOPUB_HWM
        assert sockets.security_readers() == []
    finally:
        sockets.close()


def test_ipc_ports_skip_files_that_exist(tmp_path: Path) -> None:
    base = tmp_path / "kernel"
    Path(f"{base}-1").touch()  # another kernel's socket
    info = ConnectionInfo(transport="ipc", ip=str(base))
    sockets = Sockets(info, None)
    heartbeat = Heartbeat(info, None)
    try:
        assert [info.port(c) for c in (*IO_CHANNELS, "hb")] == [2, 3, 4, 5, 6]
        assert Path(info.url("shell").removeprefix("ipc://")).exists()
    finally:
        heartbeat.stop()
        sockets.close()


def test_closing_twice_closes_once() -> None:
    sockets = Sockets(ConnectionInfo(), None)
    sockets.close()
    assert sockets.closed
    assert all(sock.closed for sock in sockets.by_channel.values())
    assert sockets.context.closed
    sockets.close()


def _keys() -> CurveKeys:
    public, secret = zmq.curve_keypair()
    return CurveKeys(public, secret)


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_with_curve_the_io_thread_serves_zap_and_the_handshake_monitors() -> None:
    sockets = Sockets(ConnectionInfo(), _keys())
    try:
        readers = sockets.security_readers()
        assert sockets.zap is not None and sockets.handshakes is not None
        assert [sock for sock, _ in readers] == [
            sockets.zap.socket,
            *sockets.handshakes.sockets,
        ]
        assert len(readers) == 1 + len(IO_CHANNELS)
        assert all(read(sock) is False for sock, read in readers)  # nothing waits: no error
    finally:
        sockets.close()


def _ping(ctx: Context, url: str, keys: CurveKeys | None = None) -> bytes | None:
    client = ctx.socket(zmq.REQ)
    client.linger = 0
    if keys:  # a throwaway keypair of the client's own, as jupyter_client's heartbeat makes
        client.curve_serverkey = keys.public
        client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
    client.connect(url)
    client.send(b"ping")
    echo = client.recv() if client.poll(10_000) else None
    client.close()
    return echo


def test_the_heartbeat_echoes_and_frees_its_port_when_stopped(ctx: Context) -> None:
    info = ConnectionInfo()
    heartbeat = Heartbeat(info, None)
    heartbeat.start()
    try:
        assert _ping(ctx, info.url("hb")) == b"ping"
        assert _ping(ctx, info.url("hb")) == b"ping"
    finally:
        heartbeat.stop()
    again = Heartbeat(info, None)  # the same port: free again
    again.stop()  # never started: the socket is released all the same
    Heartbeat(info, None).stop()


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_a_curve_heartbeat_echoes_any_curve_client(ctx: Context) -> None:
    """The heartbeat has no ZAP: a client with a key of its own may ping (it only echoes)."""
    info = ConnectionInfo()
    keys = _keys()
    heartbeat = Heartbeat(info, keys)
    heartbeat.start()
    try:
        assert _ping(ctx, info.url("hb"), keys) == b"ping"
    finally:
        heartbeat.stop()
