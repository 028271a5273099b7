"""The command line itself: one meaning per short flag, --json on every
reporting task (errors too), exit codes scripts can gate on, the dry run
that fails on a step that would not do what it should, the dashi binary."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from invoke import Collection

import tasks as root_tasks
from cluster import paths
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


def test_shipped_files_are_found_after_a_non_editable_install(monkeypatch, tmp_path):
    """Outside a clone the shipped profiles and CNI values live under <prefix>/share
    (pyproject's data-files); tests/cli/test_installed.py installs the real wheel."""
    monkeypatch.delenv("DASHI_MANIFESTS", raising=False)
    site_packages = tmp_path / "site-packages"
    (site_packages / "manifests").mkdir(parents=True)  # another distribution's: not ours
    monkeypatch.setattr(paths, "REPO_ROOT", site_packages)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    for name in ("manifests", "cni"):
        (tmp_path / "venv" / "share" / "dashi-cluster" / name).mkdir(parents=True)
        assert paths.shipped(name) == tmp_path / "venv" / "share" / "dashi-cluster" / name
    assert profile_mod._manifests_dir() == tmp_path / "venv" / "share" / "dashi-cluster" / "manifests"
    pyproject = (ROOT / "pyproject.toml").read_text()
    shipped = {p.parent.relative_to(ROOT / "manifests").as_posix() for p in (ROOT / "manifests").rglob("*.yaml")}
    assert shipped >= {f"{n}{s}" for n in ("dashi", "environments") for s in ("", "/policies", "/workloads")}
    for directory in shipped:
        assert f'"share/dashi-cluster/manifests/{directory}" = ["manifests/{directory}/*.yaml"]' in pyproject
    for cni in ("calico", "cilium"):
        assert f'"share/dashi-cluster/cni/{cni}" = ["cni/{cni}/*.yaml"]' in pyproject
    assert {p.parent.name for p in (ROOT / "cni").rglob("*")} <= {"cni", "calico", "cilium"}


def test_dashi_home_is_the_working_directory(monkeypatch, tmp_path):
    """README's ./.dashi is the working directory's, not the package's."""
    monkeypatch.delenv("DASHI_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.dashi_home() == tmp_path / ".dashi" and paths.default_bin_dir() == tmp_path / ".dashi" / "bin"
    monkeypatch.setenv("DASHI_HOME", str(tmp_path / "elsewhere"))
    assert paths.dashi_home() == tmp_path / "elsewhere"


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


def test_the_rollout_s_json_and_html_hold_every_verification_of_the_run(cluster, capsys, tmp_path):
    page = tmp_path / "up.html"
    assert rollout.up("environments", as_json=True, html_path=str(page)) == 0
    captured = capsys.readouterr()
    up = json.loads(captured.out)
    assert [v["purpose"] for v in up["verifications"]] == [
        "step 1/3 default-deny", "step 2/3 allow-dns", "step 3/3 allow-from-ingress-controller"]
    assert all(v["report"]["ok"] and len(v["report"]["edges"]) == 113 for v in up["verifications"])
    assert f"HTML report: {page}" in captured.err
    text = page.read_text()
    assert [h for h in re.findall(r'<section id="verification-\d+" class="step step-pass" data-heading="([^"]+)"',
                                  text)] == [v["purpose"] for v in up["verifications"]]
    # the edges each step opens by the intended matrix, which the offline
    # check finds the policies open, are marked on its grid
    opened = [sum(e["change"] == "opened" for e in v["report"]["edges"]) for v in up["verifications"]]
    assert policy.policies_check("environments", [], as_json=True) == 0
    check = json.loads(capsys.readouterr().out)
    assert opened == [len(s["opened"]) for s in check["steps"]] == [0, 18, 6]
    assert text.count('data-change="opened"') == sum(opened)
    # a re-run has nothing to verify: the page says so
    assert rollout.up("environments", html_path=str(page)) == 0
    assert "no verification ran in this run" in page.read_text()


def test_the_dry_run_s_page_is_the_predicted_check(tmp_path, capsys):
    page = tmp_path / "dry.html"
    assert rollout.up("environments", dry_run=True, until="allow-dns", html_path=str(page)) == 0
    assert f"HTML report: {page}" in capsys.readouterr().out
    text = page.read_text()
    assert "network-policies-up --dry-run: profile environments" in text
    assert re.findall(r'data-heading="([^"]+)"', text) == ["Step 1: default-deny", "Step 2: allow-dns"]


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


# -- a task's flag before the task name ----------------------------------------------------


def test_a_tasks_flag_before_the_task_name_is_said_so_with_the_command_it_meant():
    from cluster.cli.argv import misplaced_flags

    flags = dashi_main._task_flags(dashi_main.program.namespace)
    said = lambda *argv: misplaced_flags(list(argv), flags)  # noqa: E731
    assert said("-p", "environments", "policies-check", "-q") == (
        "-p environments: a task's flags go after the task name: dashi policies-check -p environments -q "
        "(before it, dashi reads only its own: --list, --help, --version, --debug)")
    assert said("--profile=environments", "explain", "a/b", "c/d", "80").startswith(
        "--profile=environments: a task's flags go after the task name: dashi explain --profile=environments a/b")
    # smoke's --json takes a value or none: the task name is never taken for it.
    assert said("-j", "smoke").startswith("-j: a task's flags go after the task name: dashi smoke -j (")
    assert said("-c", "k3d-x").startswith("-c k3d-x: a task's flags go after the task name: dashi TASK -c k3d-x (")
    # dashi's own flags, and flags in their place, are invoke's to read.
    for argv in (["--list"], ["-d", "policies-check"], ["--help", "policies-check"], ["policies-check", "-p", "x"],
                 ["-V"], ["explain", "-p", "environments", "a/b", "c/d", "80"]):
        assert said(*argv) is None, argv


def test_the_flags_are_read_only_when_one_may_be_out_of_place():
    from cluster.cli.argv import may_be_misplaced

    names = dashi_main.program.namespace.task_names
    assert may_be_misplaced(["-p", "x", "policies-check"], names)
    assert may_be_misplaced(["-d", "--profile=x", "explain"], names)
    assert not may_be_misplaced(["policies-check", "-p", "x"], names)
    assert not may_be_misplaced(["-d", "--list"], names)
    assert not may_be_misplaced([], names)
