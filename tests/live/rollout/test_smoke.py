"""inv smoke: probe the whole matrix now, report it, exit 0 only when all match."""

from __future__ import annotations

import io
import json
import re

import pytest
from invoke import Context
from invoke.exceptions import Exit
from rich.console import Console

import tasks
from cluster.cli import rollout
from cluster.cli.rollout import smoke as cli_smoke
from cluster.live.record.drift import infer_applied
from cluster.live.record.files import STATE_ENV
from cluster.live.record.identity import ClusterState, identify
from cluster.live.record.policies import is_ours, mark_ours
from cluster.live.safety.lock import ClusterLock
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube

NP = "networking.k8s.io/v1"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    # Polling with a real clock would make a failing smoke wait 10 s per run.
    monkeypatch.setenv("DASHI_POLL_TIMEOUT", "0")
    clock = FakeClock()
    kube = FakeKube(clock=clock)
    profile = load_profile("environments")
    for obj in profile.namespace_objects + profile.workload_objects:
        kube.apply(obj)
    return kube, profile, tmp_path


def apply_steps(kube, profile, k):
    for step in profile.steps[:k]:
        for obj in step.objects:
            kube.apply(mark_ours(obj, step.name))


def smoke(kube, tmp_path, **kw):
    buf = io.StringIO()
    code = cli_smoke("environments", kube_factory=lambda ctx: kube,
                     out=Console(file=buf, width=200, color_system=None), **kw)
    return code == 0, buf.getvalue()


def test_smoke_passes_on_a_cluster_at_a_verified_step(env):
    kube, profile, tmp = env
    apply_steps(kube, profile, 2)
    kube.calls.clear()
    ok, out = smoke(kube, tmp, json_path=str(tmp / "r.json"), markdown_path=str(tmp / "r.md"))
    assert ok and out.splitlines()[-1] == "smoke: PASS"
    assert out.splitlines()[0] == ("Cluster: k3d-dashi (https://0.0.0.0:6550) - probe profile environments's "
                                   "matrix (read-only)")
    assert "environments after allow-dns (2/3): 113 edges, 26 allowed by the policies; probed: 113 as predicted, " \
           "0 mismatched, 0 errors, 0 unprobed" in out
    assert "predicted (engine)" in out and "observed (live probes)" in out
    assert kube.writes() == []  # read-only
    data = json.loads((tmp / "r.json").read_text())
    assert (data["ok"], data["state"], data["summary"]["edges"]) == (True, "after allow-dns (2/3)", 113)
    assert (tmp / "r.md").read_text().startswith("# Network policy smoke test: PASS")


def test_smoke_writes_the_same_report_as_a_page_which_the_markdown_links(env):
    kube, profile, tmp = env
    apply_steps(kube, profile, 3)
    kube.enforce = False
    reports = tmp / "reports"
    reports.mkdir()
    ok, out = smoke(kube, tmp, json_path=str(reports / "r.json"), markdown_path=str(reports / "r.md"),
                    html_path=str(reports / "r.html"))
    assert not ok and f"HTML report: {reports / 'r.html'}" in out
    assert "[HTML report](<r.html>)" in (reports / "r.md").read_text()
    data = json.loads((reports / "r.json").read_text())
    page = (reports / "r.html").read_text()
    assert page.count('<g class="cell"') == len(data["edges"]) == 113
    # every edge the probes saw open where the policies block it is framed, with the probe's badge
    mismatched = sum(1 for e in data["edges"] if "mismatch" in e["problems"])
    framed = re.findall(r'data-probe="(\w+)"\s+data-problem="yes"', page)
    assert mismatched and framed == ["connected"] * mismatched
    assert '<p class="verdict verdict-fail" data-ok="no">' in page


def test_smoke_on_an_untouched_cluster_expects_everything_open(env):
    kube, _, tmp = env
    ok, out = smoke(kube, tmp)
    assert ok and "at baseline (no step applied): 113 edges, 113 allowed" in out


def test_smoke_fails_when_the_cni_does_not_enforce(env):
    kube, profile, tmp = env
    apply_steps(kube, profile, 3)
    kube.enforce = False
    ok, out = smoke(kube, tmp, markdown_path=str(tmp / "r.md"))
    assert not ok and out.splitlines()[-1] == "smoke: FAIL"
    assert "develop/debug -> develop/backend 8080/TCP: mismatch" in (tmp / "r.md").read_text()
    assert "every edge the policies block was observed open" in out


def test_smoke_fails_when_our_policies_match_no_step(env):
    kube, profile, tmp = env
    apply_steps(kube, profile, 3)
    kube.delete(NP, "NetworkPolicy", "allow-dns", "staging")
    ok, out = smoke(kube, tmp)
    assert not ok
    assert "closest is after allow-from-ingress-controller (3/3): staging/allow-dns missing. Intent not checked" in out


def test_infer_applied_reads_the_step_from_the_live_policies(env):
    kube, profile, _ = env
    ours = lambda: [p for p in kube.objects("NetworkPolicy") if is_ours(p)]  # noqa: E731
    assert infer_applied(profile, ours()) == 0
    apply_steps(kube, profile, 1)
    assert infer_applied(profile, ours()) == 1
    apply_steps(kube, profile, 3)
    assert infer_applied(profile, ours()) == 3
    kube.delete(NP, "NetworkPolicy", "default-deny", "develop")
    assert infer_applied(profile, ours()) is None


def test_smoke_says_when_a_rollout_holds_the_cluster(env):
    kube, _, tmp = env
    with ClusterLock(ClusterState(identify(kube)).dir):
        ok, out = smoke(kube, tmp)
    assert ok and "another run is changing this cluster right now" in out


def test_smoke_records_its_result_in_the_history(env):
    kube, profile, tmp = env
    apply_steps(kube, profile, 1)
    smoke(kube, tmp)
    buf = io.StringIO()
    rollout.history("environments", context="k3d-dashi", kube_factory=lambda ctx: kube,
                    out=Console(file=buf, width=250, color_system=None))
    text = buf.getvalue()
    assert "smoke" in text and "default-deny" in text and "ok: 113 edges, 0 mismatched" in text


# -- the tasks -----------------------------------------------------------------------


def test_the_smoke_task_exits_1_on_a_mismatch(env, monkeypatch):
    kube, profile, _ = env
    apply_steps(kube, profile, 1)
    kube.enforce = False
    monkeypatch.setattr(rollout, "real_kube", lambda context: kube)
    with pytest.raises(Exit) as err:
        tasks.smoke(Context(), profile="environments")
    assert err.value.code == 1


def test_the_smoke_task_passes(env, monkeypatch):
    kube, _, _ = env
    monkeypatch.setattr(rollout, "real_kube", lambda context: kube)
    assert tasks.smoke(Context(), profile="environments") is None


def test_tasks_turn_our_errors_into_one_line(env, monkeypatch):
    kube, _, _ = env
    monkeypatch.setattr(rollout, "real_kube", lambda context: kube)
    with pytest.raises(Exit) as err:
        tasks.rollback(Context(), profile="environments", to="no-such-step")
    assert (err.value.code, str(err.value.message).splitlines()[0]) == \
        (1, "error: no step 'no-such-step' in profile environments (steps: default-deny, allow-dns, "
            "allow-from-ingress-controller)")
    with pytest.raises(Exit) as err:
        tasks.network_policies_up(Context(), profile="nope")
    assert err.value.message.startswith("error: unknown profile 'nope'")


def test_the_up_and_rollback_tasks_drive_a_cluster(env, monkeypatch, capsys):
    kube, profile, _ = env
    monkeypatch.setenv("DASHI_POLL_TIMEOUT", "10")
    monkeypatch.setattr(rollout, "real_kube", lambda context: kube)
    tasks.network_policies_up(Context(), profile="environments", until="allow-dns")
    tasks.rollback(Context(), profile="environments")
    tasks.history(Context(), profile="environments", context="k3d-dashi")
    out = capsys.readouterr().out
    assert "[2/3] allow-dns: verified" in out and "Rolled back: after default-deny (1/3), verified live." in out
    assert [p["metadata"]["name"] for p in kube.objects("NetworkPolicy")] == ["default-deny"] * 3
    assert "step-verified" in out and "rollback" in out
