"""The command line: kernel specs, settings, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "async_kernel"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_version_and_help() -> None:
    version = run("-V")
    assert version.returncode == 0 and version.stdout.startswith("async-kernel ")
    helptext = run("-h")
    assert helptext.returncode == 0
    assert "--interface.backend" in helptext.stdout and "--interface.loop" in helptext.stdout


def test_add_list_remove_spec(tmp_path: Path) -> None:
    prefix = str(tmp_path)
    added = run(
        "-a",
        "async-trio-test",
        "--interface.backend=trio",
        "--display_name=Trio test",
        "--prefix",
        prefix,
    )
    assert added.returncode == 0, added.stderr
    spec_file = tmp_path / "share/jupyter/kernels/async-trio-test/kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["argv"][0] == sys.executable, "the spec names the installing interpreter"
    assert Path(spec["argv"][0]).is_absolute()
    assert spec["argv"][1:5] == ["-m", "async_kernel", "-f", "{connection_file}"]
    assert "--interface.backend=trio" in spec["argv"]
    assert spec["display_name"] == "Trio test"
    assert spec["interrupt_mode"] == "message"
    from async_kernel.debugger import debugpy_available

    assert spec["metadata"]["debugger"] is debugpy_available()  # JupyterLab reads only this
    listed = run("-l", "--prefix", prefix)
    assert "async-trio-test" in listed.stdout
    removed = run("-r", "async-trio-test", "--prefix", prefix)
    assert removed.returncode == 0
    assert not spec_file.exists()
    again = run("-r", "async-trio-test", "--prefix", prefix)
    assert again.returncode != 0 and "no kernel spec" in again.stderr


def test_overwrite_default_spec_with_trio(tmp_path: Path) -> None:
    prefix = str(tmp_path)
    assert run("-a", "async", "--prefix", prefix).returncode == 0
    assert run("-a", "async", "--interface.backend=trio", "--prefix", prefix).returncode == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/async/kernel.json").read_text())
    assert "--interface.backend=trio" in spec["argv"]


def test_spec_is_usable_by_jupyter_client(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    assert run("-a", "async-x", "--interface.loop=tk", "--prefix", str(tmp_path)).returncode == 0
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share/jupyter/kernels")])
    spec = ksm.get_kernel_spec("async-x")
    assert "--interface.loop=tk" in spec.argv
    assert spec.language == "python"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interface.backend=curio"], "invalid choice"),
        (["--interface.colour=blue"], "unknown setting 'interface.colour'"),
        (["--frobnicate"], "unknown argument"),
    ],
)
def test_bad_settings_are_clear_errors(args: list[str], message: str) -> None:
    result = run(*args, "-l")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_installed_default_spec_exists() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    assert "async" in specs


def test_spec_fields_as_ipykernel_writes_them(tmp_path: Path) -> None:
    added = run(
        "-a", "async-env", "--env", "A_VAR=1", "--env", "B_VAR=x=y", "--prefix", str(tmp_path)
    )
    assert added.returncode == 0, added.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/async-env/kernel.json").read_text())
    assert spec["kernel_protocol_version"] == "5.5"
    assert spec["interrupt_mode"] == "message"
    assert spec["env"] == {"A_VAR": "1", "B_VAR": "x=y"}
    assert isinstance(spec["metadata"]["debugger"], bool)
    shipped = Path(__file__).parent.parent / "share/jupyter/kernels/async/kernel.json"
    assert json.loads(shipped.read_text())["kernel_protocol_version"] == "5.5"


def test_spec_env_reaches_the_kernel(tmp_path: Path) -> None:
    from conftest import run_ok
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    prefix = str(tmp_path)
    assert run("-a", "async-env2", "--env", "SPEC_ENV_SEEN=yes", "--prefix", prefix).returncode == 0
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share/jupyter/kernels")])
    km = KernelManager(kernel_name="async-env2", kernel_spec_manager=ksm)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        assert run_ok(kc, "import os; print(os.environ.get('SPEC_ENV_SEEN'))") == "yes\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "x", "--env", "NOEQUALS"], "--env takes KEY=VALUE"),
        (["-l", "--env", "A=1"], "use it with -a NAME"),
        (["-l", "--interface.capture_fd_output=maybe"], "must be True or False"),
    ],
)
def test_bad_env_and_bool_settings(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_capture_setting_in_spec_and_display_name(tmp_path: Path) -> None:
    assert (
        run(
            "-a", "async-nofd", "--interface.capture_fd_output=false", "--prefix", str(tmp_path)
        ).returncode
        == 0
    )
    spec = json.loads((tmp_path / "share/jupyter/kernels/async-nofd/kernel.json").read_text())
    assert "--interface.capture_fd_output=False" in spec["argv"]
    assert (
        run(
            "-a", "async", "--interface.capture_fd_output=False", "--prefix", str(tmp_path)
        ).returncode
        == 0
    )
    spec = json.loads((tmp_path / "share/jupyter/kernels/async/kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (async: no fd capture)"


def test_help_all_lists_every_setting_and_docs_have_the_same_table() -> None:
    from async_kernel.app.cli import help_all_table
    from async_kernel.settings import SETTINGS, InterfaceSettings

    shown = run("--help-all")
    assert shown.returncode == 0
    table = help_all_table()
    assert table in shown.stdout
    defaults = InterfaceSettings()
    for setting in SETTINGS:
        row = next(line for line in table.splitlines() if f"`{setting.option}`" in line)
        assert f"`{getattr(defaults, setting.name)}`" in row
    assert set(InterfaceSettings.__dataclass_fields__) == {s.name for s in SETTINGS}
    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    assert table in page, "docs/cli.md's settings table differs from async-kernel --help-all"


def test_ipython_config_on_the_command_line_reaches_the_shell() -> None:
    """``--Class.trait=value`` configures IPython, as on ipykernel's command line: nbclient,
    papermill and nbconvert add ``--HistoryManager.hist_file=:memory:`` for a spec named
    python3 (the kernel refused it as an unknown argument and died before its first reply)."""
    from conftest import run_ok, start_kernel

    with start_kernel("--HistoryManager.hist_file=:memory:", "--IPCompleter.use_jedi=False") as (
        _,
        kc,
    ):
        shell = "ip = get_ipython()\nprint(ip.history_manager.hist_file, ip.Completer.use_jedi)"
        assert run_ok(kc, shell) == ":memory: False\n"
        kc.history(hist_access_type="tail", n=5)
        reply = kc.get_shell_msg(timeout=15)
        assert reply["content"]["status"] == "ok"
        assert any("history_manager" in entry[2] for entry in reply["content"]["history"])


def test_ipython_config_goes_into_a_new_spec(tmp_path: Path) -> None:
    added = run("-a", "async-nojedi", "--IPCompleter.use_jedi=False", "--prefix", str(tmp_path))
    assert added.returncode == 0, added.stderr
    spec = tmp_path / "share" / "jupyter" / "kernels" / "async-nojedi" / "kernel.json"
    assert json.loads(spec.read_text())["argv"][-1] == "--IPCompleter.use_jedi=False"
