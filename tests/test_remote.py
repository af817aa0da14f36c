"""A kernel on another host, encrypted: two network namespaces joined by a veth pair.

The kernel runs in one namespace (``ip netns exec K python -m async_kernel -f conn.json``),
listening on its veth address with the CurveZMQ keypair of its connection file; clients run in
the other namespace and reach it over tcp only through the veth link, as from another machine.
The connection file is written the way jupyter_client writes one (``write_connection_file``
with ``curve_publickey``/``curve_secretkey``, as ``KernelManager.transport_encryption``
provisions them) and copied to the client's side.

- A jupyter_client client holding the file executes, gets its output, kernel_info and
  heartbeats.
- A client without the keypair gets nothing: a plain-text one (the HMAC key alone), and a
  CURVE one that knows the server's public key but presents its own keypair. No reply, no
  output, the kernel ran nothing of theirs, and the refused CURVE client is logged with its
  address.

Needs root (CAP_NET_ADMIN) and ``ip`` (iproute2); skips, saying why, only where namespaces
cannot be made.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from _processes import stop_process
from jupyter_client.connect import write_connection_file

CLIENT_TIMEOUT = 120  # seconds a client script may take in all
# A client script still running after this many seconds writes every thread's stack to its
# stderr and exits (the test then shows where it hung), before the test's own time limit.
CLIENT_STACKS_AFTER = 50
SILENCE = 2.0  # seconds a refused client listens for anything at all


@dataclass
class Hosts:
    kernel_ns: str
    client_ns: str
    kernel_ip: str
    client_ip: str


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _must(*args: str) -> None:
    done = _ip(*args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


@contextmanager
def two_hosts() -> Iterator[Hosts]:
    """Namespaces K and C, a veth pair between them with 10.x.y.1 (K) and 10.x.y.2 (C)."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): cannot make network namespaces")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN)")
    tag = f"{os.getpid() % 100000}{secrets.token_hex(1)}"
    hosts = Hosts(f"ak-k-{tag}", f"ak-c-{tag}", "", "")
    net = f"10.{random.randint(64, 250)}.{random.randint(1, 250)}"
    hosts.kernel_ip, hosts.client_ip = f"{net}.1", f"{net}.2"
    made: list[str] = []
    try:
        first = _ip("netns", "add", hosts.kernel_ns)
        if first.returncode != 0:
            if "not permitted" in first.stderr.lower() or "permission" in first.stderr.lower():
                pytest.skip(f"network namespaces not permitted here: {first.stderr.strip()}")
            pytest.fail(f"ip netns add: {first.stderr.strip()}")
        made.append(hosts.kernel_ns)
        _must("netns", "add", hosts.client_ns)
        made.append(hosts.client_ns)
        veth_k, veth_c = f"akk{tag}", f"akc{tag}"  # at most 15 characters
        _must("link", "add", veth_k, "type", "veth", "peer", "name", veth_c)
        _must("link", "set", veth_k, "netns", hosts.kernel_ns)
        _must("link", "set", veth_c, "netns", hosts.client_ns)
        for ns, dev, addr in (
            (hosts.kernel_ns, veth_k, hosts.kernel_ip),
            (hosts.client_ns, veth_c, hosts.client_ip),
        ):
            _must("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _must("-n", ns, "link", "set", dev, "up")
            _must("-n", ns, "link", "set", "lo", "up")
        yield hosts
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth, hence both
            _ip("netns", "del", ns)


def _free_ports(count: int) -> list[int]:
    """Ports for a fresh namespace: nothing else listens there, any distinct ones will do."""
    return random.sample(range(20000, 60000), count)


def _connection_file(path: Path, ip: str) -> dict[str, Any]:
    public, secret = zmq.curve_keypair()
    shell, iopub, stdin, hb, control = _free_ports(5)
    write_connection_file(
        str(path),
        ip=ip,
        key=secrets.token_hex(16).encode(),
        shell_port=shell,
        iopub_port=iopub,
        stdin_port=stdin,
        hb_port=hb,
        control_port=control,
        kernel_name="async",
        curve_publickey=public,
        curve_secretkey=secret,
    )
    return json.loads(path.read_text())


@contextmanager
def remote_kernel(hosts: Hosts, conn: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = ["ip", "netns", "exec", hosts.kernel_ns, sys.executable, "-m", "async_kernel"]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*argv, "-f", str(conn)], stdout=subprocess.DEVNULL, stderr=err, cwd=conn.parent
        )
    try:
        yield proc
    finally:
        stop_process(proc)


# The clients run as scripts inside the client namespace (``ip netns exec C python -c ...``);
# each prints one JSON line of what it saw.
GOOD_CLIENT = r"""
import json, sys, time
from jupyter_client.blocking.client import BlockingKernelClient

kc = BlockingKernelClient(connection_file=sys.argv[1])
kc.load_connection_file()
assert kc.curve_publickey, "the connection file's keypair was not loaded"
kc.start_channels()
result = {}
try:
    kc.wait_for_ready(timeout=60)
    result["kernel_info"] = kc.kernel_info(reply=True, timeout=30)["content"]["status"]
    out = []
    msg_id = kc.execute(sys.argv[2])
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    result["status"] = reply["content"]["status"]
    result["execution_count"] = reply["content"]["execution_count"]
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    result["stdout"] = "".join(out)
    deadline = time.monotonic() + 30
    while not kc.hb_channel.is_beating() and time.monotonic() < deadline:
        time.sleep(0.05)
    result["beating"] = kc.hb_channel.is_beating()
finally:
    kc.stop_channels()
print(json.dumps(result))
"""

REFUSED_CLIENTS = r"""
import hashlib, hmac, json, queue, sys, time, uuid
import zmq
from jupyter_client.blocking.client import BlockingKernelClient

SILENCE = float(sys.argv[2])
info = json.load(open(sys.argv[1]))
key = info["key"].encode()
seen = {}

# 1. jupyter_client without the keypair: the HMAC key alone, plain text.  Its sockets never
# finish a handshake, so what they were given to send is never sent: with libzmq's default
# linger, closing them (or the exit's context term) would wait for that for ever.
zmq.Context.instance().setsockopt(zmq.LINGER, 0)
plain = {k: v for k, v in info.items() if not k.startswith("curve_")}
kc = BlockingKernelClient()
kc.load_connection_info(plain)
assert kc.curve_publickey is None
# No heartbeat channel: its thread sends on a REQ socket without a time limit, and with the
# kernel refusing the handshake (and the client reconnecting) there may be no connection to
# send on: that send, and stop_channels() joining the thread, then never return (seen once,
# the script ran past its 120 s).
kc.start_channels(hb=False)
try:
    kc.execute("print('plain text got in')")
    kc.kernel_info()
    got = []
    for get in (kc.get_shell_msg, kc.get_iopub_msg):
        try:
            got.append(get(timeout=SILENCE)["msg_type"])
        except queue.Empty:
            pass
    seen["plain"] = got
finally:
    kc.stop_channels()

# 2. A CURVE client with the server's public key but a keypair of its own.
ctx = zmq.Context()
def curve(kind):
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.curve_serverkey = info["curve_publickey"].encode()
    return sock
def url(channel):
    return f"tcp://{info['ip']}:{info[channel + '_port']}"
sub = curve(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(url("iopub"))
shell = curve(zmq.DEALER)
shell.connect(url("shell"))
header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "session": "x",
          "username": "x", "date": "2024-01-01T00:00:00Z", "version": "5.3"}
parts = [json.dumps(p).encode() for p in
         (header, {}, {}, {"code": "print('stranger got in')", "silent": False})]
sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode()
shell.send_multipart([b"<IDS|MSG>", sig, *parts])
got = []
deadline = time.monotonic() + SILENCE
poller = zmq.Poller()
poller.register(sub, zmq.POLLIN)
poller.register(shell, zmq.POLLIN)
while (left := deadline - time.monotonic()) > 0:
    for sock, _ in poller.poll(int(left * 1000) + 1):
        got.append(sock.recv_multipart()[-1][:200].decode(errors="replace"))
seen["stranger"] = got
for sock in (sub, shell):
    sock.close(0)
ctx.term()
print(json.dumps(seen))
"""


def _in_client_ns(hosts: Hosts, script: str, *args: str) -> dict[str, Any]:
    after = CLIENT_STACKS_AFTER
    watchdog = f"import faulthandler\nfaulthandler.dump_traceback_later({after}, exit=True)\n"
    done = subprocess.run(
        ["ip", "netns", "exec", hosts.client_ns, sys.executable, "-c", watchdog + script, *args],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"client failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_encrypted_kernel_on_another_host(tmp_path: Path) -> None:
    with two_hosts() as hosts:
        kernel_side, client_side = tmp_path / "kernel-host", tmp_path / "client-host"
        kernel_side.mkdir()
        client_side.mkdir()
        conn = kernel_side / "kernel.json"
        info = _connection_file(conn, hosts.kernel_ip)
        copy = client_side / "kernel.json"  # what the user copies (scp) to the client
        shutil.copy(conn, copy)
        log = kernel_side / "kernel.log"
        with remote_kernel(hosts, conn, log) as proc:
            # The kernel is on the other host only: its address is not this namespace's.
            good = _in_client_ns(
                hosts,
                GOOD_CLIENT,
                str(copy),
                "import socket, psutil\n"
                "addrs = {a.address for v in psutil.net_if_addrs().values() for a in v}\n"
                f"print('remote', 6 * 7, {hosts.kernel_ip!r} in addrs)",
            )
            assert good == {
                "kernel_info": "ok",
                "status": "ok",
                "execution_count": 1,
                "stdout": "remote 42 True\n",
                "beating": True,
            }, (good, log.read_text(errors="replace")[-3000:])

            refused = _in_client_ns(hosts, REFUSED_CLIENTS, str(copy), str(SILENCE))
            assert refused == {"plain": [], "stranger": []}, refused

            # The kernel ran none of their cells: the next one is the good client's second.
            after = _in_client_ns(hosts, GOOD_CLIENT, str(copy), "print('still mine')")
            assert after["stdout"] == "still mine\n"
            assert after["execution_count"] == 2, after
            assert proc.poll() is None
        text = log.read_text(errors="replace")
    assert info["ip"] == hosts.kernel_ip
    assert "WITHOUT ENCRYPTION" not in text
    refusals = [line for line in text.splitlines() if "refused a CURVE connection" in line]
    assert refusals, text[-3000:]
    assert all(hosts.client_ip in line for line in refusals), refusals


PLAIN_CLIENT = r"""
import json, queue, sys
from jupyter_client.blocking.client import BlockingKernelClient

info = json.load(open(sys.argv[1]))
kc = BlockingKernelClient()
kc.load_connection_info({k: v for k, v in info.items() if not k.startswith("curve_")})
kc.start_channels(hb=False)  # see PLAIN_CLIENT: a refused REQ's send may never return
try:
    kc.kernel_info()
    try:
        got = [kc.get_shell_msg(timeout=float(sys.argv[2]))["msg_type"]]
    except queue.Empty:
        got = []
finally:
    kc.stop_channels()
print(json.dumps({"plain": got}))
"""


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_plain_text_client_is_logged(tmp_path: Path) -> None:
    with two_hosts() as hosts:
        conn = tmp_path / "kernel.json"
        _connection_file(conn, hosts.kernel_ip)
        log = tmp_path / "kernel.log"
        with remote_kernel(hosts, conn, log):
            assert _in_client_ns(hosts, GOOD_CLIENT, str(conn), "1")["status"] == "ok"
            refused = _in_client_ns(hosts, PLAIN_CLIENT, str(conn), str(SILENCE))
            assert refused == {"plain": []}
        text = log.read_text(errors="replace")
    assert "encryption handshake failed" in text, text[-3000:]
