"""Stand-ins: applied with our label, waited on by status, idempotent, and never pushed into someone else's namespace."""

import pytest
from support.local_world import SSAKube

from cluster import versions
from cluster.errors import DashiError, GuardError
from cluster.live.setup import standins
from cluster.policy.profile import load_profile
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube


def _deploy(kube, profile, clock, **kw):
    return standins.deploy(kube, profile, sleep=clock.sleep, clock=clock, **kw)


@pytest.mark.parametrize("name", ["dashi", "environments"])
def test_deploy_applies_everything_and_waits_ready(name):
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    profile = load_profile(name)
    changed, note = _deploy(kube, profile, clock)
    assert changed
    n_objects = len(profile.namespace_objects) + len(profile.workload_objects)
    assert f"{n_objects} changed, 0 unchanged" in note
    applied = kube.calls_of("apply")
    assert len(applied) == n_objects
    # Namespaces first, then the workloads in the profile's order.
    assert [c.kind for c in applied[:len(profile.namespace_objects)]] == ["Namespace"] * len(profile.namespace_objects)
    for obj in profile.workload_objects:
        live = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
        mark = "annotations" if obj["metadata"]["name"] == "debug" else "labels"
        assert live["metadata"][mark][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    assert all(w.ready for w in standins.states(kube, profile.workload_objects))


def test_second_deploy_changes_nothing():
    clock = FakeClock()
    kube = SSAKube(clock=clock, sleep=clock.sleep)
    profile = load_profile("dashi")
    _deploy(kube, profile, clock)
    changed, note = _deploy(kube, profile, clock)
    assert not changed
    assert note.startswith("profile dashi: all ") and "objects unchanged" in note


def test_label_is_added_to_metadata_only_never_selectors():
    profile = load_profile("dashi")
    _, workloads = standins.objects(profile)
    for before, after in zip(profile.workload_objects, workloads):
        assert after["spec"] == before["spec"]
        assert MANAGED_BY_LABEL not in (before.get("metadata", {}).get("labels") or {})


def test_foreign_namespace_is_refused_unless_adopted():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dashi-data"}})
    profile = load_profile("dashi")
    with pytest.raises(GuardError, match="dashi-data already exist and are not managed by dashi-cluster"):
        _deploy(kube, profile, clock)
    assert [c.kind for c in kube.calls_of("apply")] == ["Namespace"]  # only our own setup call above
    changed, _ = _deploy(kube, profile, clock, adopt=True)
    assert changed


def test_timeout_names_what_is_not_ready():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    profile = load_profile("environments")
    namespaces, workloads = standins.objects(profile)
    standins.apply_all(kube, namespaces + workloads)
    dep = next(w for w in workloads if w["kind"] == "Deployment")
    kube.patch_status("apps/v1", "Deployment", dep["metadata"]["name"], dep["metadata"]["namespace"],
                      {"availableReplicas": 0, "updatedReplicas": 0})
    with pytest.raises(DashiError, match=f"stand-ins not ready after 10s: Deployment .*{dep['metadata']['name']} 0/1"):
        standins.wait_ready(kube, workloads, timeout_s=10, sleep=clock.sleep, clock=clock)


def test_profiles_run_the_pinned_agnhost_image():
    for name in ("dashi", "environments"):
        for obj in load_profile(name).workload_objects:
            spec = obj.get("spec", {})
            pod = spec.get("template", {}).get("spec") or spec
            for c in pod.get("containers") or []:
                assert c["image"] == versions.AGNHOST_IMAGE, (name, obj["metadata"]["name"])


def test_a_changed_manifest_is_reported_as_a_change():
    import copy

    clock = FakeClock()
    kube = SSAKube(clock=clock, sleep=clock.sleep)
    profile = load_profile("environments")
    _deploy(kube, profile, clock)
    edited = copy.deepcopy(profile)
    dep = next(o for o in edited.workload_objects if o["kind"] == "Deployment")
    dep["spec"]["replicas"] = 2
    changed, note = _deploy(kube, edited, clock)
    assert changed and note.startswith("profile environments: 1 changed, ")


def test_debug_pods_stay_unlabelled_and_are_marked_by_annotation():
    _, workloads = standins.objects(load_profile("dashi"))
    debug = [o for o in workloads if o["kind"] == "Pod"]
    assert [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in debug] == [
        f"dashi-{ns}/debug" for ns in ("platform", "catalog", "data", "serving", "monitoring")]
    for pod in debug:
        assert "labels" not in pod["metadata"]
        assert pod["metadata"]["annotations"] == {"dashi.io/role": "debug", MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def test_workloads_wait_for_every_new_namespaces_default_service_account():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, service_account_delay_s=2.0)
    profile = load_profile("environments")
    _deploy(kube, profile, clock)
    names = [ns["metadata"]["name"] for ns in profile.namespace_objects]
    calls = [c for c in kube.calls if c.verb in ("apply", "get")]
    first_workload = next(i for i, c in enumerate(calls) if c.verb == "apply" and c.kind != "Namespace")
    sa_gets = [c for c in calls[:first_workload] if c.kind == "ServiceAccount"]
    # Polled every 0.5 s until all are there (2 s after their namespace), each namespace asked each round.
    assert [c.namespace for c in sa_gets] == names * 5
    assert all(kube.get("v1", "ServiceAccount", "default", n) is not None for n in names)


def test_a_pod_in_a_namespace_without_its_service_account_is_refused_by_the_fake_as_by_the_api():
    kube = FakeKube(service_account_delay_s=None)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}})
    with pytest.raises(DashiError) as e:
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "fresh"},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert str(e.value) == ('pods "p" is forbidden: error looking up service account fresh/default: '
                            'serviceaccount "default" not found')


def test_no_service_account_controller_fails_before_any_workload_is_applied():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, service_account_delay_s=None)
    profile = load_profile("environments")
    with pytest.raises(DashiError, match=r"^namespace\(s\) develop, staging, production, ingress-nginx still have "
                                         r"no 'default' ServiceAccount after 120s"):
        _deploy(kube, profile, clock)
    assert {c.kind for c in kube.calls_of("apply")} == {"Namespace"}


def test_every_workload_kind_the_manifests_know_is_waited_for():
    from cluster.live.observe import readiness
    from cluster.policy.kinds import WORKLOAD_KINDS

    assert set(readiness.WORKLOAD_READY) == {*WORKLOAD_KINDS, "Pod"}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r", "namespace": "n", "generation": 2},
          "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "availableReplicas": 1}}
    assert readiness.workload_ready(rs) == (False, "ReplicaSet n/r 1/2 available")
    rs["status"]["availableReplicas"] = 2
    assert readiness.workload_ready(rs) == (True, "ReplicaSet n/r 2/2 available")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "n"},
           "spec": {"parallelism": 2}, "status": {"ready": 1}}
    assert readiness.workload_ready(job) == (False, "Job n/j 1/2 ready")
    job["status"]["ready"] = 2
    assert readiness.workload_ready(job) == (True, "Job n/j 2/2 ready")
    assert readiness.workload_ready({**job, "status": {"succeeded": 1}}) == (True, "Job n/j complete")
