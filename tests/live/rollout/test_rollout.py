"""The step engine against a fake cluster: apply, verify, roll back, resume."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import yaml
from rich.console import Console
from support.rollout_world import NP, STEPS, RolloutWorld

from cluster.cli.rollout import up as cli_up
from cluster.errors import DashiError, GuardError, KubeError, LockError, SnapshotError, VerificationFailed
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.steprecord import current_state
from cluster.live.safety.lock import ClusterLock
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE

# -- the happy path ----------------------------------------------------------


def test_up_applies_snapshots_and_verifies_every_step(world):
    world.rollout().up()
    assert world.ours() == world.through(3)
    for p in world.kube.objects("NetworkPolicy"):
        assert p["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
        assert p["metadata"]["managedFields"][0]["manager"] == "dashi-cluster"
    assert world.applied_names() == [f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                                     for s in world.profile.steps for o in s.objects]
    rec = world.record()
    assert [s["name"] for s in rec["steps"]] == STEPS and rec["in_progress"] is None
    assert [s["snapshot"] for s in rec["steps"]] == world.snapshot_ids() == [
        "0001-before-default-deny", "0002-before-allow-dns", "0003-before-allow-from-ingress-controller"]
    assert all(s["summary"]["mismatch"] == 0 and s["summary"]["edges"] == 113 for s in rec["steps"])
    assert world.history() == [("step-verified", s, True) for s in STEPS]
    first = world.out.splitlines()[0]
    assert first == "Cluster: k3d-dashi (https://0.0.0.0:6550, local k3d cluster) - apply profile environments's policy steps"
    assert world.clock.slept == []  # a CNI that applies at once needs no re-polling


def test_snapshots_hold_the_state_before_each_step(world):
    world.rollout().up()
    snaps = world.pdir / "snapshots"
    applied = [yaml.safe_load((snaps / f"{i}.yaml").read_text()) for i in world.snapshot_ids()]
    assert [d["applied"] for d in applied] == [[], ["default-deny"], ["default-deny", "allow-dns"]]
    assert [len(d["policies"]) for d in applied] == [0, 3, 6]


def test_until_then_a_re_run_resumes_after_the_last_verified_step(world):
    world.rollout().up(until="allow-dns")
    assert world.ours() == world.through(2)
    world.kube.calls.clear()
    world.rollout().up()
    assert world.applied_names() == [f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                                     for o in world.profile.steps[2].objects]
    assert world.ours() == world.through(3)
    assert "2 of 3 steps verified here; applying allow-from-ingress-controller" in world.out


def test_nothing_to_do_changes_nothing(world):
    world.rollout().up()
    world.kube.calls.clear()
    world.rollout().up()
    assert "Nothing to do: after allow-from-ingress-controller (3/3) is verified on this cluster." in world.out
    assert world.kube.writes("NetworkPolicy") == [] and len(world.snapshot_ids()) == 3


def test_until_behind_the_current_step_points_at_rollback(world):
    world.rollout().up()
    with pytest.raises(DashiError, match="use inv rollback --to default-deny"):
        world.rollout().up(until="default-deny")


def test_the_full_dashi_profile(tmp_path):
    w = RolloutWorld(tmp_path, "dashi")
    w.rollout().up()
    assert w.ours() == w.through(9)
    rec = w.record()
    assert [s["summary"]["unprobed"] for s in rec["steps"]] == [0] * 9  # UDP to DNS is probed for real
    assert [s["summary"]["predicted_allowed"] for s in rec["steps"]] == [0, 28, 33, 34, 35, 37, 44, 44, 45]


def test_a_cni_that_rejects_instead_of_dropping_verifies(tmp_path):
    # k3s's kube-router answers denied packets with ICMP port-unreachable:
    # agnhost says REFUSED, which must count as blocked, not as open.
    w = RolloutWorld(tmp_path, "environments", reject=True)
    w.cluster().save_cni(name="k3s", deny_behaviour="reject")  # what the canary measures there
    w.rollout().up()
    assert w.ours() == w.through(3)
    rec = w.record()
    assert [s["name"] for s in rec["steps"]] == STEPS and rec["in_progress"] is None
    assert all(s["summary"]["mismatch"] == 0 for s in rec["steps"])
    assert w.history() == [("step-verified", s, True) for s in STEPS]
    assert w.clock.slept == []  # a rejection is a final answer: no re-polling


# -- failures -------------------------------------------------------------------


def test_a_cni_that_enforces_nothing_is_rolled_back_with_evidence(tmp_path):
    w = RolloutWorld(tmp_path, enforce=False)
    with pytest.raises(VerificationFailed) as err:
        w.rollout().up()
    assert str(err.value).startswith("step default-deny rolled back to snapshot 0001-before-default-deny: ")
    assert "the restore is verified" in str(err.value)
    assert w.ours() == {}  # back to the snapshot: no policies of ours
    rec = w.record()
    assert rec["steps"] == [] and rec["in_progress"] is None
    assert w.history() == [("step-failed", "default-deny", False), ("restored", None, True)]
    # each disagreeing probe re-polled for 10 s (rounds 0.2 s apart on the fake clock), then called a mismatch
    assert w.clock.slept == [0.2] * 50
    out = w.out
    assert "every edge the policies block was observed open" in out
    assert "develop/frontend -> develop/backend 8080/TCP: mismatch" in out
    assert "selected by develop/default-deny" in out
    assert "... and 80 more edge(s)" in out  # the terminal shows 25; the files hold all 105
    evidence = w.pdir / "evidence"
    assert sorted(p.name for p in evidence.iterdir()) == [
        "0001-before-default-deny-default-deny-failed.html", "0001-before-default-deny-default-deny-failed.json",
        "0001-before-default-deny-default-deny-failed.md"]
    data = json.loads((evidence / "0001-before-default-deny-default-deny-failed.json").read_text())
    page = (evidence / "0001-before-default-deny-default-deny-failed.html").read_text()
    # The page shows the failed verification (the only one this run made),
    # and the Markdown links it; the browser tests look at such pages.
    assert page.count('<section id="verification-') == 1 and "step 1/3 default-deny" in page
    assert page.count('data-problem="yes"') == 105
    assert "[HTML report](<0001-before-default-deny-default-deny-failed.html>)" in \
        (evidence / "0001-before-default-deny-default-deny-failed.md").read_text()
    debug = next(e for e in data["edges"] if (e["src"], e["dst"], e["port"]) == ("develop/debug", "develop/backend", 8080))
    assert (debug["predicted"], debug["observed"], debug["kind"], debug["attempts"]) == (False, True, "connected", 51)
    assert data["summary"]["mismatch"] == 105  # 96 TCP + 9 UDP-to-DNS (from the namespaces under default-deny), now probed


def test_a_slow_cni_is_waited_for(tmp_path):
    w = RolloutWorld(tmp_path, lag_seconds=3.0)
    w.rollout().up()
    assert [s["name"] for s in w.record()["steps"]] == STEPS
    # Rounds of probes take no time on the fake clock: each follows the last
    # after the least spacing (0.2 s), 15 per step until the CNI caught up.
    assert w.clock.slept == [0.2] * 45


def test_an_api_error_during_apply_restores_the_snapshot(world):
    world.rollout().up(until="default-deny")
    world.kube.fail("create", "NetworkPolicy", after=1)  # the second object of allow-dns
    with pytest.raises(KubeError, match="applying step allow-dns failed .*; restored snapshot "
                                        "0002-before-allow-dns: the restore is verified live"):
        world.rollout().up()
    assert world.ours() == world.through(1)
    assert world.record()["in_progress"] is None
    assert world.history()[-2:] == [("restored", None, True), ("step-failed", "allow-dns", False)]


def test_a_step_that_opens_an_unintended_edge_is_rolled_back_naming_the_policy(world):
    leaky = {"apiVersion": NP, "kind": "NetworkPolicy",
             "metadata": {"name": "allow-everything", "namespace": "develop"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}
    steps = list(world.profile.steps)
    steps[1] = dataclasses.replace(steps[1], objects=steps[1].objects + (leaky,))
    bad = dataclasses.replace(world.profile, steps=steps)
    with pytest.raises(VerificationFailed, match="unintended"):
        world.rollout(bad).up()
    assert world.ours() == world.through(1)
    assert "develop/debug -> ingress-nginx/ingress-nginx-controller 80/TCP: unintended" in world.out
    assert "egress of develop/debug: allowed by develop/allow-everything egress rule 1" in world.out
    assert [s["name"] for s in world.record()["steps"]] == ["default-deny"]


def test_drift_is_refused_before_anything_changes(world):
    world.rollout().up(until="default-deny")
    world.kube.delete(NP, "NetworkPolicy", "default-deny", "staging")
    world.kube.calls.clear()
    with pytest.raises(DashiError, match="differ from the 1 recorded step.*staging/default-deny missing"):
        world.rollout().up()
    assert world.kube.writes("NetworkPolicy") == []


def test_a_changed_profile_under_a_record_is_refused(world):
    world.rollout().up(until="allow-dns")
    renamed = dataclasses.replace(world.profile, steps=[dataclasses.replace(world.profile.steps[0], name="deny")]
                                  + list(world.profile.steps[1:]))
    with pytest.raises(DashiError, match="the profile changed under a running rollout"):
        world.rollout(renamed).up()


def test_a_held_lock_refuses_a_second_run(world):
    with ClusterLock(world.cluster().dir, "someone else"):
        with pytest.raises(LockError, match="someone else"):
            world.rollout().up()
    assert world.kube.writes() == []


def test_a_cluster_that_is_not_k3d_needs_context_and_confirmation(tmp_path):
    w = RolloutWorld(tmp_path, context="prod-eu", server="https://10.0.0.1:6443")
    with pytest.raises(GuardError, match="name it explicitly with --context prod-eu"):
        w.rollout().up()
    assert w.out.splitlines()[0].startswith("Cluster: prod-eu (https://10.0.0.1:6443, NOT a local k3d cluster)")
    assert w.kube.writes() == [] and not w.pdir.exists()
    with pytest.raises(GuardError, match="re-run with --yes"):
        w.rollout(explicit_context="prod-eu").up()
    w.rollout(explicit_context="prod-eu", yes=True).up(until="default-deny")
    assert w.ours() == w.through(1)


# -- interruptions -----------------------------------------------------------------


def test_ctrl_c_while_applying_is_rolled_back_and_resumed_by_the_next_run(world):
    world.kube.fail("create", "NetworkPolicy", after=4, exc=KeyboardInterrupt)  # mid allow-dns
    with pytest.raises(KeyboardInterrupt):
        world.rollout().up()
    assert "Interrupted during step allow-dns (applying)" in world.out
    progress = world.record()["in_progress"]
    assert (progress["phase"], progress["step"], progress["snapshot"]) == \
        ("applying", "allow-dns", "0002-before-allow-dns")
    assert current_state(world.cluster().dir)["environments"].in_place == ["default-deny", "allow-dns"]
    with ClusterLock(world.cluster().dir):  # released, despite the interrupt
        pass
    world.rollout().up()
    assert "was cut off while applying step allow-dns. Rolling back: restoring snapshot 0002-before-allow-dns" \
        in world.out
    assert world.ours() == world.through(3)
    assert ("resolved", "allow-dns", True) in world.history()


def test_ctrl_c_while_verifying_is_resumed_by_verifying_again(world):
    world.rollout().up(until="default-deny")
    world.kube.fail("exec", after=5, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        world.rollout().up(until="allow-dns")
    assert world.record()["in_progress"]["phase"] == "verifying"
    world.kube.calls.clear()
    world.rollout().up(until="allow-dns")
    assert "cut off while verifying step allow-dns; its policies are all in place. Resuming" in world.out
    assert world.kube.writes("NetworkPolicy") == []  # nothing re-applied
    assert [s["name"] for s in world.record()["steps"]] == ["default-deny", "allow-dns"]


def test_ctrl_c_during_a_rollback_is_finished_by_the_next_rollback(world):
    world.rollout().up()
    world.kube.fail("delete", "NetworkPolicy", after=1, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        world.rollout().rollback(to="baseline")
    assert world.record()["in_progress"]["phase"] == "restoring"
    world.rollout().rollback()
    assert "cut off while restoring" in world.out
    assert world.ours() == {}


# -- rollback --------------------------------------------------------------------


def test_rollback_defaults_to_one_step_back(world):
    world.rollout().up()
    world.rollout().rollback()
    assert world.ours() == world.through(2)
    assert [s["name"] for s in world.record()["steps"]] == STEPS[:2]
    assert world.snapshot_ids()[-1] == "0004-before-rollback"
    assert world.history()[-1] == ("rollback", "allow-dns", True)
    assert "Rolled back: after allow-dns (2/3), verified live." in world.out


def test_rollback_to_a_step_and_to_baseline(world):
    world.rollout().up()
    world.rollout().rollback(to="default-deny")
    assert world.ours() == world.through(1)
    world.rollout().rollback(to="baseline")
    assert world.ours() == {} and world.record()["steps"] == []


def test_rollback_never_touches_policies_that_are_not_ours(world):
    theirs = {"apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "team-rule", "namespace": "develop"},
              "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nothing-here"}},
                       "policyTypes": ["Ingress"]}}
    world.kube.apply(theirs)
    world.rollout().up()
    world.kube.calls.clear()
    world.rollout().rollback(to="baseline")
    assert world.ours() == {}
    assert [p["metadata"]["name"] for p in world.kube.objects("NetworkPolicy")] == ["team-rule"]
    assert "develop/team-rule" not in {f"{c.namespace}/{c.name}" for c in world.kube.writes()}
    assert "policies that are not ours also apply here: develop/team-rule" in world.out


def test_a_rollback_can_itself_be_undone(world):
    world.rollout().up()
    world.rollout().rollback(to="baseline")
    world.rollout().rollback(to="allow-from-ingress-controller")  # from the snapshot taken before the rollback
    assert world.ours() == world.through(3)
    assert [s["name"] for s in world.record()["steps"]] == STEPS


def test_a_corrupt_snapshot_is_refused_and_nothing_changes(world):
    world.rollout().up()
    snap = world.pdir / "snapshots" / "0003-before-allow-from-ingress-controller.yaml"
    snap.write_text(snap.read_text().replace("staging", "stagin9"))
    world.kube.calls.clear()
    with pytest.raises(SnapshotError, match="does not match its checksum"):
        world.rollout().rollback()
    assert world.kube.writes() == []
    assert world.ours() == world.through(3)


def test_rollback_with_nothing_recorded(world):
    with pytest.raises(DashiError, match="nothing to roll back"):
        world.rollout().rollback()


def test_rollback_to_a_step_never_applied(world):
    world.rollout().up(until="default-deny")
    with pytest.raises(DashiError, match="allow-dns is not applied yet"):
        world.rollout().rollback(to="allow-dns")


def test_baseline_without_a_snapshot_means_no_policies_of_ours(world):
    world.rollout().up()
    index = world.pdir / "snapshots" / "index.yaml"
    data = yaml.safe_load(index.read_text())
    data["snapshots"] = [s for s in data["snapshots"] if s["applied"]]
    index.write_text(yaml.safe_dump(data))
    world.rollout().rollback(to="baseline")
    assert "No snapshot of the baseline on record: wrote 0004-before-baseline (no policies of ours)" in world.out
    assert world.ours() == {}
    # The baseline is a real snapshot now: on disk, in the index, labelled by what it holds.
    entry = next(s for s in yaml.safe_load(index.read_text())["snapshots"] if s["id"] == "0004-before-baseline")
    assert entry["applied"] == [] and (world.pdir / "snapshots" / entry["file"]).exists()


# -- offline and status -----------------------------------------------------------


def test_dry_run_needs_no_cluster():
    buf = io.StringIO()

    def no_cluster(context):
        raise AssertionError("a dry run must not build a client")

    cli_up("environments", dry_run=True, kube_factory=no_cluster,
           out=Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert out.splitlines()[0] == "Dry run: profile environments, steps 1..3 of 3; no cluster is contacted."
    for step in STEPS:
        assert f"] {step} (seed," in out
    assert "    NetworkPolicy production/allow-from-ingress-controller" in out
    assert "predicted: 8 of 113 edges allowed (0 opened, 105 closed by this step)" in out
    assert "predicted: 32 of 113 edges allowed (6 opened, 0 closed by this step)" in out


def test_current_state_for_the_status_task(world):
    assert current_state(world.cluster().dir) == {}
    world.rollout().up(until="allow-dns")
    state = current_state(world.cluster().dir)
    assert list(state) == ["environments"]
    rec = state["environments"]
    assert (rec.applied, rec.verified, rec.in_progress, rec.fully_verified) == (STEPS[:2], STEPS[:2], None, True)


def test_probe_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("DASHI_PROBE_WORKERS", "8")
    monkeypatch.setenv("DASHI_POLL_TIMEOUT", "2.5")
    s = ProbeSettings.from_env()
    assert (s.workers, s.timeout_s, s.poll_interval, s.poll_timeout) == (8, 0.3, 0.2, 2.5)
    monkeypatch.setenv("DASHI_PROBE_WORKERS", "many")
    with pytest.raises(DashiError, match="DASHI_PROBE_WORKERS='many' is not a number"):
        ProbeSettings.from_env()
    monkeypatch.setenv("DASHI_PROBE_WORKERS", "16")
    # float() reads these as numbers: a probe that times out at once or never,
    # a verification that polls forever while holding the cluster's lease.
    for name, raw, bounds in [("DASHI_PROBE_TIMEOUT", "nan", "0.1 to 60 seconds"),
                              ("DASHI_POLL_TIMEOUT", "inf", "0 to 600 seconds"),
                              ("DASHI_POLL_INTERVAL", "-1", "0.1 to 60 seconds"),
                              ("DASHI_POLL_TIMEOUT", "1e9", "0 to 600 seconds")]:
        monkeypatch.setenv(name, raw)
        with pytest.raises(DashiError, match=f"^{name}='{raw}': must be from {bounds}$"):
            ProbeSettings.from_env()
        monkeypatch.delenv(name)
