"""The command line itself: one meaning per short flag, --json on every
reporting task (errors too), exit codes scripts can gate on, the dry run
that fails on a step that would not do what it should, the dashi binary."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from invoke import Collection

import tasks as root_tasks
from cluster.cli import main as dashi_main
from cluster.cli import policy, rollout
from cluster.cli import tasks as cli_tasks
from cluster.live.record.files import STATE_ENV
from cluster.policy import profile as profile_mod
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support import ROOT



def _flags() -> dict[str, dict[str, tuple[str, ...]]]:
    """task -> flag name -> its names, as invoke will parse them."""
    out = {}
    for name, t in Collection.from_module(cli_tasks).tasks.items():
        out[name] = {a.name: tuple(a.names) for a in t.get_arguments()}
    return out


def test_a_short_flag_means_the_same_in_every_task():
    meaning: dict[str, set[str]] = {}
    for task_flags in _flags().values():
        for name, names in task_flags.items():
            for n in names:
                if len(n) == 1:
                    meaning.setdefault(n, set()).add(name)
    assert all(len(v) == 1 for v in meaning.values()), meaning
    flags = _flags()
    assert flags["explain"]["profile"] == ("profile", "p") and flags["explain"]["port"] == ("port",)
    assert flags["status"]["context"] == ("context", "c") and flags["cluster-up"]["cni"] == ("cni",)
    assert {t for t, f in flags.items() if "json" in f} >= {
        "policies-check", "explain", "status", "history", "smoke", "network-policies-up"}


def test_inv_in_the_clone_and_dashi_have_the_same_tasks():
    assert set(Collection.from_module(root_tasks).task_names) == set(Collection.from_module(cli_tasks).task_names)
    assert dashi_main.program.namespace.task_names.keys() == Collection.from_module(cli_tasks).task_names.keys()
    proc = subprocess.run([sys.executable, "-m", "cluster.cli.main", "--version"], capture_output=True, text=True,
                          cwd="/")
    assert proc.returncode == 0 and proc.stdout.strip() == "dashi 0.1.0"


def test_profiles_are_found_after_a_non_editable_install(monkeypatch, tmp_path):
    """Outside a clone the shipped profiles live under <prefix>/share (pyproject's data-files)."""
    monkeypatch.delenv("DASHI_MANIFESTS", raising=False)
    monkeypatch.setattr(profile_mod, "REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert profile_mod._manifests_dir() == tmp_path / "venv" / "share" / "dashi-cluster" / "manifests"
    pyproject = (ROOT / "pyproject.toml").read_text()
    shipped = {p.parent.relative_to(ROOT / "manifests").as_posix() for p in (ROOT / "manifests").rglob("*.yaml")}
    assert shipped >= {f"{n}{s}" for n in ("dashi", "environments") for s in ("", "/policies", "/workloads")}
    for directory in shipped:
        assert f'"share/dashi-cluster/manifests/{directory}" = ["manifests/{directory}/*.yaml"]' in pyproject


# -- explain -------------------------------------------------------------------------------


def test_explain_exit_codes_and_json(capsys):
    assert policy.explain("dashi", "dashi-data/prefect-worker", "dashi-platform/rustfs", "s3", None) == 0
    assert capsys.readouterr().out.startswith(
        "dashi-data/prefect-worker -> dashi-platform/rustfs 9000/TCP: ALLOWED")
    assert policy.explain("dashi", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080", None,
                          as_json=True) == policy.BLOCKED_EXIT == 3
    data = json.loads(capsys.readouterr().out)
    assert (data["allowed"], data["ingress"]["allowed"], data["ingress"]["selecting"]) == \
        (False, False, ["dashi-catalog/default-deny", "dashi-catalog/allow-catalog", "dashi-catalog/allow-monitoring",
                        "dashi-catalog/allow-ingress-port-forward"])


def test_explain_named_port_defaults_to_tcp_and_names_the_other_protocol(capsys):
    # kube-dns has dns/UDP and dns-tcp/TCP: "dns" alone is TCP, as the help says.
    with pytest.raises(Exception) as err:
        policy.explain("dashi", "dashi-data/debug", "kube-system/kube-dns", "dns", None)
    assert str(err.value) == ("kube-system/kube-dns has no port named 'dns' on TCP "
                              "(it has 'dns' on UDP: say dns/UDP)")
    assert policy.explain("dashi", "dashi-data/debug", "kube-system/kube-dns", "dns/udp", None) == 0
    assert "53/UDP: ALLOWED" in capsys.readouterr().out


# -- the dry run ---------------------------------------------------------------------------


def test_a_dry_run_fails_when_a_step_would_not_do_what_the_matrix_says(tmp_path, capsys):
    ok = rollout.up("environments", dry_run=True, as_json=True)
    assert ok == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and [s["step"] for s in data["steps"]] == [
        "default-deny", "allow-dns", "allow-from-ingress-controller"]
    typo = tmp_path / "environments"
    shutil.copytree(ROOT / "manifests" / "environments", typo)
    step = typo / "policies" / "03-allow-from-ingress-controller.yaml"
    step.write_text(step.read_text().replace("port: http}", "port: 8081}", 1))
    assert rollout.up(str(typo), dry_run=True) == 1
    out = capsys.readouterr().out
    assert "dry run: step 3 allow-from-ingress-controller: the predicted matrix differs from the intended one" in out
    assert "BLOCKED: ingress-nginx/ingress-nginx-controller -> develop/frontend" in out
    assert rollout.up(str(typo), dry_run=True, until="allow-dns") == 0  # the typo is in step 3


# -- --json of the cluster tasks, behind the fake cluster ---------------------------------------


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    monkeypatch.setenv("DASHI_POLL_TIMEOUT", "10")
    kube = FakeKube(clock=FakeClock())
    prof = load_profile("environments")
    for obj in prof.namespace_objects + prof.workload_objects:
        kube.apply(obj)
    monkeypatch.setattr(rollout, "real_kube", lambda context: kube)
    return kube, prof


def test_reporting_tasks_print_one_json_document_on_stdout(cluster, capsys):
    kube, prof = cluster
    assert rollout.up("environments", until="allow-dns", as_json=True) == 0
    captured = capsys.readouterr()
    up = json.loads(captured.out)
    assert (up["ok"], up["applied"], up["context"]) == (True, ["default-deny", "allow-dns"], "k3d-dashi")
    assert "[2/3] allow-dns: verified" in captured.err  # progress on stderr
    assert rollout.smoke("environments", as_json=True) == 0
    smoke = json.loads(capsys.readouterr().out)
    assert smoke["ok"] is True and smoke["state"].startswith("after allow-dns") and len(smoke["edges"]) == 113
    assert rollout.history("environments", as_json=True) == 0
    history = json.loads(capsys.readouterr().out)
    assert [e["event"] for e in history["entries"]].count("step-verified") == 2


def test_errors_with_json_are_a_json_object_on_stdout(cluster, capsys):
    from invoke import Context
    from invoke.exceptions import Exit

    with pytest.raises(Exit) as err:
        cli_tasks.smoke(Context(), profile="nope", json=True)
    assert err.value.code == 1 and err.value.message is None
    assert json.loads(capsys.readouterr().out) == {
        "error": "unknown profile 'nope' (known: dashi, dashi-cnp, environments)", "exit_code": 1}
    with pytest.raises(Exit):
        cli_tasks.explain(Context(), "x/y", "a/b", "80", json=True)
    assert json.loads(capsys.readouterr().out)["error"].startswith("no endpoint 'x/y' in profile dashi")


def test_status_json(cluster, capsys, monkeypatch):
    from cluster.cli import setup as cli_cluster

    kube, _ = cluster
    monkeypatch.setattr(cli_cluster, "real_kube", lambda context: kube)
    assert cli_cluster.status("dashi", profile="environments", context="k3d-dashi", as_json=True) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["context"] == "k3d-dashi" and data["standins"][1] > 0 and "rollout" in data
    assert "stand-ins (environments)" in captured.err
