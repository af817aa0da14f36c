"""Every notebook in ``docs/notebooks/`` runs top to bottom through the kernel (nbclient).

Which kernels a notebook is for:

- ``metadata.async_kernel.kernels``: a list of kernel spec names, if present;
- otherwise ``metadata.kernelspec.name``; otherwise ``async``.

Names are ``async`` plus optional ``-asyncio`` / ``-trio`` parts (e.g. ``async-trio``). The
test writes each spec into a temporary prefix with ``async-kernel -a NAME --prefix ...`` and
points ``JUPYTER_PATH`` at it, so nothing outside the test is touched.

A cell may play the client's part in a comm conversation: with cell metadata
``{"async_kernel": {"comm_reply": {"target_name": "T", "data": {...}}}}``, whenever the kernel
opens a comm with target ``T`` while that cell runs, the test sends ``comm_msg`` with ``data``
to it (the way a widget front end would answer). With
``{"async_kernel": {"client_comm": {"target_name": "T", "data": {...}, "delay": 0.5}}}``, the
test opens a comm with target ``T`` from the client side ``delay`` seconds after the cell
starts (its ``execute_input``) and sends it one ``comm_msg`` with ``data``.

Cells tagged ``raises-exception`` may fail (nbclient's convention); any other error fails the
test. A notebook may also list cells whose outputs must contain a MIME type, in cell metadata
``{"async_kernel": {"expect_mime": ["image/png"]}}``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
CELL_TIMEOUT = 60  # seconds per cell
BACKEND_PARTS = {"asyncio", "trio"}


def _kernels_for(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("async_kernel", {})
    if "kernels" in meta:
        return list(meta["kernels"])
    return [nb.metadata.get("kernelspec", {}).get("name", "async")]


def _cases() -> list[Any]:
    return [
        pytest.param(path, name, id=f"{path.stem}[{name}]")
        for path in sorted(NOTEBOOKS.glob("*.ipynb"))
        for name in _kernels_for(path)
    ]


def _settings_for(name: str) -> list[str]:
    parts = name.split("-")
    unknown = [p for p in parts[1:] if p not in BACKEND_PARTS]
    if parts[0] != "async" or unknown:
        pytest.fail(
            f"kernel spec {name!r}: tests know 'async' plus -asyncio/-trio parts; "
            f"unknown parts {unknown}"
        )
    backend = next((p for p in parts[1:] if p in BACKEND_PARTS), "asyncio")
    return [f"--interface.backend={backend}"]


@pytest.fixture(scope="module")
def spec_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kernel-specs")


def _install_spec(prefix: Path, name: str) -> None:
    if (prefix / "share" / "jupyter" / "kernels" / name / "kernel.json").exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "async_kernel",
            "-a",
            name,
            "--prefix",
            str(prefix),
            *_settings_for(name),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


class CommAnsweringClient(NotebookClient):
    """nbclient, plus the front end's half of the comm conversations cells ask for."""

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        assert self.kc is not None
        self.kc.shell_channel.send(self.kc.session.msg(msg_type, content))

    def _open_client_comm(self, spec: dict[str, Any]) -> None:
        comm_id = uuid.uuid4().hex
        self._send(
            "comm_open", {"comm_id": comm_id, "target_name": spec["target_name"], "data": {}}
        )
        self._send("comm_msg", {"comm_id": comm_id, "data": spec.get("data", {})})

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        client_comm = cell.metadata.get("async_kernel", {}).get("client_comm")
        if msg["msg_type"] == "execute_input" and client_comm:
            # The cell has started; give it a moment to reach its await, then deliver.
            delay = float(client_comm.get("delay", 0.5))
            asyncio.get_running_loop().call_later(delay, self._open_client_comm, client_comm)
        if msg["msg_type"] == "comm_open":
            wanted = cell.metadata.get("async_kernel", {}).get("comm_reply")
            content = msg["content"]
            if wanted and content.get("target_name") == wanted["target_name"]:
                assert self.kc is not None
                reply = self.kc.session.msg(
                    "comm_msg", {"comm_id": content["comm_id"], "data": wanted.get("data", {})}
                )
                self.kc.shell_channel.send(reply)
        return super().process_message(msg, cell, cell_index)


@pytest.mark.parametrize(("path", "kernel_name"), _cases())
def test_notebook_runs(
    path: Path, kernel_name: str, spec_prefix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_spec(spec_prefix, kernel_name)
    monkeypatch.setenv("JUPYTER_PATH", str(spec_prefix / "share" / "jupyter"))
    nb = nbformat.read(path, as_version=4)
    client = CommAnsweringClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for mime in cell.metadata.get("async_kernel", {}).get("expect_mime", []):
            found = [o for o in cell.outputs if mime in o.get("data", {})]
            assert found, f"cell {index} of {path.name} has no {mime} output: {cell.outputs}"


def test_there_are_notebooks() -> None:
    assert list(NOTEBOOKS.glob("*.ipynb")), f"no notebooks in {NOTEBOOKS}"


def test_inline_figure_shown_without_plt_show(
    spec_prefix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_spec(spec_prefix, "async")
    monkeypatch.setenv("JUPYTER_PATH", str(spec_prefix / "share" / "jupyter"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2]);")]
    NotebookClient(nb, kernel_name="async", timeout=CELL_TIMEOUT, startup_timeout=60).execute()
    assert any("image/png" in o.get("data", {}) for o in nb.cells[0].outputs)
