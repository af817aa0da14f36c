"""Connection files: where the kernel's sockets live and the key that signs its messages."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .wire import Channel

__all__ = [
    "ConnectionInfo",
    "default_connection_file",
    "read_connection_file",
    "write_connection_file",
]


def _no_extra() -> dict[str, Any]:
    """A fresh ``extra``: the typed factory (``dict`` itself would leave its types unknown)."""
    return {}


@dataclass
class ConnectionInfo:
    transport: Literal["tcp", "ipc"] = "tcp"
    ip: str = "127.0.0.1"
    key: str = field(default_factory=lambda: secrets.token_hex(32))
    signature_scheme: str = "hmac-sha256"
    shell_port: int = 0
    control_port: int = 0
    stdin_port: int = 0
    iopub_port: int = 0
    hb_port: int = 0
    kernel_name: str = ""
    extra: dict[str, Any] = field(default_factory=_no_extra)

    def port(self, channel: Channel) -> int:
        return int(getattr(self, f"{channel}_port"))

    def set_port(self, channel: Channel, port: int) -> None:
        setattr(self, f"{channel}_port", port)

    def url(self, channel: Channel) -> str:
        """The address to bind; for tcp a port of 0 is bound to a random port by the caller."""
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{self.port(channel)}"
        return f"tcp://{self.ip}:{self.port(channel)}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**extra, **data}


def read_connection_file(path: str | os.PathLike[str]) -> ConnectionInfo:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    known = {name for name in ConnectionInfo.__dataclass_fields__ if name != "extra"}
    info = ConnectionInfo(**{k: v for k, v in data.items() if k in known})
    info.extra = {k: v for k, v in data.items() if k not in known}
    return info


def write_connection_file(path: str | os.PathLike[str], info: ConnectionInfo) -> None:
    """Write atomically with mode 0600: the file holds the signing key."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".connection-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info.to_dict(), f, indent=2)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_connection_file() -> Path:
    """Where a kernel started without ``-f`` writes its connection file (Jupyter's runtime dir)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / f"kernel-{os.getpid()}.json"
