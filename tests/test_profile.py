"""The user's IPython profile is honoured: startup files run, ipython_config.py applies."""

from __future__ import annotations

from pathlib import Path

from conftest import execute, start_kernel


def test_startup_files_and_config(tmp_path: Path) -> None:
    profile = tmp_path / "profile_default"
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-greet.py").write_text("GREETING = 'from startup'\n")
    (profile / "startup" / "01-magic.ipy").write_text("HERE = %pwd\nIPY_RAN = bool(HERE)\n")
    (profile / "ipython_config.py").write_text(
        "c.InteractiveShell.ast_node_interactivity = 'all'\n"
    )
    with start_kernel(env={"IPYTHONDIR": str(tmp_path)}) as (_, kc):
        reply, outputs = execute(kc, "GREETING\n1 + 1")
        assert reply["content"]["status"] == "ok"
        results = [
            m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"
        ]
        assert results == ["'from startup'", "2"], "both expressions shown: the config applied"
        reply, outputs = execute(kc, "IPY_RAN")
        results = [
            m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"
        ]
        assert results == ["True"], "the .ipy startup file ran"
