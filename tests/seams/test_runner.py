"""The subprocess seam: real runs, errors, PATH order, and the recording fake."""

import os
import stat

import pytest

from cluster.errors import CommandFailed, ToolMissing
from cluster.seams.runner import FakeRunner, Result, Runner
from cluster.ui import display


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_run_captures_output_stdin_and_env(tmp_path):
    r = Runner(bin_dir=tmp_path / "bin")
    res = r.run(["sh", "-c", 'read x; echo "got $x $GREETING"; echo err >&2'], input="hello\n",
                env={"GREETING": "hi"})
    assert res.returncode == 0
    assert res.stdout == "got hello hi\n"
    assert res.stderr == "err\n"


def test_nonzero_exit_raises_with_argv_and_output_tail(tmp_path):
    r = Runner(bin_dir=tmp_path)
    lines = "; ".join(f"echo line{i}" for i in range(30))
    with pytest.raises(CommandFailed) as ei:
        r.run(["sh", "-c", f"{lines}; exit 3"])
    err = ei.value
    assert err.returncode == 3
    assert err.argv[:2] == ["sh", "-c"]
    msg = str(err)
    assert msg.startswith("command failed (exit 3): sh -c")
    assert "line29" in msg and "line5\n" not in msg  # only the tail


def test_check_false_returns_the_failure(tmp_path):
    res = Runner(bin_dir=tmp_path).run(["sh", "-c", "exit 4"], check=False)
    assert res.returncode == 4


def test_missing_program_is_a_one_line_tool_error(tmp_path):
    with pytest.raises(ToolMissing) as ei:
        Runner(bin_dir=tmp_path).run(["k3d-definitely-not-installed", "version"])
    assert "\n" not in str(ei.value)


def test_project_bin_dir_comes_first_on_path(tmp_path, monkeypatch):
    bin_dir, other = tmp_path / "bin", tmp_path / "other"
    bin_dir.mkdir()
    other.mkdir()
    _script(other / "k3d", "echo from-path\n")
    _script(bin_dir / "k3d", "echo from-project; command -v k3d\n")
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
    r = Runner(bin_dir=bin_dir)
    assert r.which("k3d") == str(bin_dir / "k3d")
    out = r.run(["k3d"]).stdout.splitlines()
    # The child's own PATH starts with the project dir too (helm plugins, k3d calling docker...).
    assert out == ["from-project", str(bin_dir / "k3d")]


def test_display_quotes_like_a_shell():
    assert display(["sh", "-c", "echo a b"], {"K3D_FIX_MOUNTS": "1"}) == "K3D_FIX_MOUNTS=1 sh -c 'echo a b'"


def test_fake_records_argv_stdin_env_and_answers_by_prefix():
    f = FakeRunner()
    f.on("k3d", "cluster", "list", stdout="[]")
    f.on("kubectl", "apply", returncode=1, stderr="boom")
    assert f.run(["k3d", "cluster", "list", "-o", "json"]).stdout == "[]"
    assert f.run(["k3d", "version"]).stdout == ""  # unscripted: success, no output
    with pytest.raises(CommandFailed, match="boom"):
        f.run(["kubectl", "apply", "-f", "-"], input="kind: X\n", env={"A": "1"})
    assert f.argvs == [("k3d", "cluster", "list", "-o", "json"), ("k3d", "version"),
                       ("kubectl", "apply", "-f", "-")]
    assert f.calls[2].input == "kind: X\n" and f.calls[2].env == {"A": "1"}


def test_fake_responder_and_missing_tools():
    f = FakeRunner(tools={"helm"})
    f.on("helm", respond=lambda c: Result(c.argv, 0, " ".join(c.argv)))
    assert f.run(["helm", "list"]).stdout == "helm list"
    with pytest.raises(ToolMissing):
        f.run(["k3d", "version"])
    assert f.which("k3d") is None
