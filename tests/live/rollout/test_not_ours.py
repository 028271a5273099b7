"""Policies that are not ours, and changes to ours by someone else.

A policy is ours by its label; every other is someone else's (another team,
a GitOps controller) and is never taken over, changed or deleted: the names
a step writes are checked before each step, a write made while someone
takes a name is refused by the API server (a create, never a forced
server-side apply), and every update and delete carries the uid and
resourceVersion that were read. A restore puts back exactly the snapshot,
also where another field manager changed one of ours (the fake keeps field
ownership as the API server does, so a server-side apply would leave those
changes in place here too).
"""

from __future__ import annotations


import pytest

from cluster.errors import DashiError, KubeConflict, KubeError
from cluster.live.record.policies import clean_policy
from cluster.seams.kube import MANAGED_BY_LABEL
from support.rollout_world import NP, STEPS

FOREIGN = {"apiVersion": NP, "kind": "NetworkPolicy",
           "metadata": {"name": "allow-dns", "namespace": "develop", "labels": {MANAGED_BY_LABEL: "flux"}},
           "spec": {"podSelector": {"matchLabels": {"team": "dns"}}, "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}}


def policy(world, ns, name) -> dict:
    (p,) = [p for p in world.kube.objects("NetworkPolicy", ns) if p["metadata"]["name"] == name]
    return p


def touched(world, ns, name) -> list:
    return [c for c in world.kube.writes("NetworkPolicy") if (c.namespace, c.name) == (ns, name)]


def test_a_policy_made_mid_run_under_a_later_steps_name_stops_the_run_before_that_step(world):
    """Another team's GitOps controller creates develop/allow-dns while step
    1 is verified: the run stops before step 2 changes anything, naming the
    owner; the policy is left as it was, and a rollback leaves it alone."""
    made = []
    world.before_first_probe(  # the first probe of step 1's verification
        lambda: made.append(world.kube.as_manager("kustomize-controller").create(FOREIGN)))
    with pytest.raises(DashiError) as err:
        world.rollout().up()
    assert str(err.value) == (
        "step allow-dns: develop/allow-dns (managed by flux; field managers kustomize-controller): a policy that is "
        "not ours already has the name; nothing of this step was changed. Rename one of them (ours are in the "
        "profile's policy files)")
    assert world.ours() == world.through(1)
    rec = world.record()
    assert [s["name"] for s in rec["steps"]] == STEPS[:1] and rec["in_progress"] is None
    assert len(world.snapshot_ids()) == 1  # not even a snapshot of step 2
    world.rollout().rollback(to="baseline")
    assert world.ours() == {}
    assert policy(world, "develop", "allow-dns") == made[0]  # resourceVersion, managedFields and all
    assert [c.verb for c in touched(world, "develop", "allow-dns")] == ["create"]  # its own, nothing of ours


def test_a_name_taken_between_the_check_and_the_write_is_refused_by_the_api_server(world):
    """The race the check cannot close: the create fails (a forced
    server-side apply would have taken the policy over), the step is
    restored, the foreign policy stays as it was."""
    world.rollout().up(until="default-deny")
    made = []

    def taken(call):
        made.append(world.kube.as_manager("kubectl-create").create(FOREIGN))
        e = KubeConflict(f"create NetworkPolicy/allow-dns: 409 Conflict: networkpolicies.networking.k8s.io "
                         f'"{call.name}" already exists')
        e.status = 409
        return e

    world.kube.fail("create", "NetworkPolicy", name="allow-dns", namespace="develop", exc=taken)
    with pytest.raises(KubeError, match=r"^applying step allow-dns failed \(develop/allow-dns: a policy that is not "
                                        r"ours \(managed by flux; field managers kubectl-create\) took this name while "
                                        r"it was being written .*; restored snapshot 0002-before-allow-dns"):
        world.rollout().up()
    assert world.ours() == world.through(1)
    assert policy(world, "develop", "allow-dns") == made[0]


@pytest.mark.parametrize("edit", ["label", "edit", "both"])
def test_a_restore_puts_back_exactly_the_snapshot_after_someone_else_changed_our_policy(world, edit):
    """``kubectl label`` (field manager kubectl-label) adds a label,
    ``kubectl edit`` (kubectl-edit) widens the podSelector: the rollback
    takes both away, spec for spec and label for label."""
    world.rollout().up()
    before = clean_policy(policy(world, "develop", "allow-dns"))
    live = policy(world, "develop", "allow-dns")
    if edit in ("label", "both"):
        live["metadata"]["labels"]["owner"] = "team-b"
        live = world.kube.as_manager("kubectl-label").update(live)
    if edit in ("edit", "both"):
        live["spec"]["podSelector"] = {"matchLabels": {**live["spec"]["podSelector"].get("matchLabels", {}),
                                                       "tier": "any"}}
        live = world.kube.as_manager("kubectl-edit").update(live)
    world.rollout().rollback(to="allow-dns")
    after = clean_policy(policy(world, "develop", "allow-dns"))
    assert after == before
    assert {f["manager"] for f in policy(world, "develop", "allow-dns")["metadata"]["managedFields"]} == \
        {"dashi-cluster"}
    assert [s["name"] for s in world.record()["steps"]] == STEPS[:2] and world.record()["in_progress"] is None


def test_every_update_and_delete_names_the_object_it_read(world):
    world.rollout().up()
    live = policy(world, "develop", "allow-dns")
    live["metadata"]["labels"]["owner"] = "team-b"
    world.kube.as_manager("kubectl-label").update(live)
    uids = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"]["uid"]
            for p in world.kube.objects("NetworkPolicy")}
    world.kube.calls.clear()
    world.rollout().rollback(to="default-deny")
    writes = [c for c in world.kube.writes("NetworkPolicy") if c.verb in ("update", "delete")]
    assert {(c.verb, c.namespace, c.name) for c in writes} == {
        ("delete", ns, n) for ns in ("develop", "staging", "production") for n in ("allow-dns",)} | {
        ("delete", "develop", "allow-from-ingress-controller"),
        ("delete", "staging", "allow-from-ingress-controller"),
        ("delete", "production", "allow-from-ingress-controller")}
    for c in writes:
        pre = dict(c.preconditions)
        assert pre["uid"] == uids[(c.namespace, c.name)] and pre["resourceVersion"], c


def test_a_policy_changed_between_the_restores_read_and_its_write_is_read_again(world):
    """Someone relabels one of ours again just after the restore read it: the
    update's resourceVersion is stale, the API server refuses it, and the
    restore starts over from a fresh read instead of overwriting blindly."""
    world.rollout().up()
    before = clean_policy(policy(world, "develop", "allow-dns"))
    live = policy(world, "develop", "allow-dns")
    live["metadata"]["labels"]["owner"] = "team-b"
    world.kube.as_manager("kubectl-label").update(live)
    real_update, ours = world.kube.update, []

    def update(obj):  # our update, with someone else's change landing just before it
        if obj["kind"] != "NetworkPolicy":
            return real_update(obj)  # the lease's
        if not ours:
            again = policy(world, "develop", "allow-dns")
            again["metadata"]["labels"]["owner"] = "team-c"
            world.kube.as_manager("kubectl-label").update(again)
        ours.append(obj["metadata"]["resourceVersion"])
        return real_update(obj)

    world.kube.update = update
    world.rollout().rollback(to="allow-dns")
    assert len(ours) == 2 and ours[0] != ours[1]  # refused once (stale), then written from a fresh read
    assert clean_policy(policy(world, "develop", "allow-dns")) == before
