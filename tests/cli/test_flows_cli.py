"""The flow tasks as a user runs them: observe --flows, flows-check,
matrix-from-flows, their exit codes and their one-line errors."""

import json
from pathlib import Path

import pytest

from support.cli_process import run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHI_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def test_observe_a_file_then_check_and_draft(env):
    out = run(*["observe", "--flows", str(FIXTURES / "calico-flows.log")])
    assert out.returncode == 0, out.stderr
    assert "recorded 5 flow(s) of 5 read from" in out.stdout
    assert "(cap: 1000000 flows, 64 MiB)" in out.stdout
    check = run(*["flows-check"])
    assert check.returncode == 3
    assert "[1/9] default-deny: would newly block" in check.stdout
    assert "flows-check: FAIL" in check.stdout
    ok = run(*["flows-check", "--accept-blocking", "dashi-serving/titiler dashi-catalog/stac-fastapi 8080"])
    assert ok.returncode == 0 and "flows-check: OK" in ok.stdout
    data = json.loads(run(*["flows-check", "--json"]).stdout)
    assert data["ok"] is False and data["observed"]["flows"] == 60
    draft = run(*["matrix-from-flows", "--out", str(env / "draft.yaml")])
    assert draft.returncode == 0 and "from: dashi-serving/titiler" in (env / "draft.yaml").read_text()


def test_caps_are_reported(env):
    out = run(*["observe", "--flows", str(FIXTURES / "calico-flows.log"), "--max-flows", "2"])
    assert out.returncode == 0 and "stopped at its cap (2 flows)" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["flows-check"], "error: no recording of profile dashi's traffic"),
    (["observe"], "error: observe needs one of --duration D"),
    (["observe", "--duration", "soon"], "error: --duration: 'soon' is not a duration"),
    (["flows-check", "--flows", "/nonexistent.json"], "error: /nonexistent.json: cannot read"),
    (["flows-check", "--flows", str(FIXTURES / "README.md")], "README.md: line 1: not JSON"),
    (["network-policies-up", "--hubble", "127.0.0.1:1"], "error: --hubble and --accept-blocking go with --observe D"),
])
def test_bad_input_is_one_line(env, args, message):
    out = run(*args)
    assert out.returncode == 1 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
