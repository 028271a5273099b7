"""The fake cluster behaves like one, as far as this project looks."""

from __future__ import annotations

import pytest

from cluster.errors import KubeConflict, KubeError
from cluster.seams.kube import FIELD_MANAGER
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from cluster.testing.fakecluster.network import API_ADDRESS
from cluster.testing.fakecluster.store import Call, selector_matches

NP = "networking.k8s.io/v1"


def connect(kube, ns, pod, dest, proto="tcp"):
    return kube.exec(ns, pod, ["/agnhost", "connect", dest, "--timeout=1s", f"--protocol={proto}"])


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(name, namespace, replicas=1, labels=None, ports=((8080, "TCP"),)):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "ports": [
                                      {"containerPort": p, "protocol": pr} for p, pr in ports]}]}}}}


def deny_all(namespace):
    return {"apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def pod_named(kube, namespace, prefix):
    return next(p for p in kube.pods(namespace) if p["metadata"]["name"].startswith(prefix))


# -- the store --------------------------------------------------------------


def test_seeded_like_k3s():
    kube = FakeKube(context="k3d-lab")
    assert kube.calls == []  # seeding is not a call the code under test made
    assert [n["metadata"]["name"] for n in kube.objects("Namespace")] == \
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    (node,) = kube.objects("Node")
    assert node["metadata"]["name"] == "k3d-lab-server-0"
    assert node["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    (dns,) = kube.pods("kube-system")
    assert dns["metadata"]["labels"]["k8s-app"] == "kube-dns"
    assert dns["metadata"]["name"].startswith("coredns-")
    ep = kube.get("v1", "Endpoints", "kubernetes", "default")
    assert ep["subsets"][0]["addresses"] == [{"ip": API_ADDRESS}]
    (eps,) = kube.list("discovery.k8s.io/v1", "EndpointSlice", "default",
                       {"matchLabels": {"kubernetes.io/service-name": "kubernetes"}})
    assert eps["endpoints"][0]["addresses"] == [API_ADDRESS]
    assert API_ADDRESS.startswith("192.0.2.")  # TEST-NET-1: data only


def test_apply_sets_server_fields_and_a_no_op_apply_writes_nothing():
    kube = FakeKube()
    first = kube.apply(deny_all("default"))
    meta = first["metadata"]
    assert meta["generation"] == 1
    assert meta["managedFields"][0]["manager"] == FIELD_MANAGER
    again = kube.apply(deny_all("default"))
    # Server-side apply of the same configuration is a no-op: resourceVersion stays.
    assert again["metadata"] == meta
    changed = deny_all("default")
    changed["spec"]["policyTypes"] = ["Ingress"]
    after = kube.apply(changed)["metadata"]
    assert after["generation"] == 2 and int(after["resourceVersion"]) > int(meta["resourceVersion"])
    # A label change alone is a write too (metadata, not spec: generation stays).
    labelled = deny_all("default")
    labelled["spec"]["policyTypes"] = ["Ingress"]
    labelled["metadata"]["labels"] = {"a": "b"}
    out = kube.apply(labelled)["metadata"]
    assert out["generation"] == 2 and int(out["resourceVersion"]) > int(after["resourceVersion"])


def test_apply_again_after_someone_else_changed_our_fields_writes():
    kube = FakeKube()
    kube.apply(deny_all("default"))
    live = kube.get(NP, "NetworkPolicy", "deny", "default")
    live["spec"]["policyTypes"] = ["Ingress"]
    kube.update(live)  # another writer
    again = kube.apply(deny_all("default"))
    assert again["spec"]["policyTypes"] == ["Ingress", "Egress"]  # force: our fields are ours again


def test_create_refuses_an_existing_object_and_update_a_stale_resource_version():
    kube = FakeKube()
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "l", "namespace": "kube-system"},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 60,
                      "renewTime": "2025-01-01T00:00:00.000000Z"}}
    first = kube.create(lease)
    with pytest.raises(KubeConflict, match='leases.coordination.k8s.io "l" already exists') as err:
        kube.create(lease)
    assert err.value.status == 409
    mine = {**first, "spec": {**first["spec"], "holderIdentity": "b"}}
    second = kube.update(mine)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    with pytest.raises(KubeConflict, match="the object has been modified"):
        kube.update(mine)  # still carries the first resourceVersion
    with pytest.raises(KubeError, match="not found") as err:
        kube.update({**lease, "metadata": {"name": "nope", "namespace": "kube-system", "resourceVersion": "1"}})
    assert err.value.status == 404


def test_leases_are_validated_like_the_api_server():
    kube = FakeKube()
    base = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "l", "namespace": "kube-system"}}
    for spec, what in [({"renewTime": "2025-01-01T00:00:00Z"}, "not a MicroTime"),
                       ({"leaseDurationSeconds": 0}, "must be greater than 0")]:
        with pytest.raises(KubeError, match=what):
            kube.create({**base, "spec": spec})
    assert kube.get("coordination.k8s.io/v1", "Lease", "l", "kube-system") is None


def test_apply_does_not_alias_the_callers_object():
    kube = FakeKube()
    obj = deny_all("default")
    live = kube.apply(obj)
    live["spec"]["podSelector"] = {"matchLabels": {"x": "y"}}
    assert "uid" not in obj["metadata"]
    assert kube.get(NP, "NetworkPolicy", "deny", "default")["spec"]["podSelector"] == {}


def test_namespace_gets_its_name_label_and_missing_namespace_is_refused():
    kube = FakeKube()
    assert kube.apply(ns("team"))["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    with pytest.raises(KubeError, match='namespaces "nope" not found'):
        kube.apply(deny_all("nope"))


def test_invalid_networkpolicy_is_refused_like_the_api_server():
    kube = FakeKube()
    bad = deny_all("default")
    bad["spec"]["policyTypes"] = ["Sideways"]
    with pytest.raises(KubeError, match="is invalid"):
        kube.apply(bad)
    assert kube.get(NP, "NetworkPolicy", "deny", "default") is None


def test_delete_reports_existence_and_namespace_delete_cascades():
    kube = FakeKube()
    kube.apply(ns("team"))
    kube.apply(deployment("web", "team"))
    assert kube.delete(NP, "NetworkPolicy", "deny", "team") is False
    assert kube.delete("v1", "Namespace", "team") is True
    assert kube.pods("team") == []
    assert kube.objects("Deployment", "team") == []
    assert kube.get("v1", "Namespace", "team") is None  # no grace: gone at the next call


def test_a_deleted_namespace_terminates_first():
    clock = FakeClock()
    kube = FakeKube(clock=clock, namespace_grace_s=5.0)
    kube.apply(ns("team"))
    kube.apply(deny_all("team"))
    assert kube.delete("v1", "Namespace", "team") is True
    terminating = kube.get("v1", "Namespace", "team")
    assert terminating["metadata"]["deletionTimestamp"] and terminating["status"]["phase"] == "Terminating"
    assert kube.list(NP, "NetworkPolicy", "team") == []
    with pytest.raises(KubeError, match="unable to create new content in namespace team because it is being "
                                        "terminated") as err:
        kube.apply(deny_all("team"))
    assert err.value.status == 403
    assert kube.delete("v1", "Namespace", "team") is True  # deleting again is not an error
    clock.sleep(5.0)
    assert kube.get("v1", "Namespace", "team") is None
    kube.apply(ns("team"))  # and the name can be used again
    assert kube.get("v1", "Namespace", "team")["status"]["phase"] == "Active"


def test_label_selectors_are_structures():
    labels = {"app": "web", "tier": "front"}

    def expr(key, op, *values):
        return {"matchExpressions": [{"key": key, "operator": op, **({"values": list(values)} if values else {})}]}

    cases = {
        "everything": ({}, True), "app=web": ({"matchLabels": {"app": "web"}}, True),
        "app=db": ({"matchLabels": {"app": "db"}}, False),
        "app in (web,db)": (expr("app", "In", "web", "db"), True), "app notin (web)": (expr("app", "NotIn", "web"), False),
        "app notin (db)": (expr("app", "NotIn", "db"), True), "tier": (expr("tier", "Exists"), True),
        "!tier": (expr("tier", "DoesNotExist"), False), "missing": (expr("missing", "Exists"), False),
        "!missing": (expr("missing", "DoesNotExist"), True),
        "app=web,tier=front": ({"matchLabels": {"app": "web", "tier": "front"}}, True),
        "app=web,tier=back": ({"matchLabels": {"app": "web", "tier": "back"}}, False),
    }
    assert {k: selector_matches(sel, labels) for k, (sel, _) in cases.items()} == {k: v for k, (_, v) in cases.items()}
    assert selector_matches(None, labels)


def test_a_selector_string_or_a_bad_operator_is_refused():
    kube = FakeKube()
    with pytest.raises(KubeError, match="must be a LabelSelector mapping, got str"):
        kube.list("v1", "Pod", "kube-system", "k8s-app=kube-dns")
    with pytest.raises(KubeError, match="invalid operator 'Like'"):
        kube.list("v1", "Pod", "kube-system", {"matchExpressions": [{"key": "a", "operator": "Like"}]})


# -- workloads ----------------------------------------------------------------


def test_workloads_become_ready_pods_with_real_looking_names(dashi):
    kube, _ = dashi
    names = sorted(p["metadata"]["name"] for p in kube.pods("dashi-platform"))
    assert names == ["debug", "rustfs-0", "rustfs-1"]
    stac = pod_named(kube, "dashi-catalog", "stac-fastapi-")
    parts = stac["metadata"]["name"].split("-")
    assert len(parts[-2]) == 10 and len(parts[-1]) == 5  # <name>-<template hash>-<suffix>
    assert stac["metadata"]["labels"]["pod-template-hash"] == parts[-2]
    assert stac["metadata"]["labels"]["app.kubernetes.io/name"] == "stac-fastapi"
    assert stac["status"]["phase"] == "Running"
    assert {"type": "Ready", "status": "True"} in stac["status"]["conditions"]
    assert stac["status"]["podIP"].startswith("10.42.0.")
    sts = kube.get("apps/v1", "StatefulSet", "rustfs", "dashi-platform")
    assert sts["status"]["readyReplicas"] == 2 and sts["status"]["observedGeneration"] == 1
    dep = kube.get("apps/v1", "Deployment", "stac-fastapi", "dashi-catalog")
    assert dep["status"]["readyReplicas"] == 1
    assert {"type": "Available", "status": "True"} in dep["status"]["conditions"]
    ips = [p["status"]["podIP"] for p in kube.pods()]
    assert len(ips) == len(set(ips))


def test_reapply_keeps_pods_scaling_and_template_change_replace_them():
    kube = FakeKube()
    kube.apply(ns("team"))
    kube.apply(deployment("web", "team", replicas=2))
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in kube.pods("team")}
    kube.apply(deployment("web", "team", replicas=2))
    assert {p["metadata"]["name"]: p["status"]["podIP"] for p in kube.pods("team")} == before
    kube.apply(deployment("web", "team", replicas=3))
    assert len(kube.pods("team")) == 3 and set(before) < {p["metadata"]["name"] for p in kube.pods("team")}
    kube.apply(deployment("web", "team", replicas=3, labels={"app": "web", "v": "2"}))
    after = kube.pods("team")
    assert len(after) == 3 and not set(before) & {p["metadata"]["name"] for p in after}
    assert all(p["metadata"]["labels"]["v"] == "2" for p in after)


def test_patch_status_makes_a_pod_not_ready():
    kube = FakeKube()
    (dns,) = kube.pods("kube-system")
    kube.patch_status("v1", "Pod", dns["metadata"]["name"], "kube-system", {"phase": "Pending"})
    assert kube.pods("kube-system")[0]["status"]["phase"] == "Pending"


# -- the network --------------------------------------------------------------


def test_agnhost_connect_before_and_after_default_deny(dashi):
    kube, profile = dashi
    rustfs1 = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    dns_ip = kube.pods("kube-system")[0]["status"]["podIP"]
    open_ = {
        "s3": connect(kube, "dashi-data", "debug", f"{rustfs1}:9000"),
        "no listener": connect(kube, "dashi-data", "debug", f"{rustfs1}:1234"),
        "dns tcp": connect(kube, "dashi-data", "debug", f"{dns_ip}:53"),
        "dns udp": connect(kube, "dashi-data", "debug", f"{dns_ip}:53", "udp"),
        "api": connect(kube, "dashi-data", "debug", f"{API_ADDRESS}:6443"),
    }
    assert {k: (r.returncode, r.stderr.split(":")[0].strip()) for k, r in open_.items()} == {
        "s3": (0, ""), "no listener": (1, "REFUSED"), "dns tcp": (0, ""),
        # agnhost's UDP payload is not a DNS message: CoreDNS never answers it.
        "dns udp": (1, "TIMEOUT"), "api": (0, "")}
    for obj in profile.policies_through(2):  # default-deny + allow-dns
        kube.apply(obj)
    shut = {
        "s3": connect(kube, "dashi-data", "debug", f"{rustfs1}:9000"),
        "no listener": connect(kube, "dashi-data", "debug", f"{rustfs1}:1234"),
        "dns tcp": connect(kube, "dashi-data", "debug", f"{dns_ip}:53"),
        "api": connect(kube, "dashi-data", "debug", f"{API_ADDRESS}:6443"),
    }
    assert {k: (r.returncode, r.stderr.strip()) for k, r in shut.items()} == {
        "s3": (1, "TIMEOUT"), "no listener": (1, "TIMEOUT"), "dns tcp": (0, ""), "api": (1, "TIMEOUT")}


def test_agnhost_connect_errors_like_agnhost(dashi):
    kube, _ = dashi
    results = {
        "name": connect(kube, "dashi-data", "debug", "nowhere.invalid:80"),
        "service": connect(kube, "dashi-data", "debug", "rustfs.dashi-platform.svc.cluster.local:9000"),
        "no port": kube.exec("dashi-data", "debug", ["/agnhost", "connect", "10.42.0.1"]),
        "bad proto": connect(kube, "dashi-data", "debug", "10.42.0.1:1", "icmp"),
        "unrouted": connect(kube, "dashi-data", "debug", "10.42.99.99:80"),
        "not agnhost": kube.exec("dashi-data", "debug", ["curl", "x"]),
    }
    assert {k: (r.returncode, r.stderr.split(":")[0].split("\n")[0]) for k, r in results.items()} == {
        "name": (1, "DNS"), "service": (0, ""), "no port": (1, "UNKNOWN"),
        "bad proto": (1, "Unsupported protocol"), "unrouted": (1, "TIMEOUT"),
        "not agnhost": (127, 'exec')}
    with pytest.raises(KubeError, match='pods "ghost" not found'):
        connect(kube, "dashi-data", "ghost", "10.42.0.1:80")


def test_enforce_false_is_a_cni_that_enforces_nothing(dashi):
    kube, profile = dashi
    kube.enforce = False
    for obj in profile.policies_through(1):
        kube.apply(obj)
    ip = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    assert connect(kube, "dashi-data", "debug", f"{ip}:9000").returncode == 0


def test_lag_in_probes_policies_take_effect_after_n_probes(dashi):
    kube, profile = dashi
    kube.lag_probes = 3
    ip = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    for obj in profile.policies_through(1):
        kube.apply(obj)
    codes = [connect(kube, "dashi-data", "debug", f"{ip}:9000").returncode for _ in range(5)]
    assert codes == [0, 0, 0, 1, 1]


def test_lag_in_seconds_follows_the_clock(dashi):
    kube, profile = dashi
    clock = FakeClock()
    kube.clock, kube.lag_seconds = clock, 2.0
    ip = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    for obj in profile.policies_through(1):
        kube.apply(obj)
    seen = []
    for _ in range(3):
        seen.append(connect(kube, "dashi-data", "debug", f"{ip}:9000").returncode)
        clock.sleep(1.0)
    assert seen == [0, 0, 1]
    assert kube.policies_in_effect()[0]["metadata"]["name"] == "default-deny"


# -- failure injection and recording ------------------------------------------


def test_fail_after_and_times():
    kube = FakeKube()
    kube.fail("apply", "NetworkPolicy", after=1, times=1)
    kube.apply(deny_all("default"))
    with pytest.raises(KubeError, match="apply NetworkPolicy default/deny: Internal error occurred"):
        kube.apply(deny_all("default"))
    kube.apply(deny_all("default"))  # the failure was used up
    assert [c.verb for c in kube.calls] == ["apply", "apply", "apply"]


def test_fail_with_any_exception_and_forever():
    kube = FakeKube()
    kube.fail("list", "Pod", exc=KeyboardInterrupt, times=None)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            kube.list("v1", "Pod", "default")
    kube.list("v1", "Service", "default")  # other kinds unaffected


def test_calls_are_recorded_in_order(dashi):
    kube, _ = dashi
    kube.get("v1", "Pod", "debug", "dashi-data")
    kube.list(NP, "NetworkPolicy", "dashi-data", label_selector={"matchLabels": {"a": "b"}})
    kube.delete(NP, "NetworkPolicy", "x", "dashi-data")
    connect(kube, "dashi-data", "debug", "10.42.0.1:80")
    assert kube.calls == [
        Call("get", "v1", "Pod", "dashi-data", "debug"),
        Call("list", NP, "NetworkPolicy", "dashi-data", None, label_selector={"matchLabels": {"a": "b"}}),
        Call("delete", NP, "NetworkPolicy", "dashi-data", "x"),
        Call("exec", "v1", "Pod", "dashi-data", "debug",
             argv=("/agnhost", "connect", "10.42.0.1:80", "--timeout=1s", "--protocol=tcp")),
    ]
    assert kube.calls_of("exec") == kube.calls[-1:]


def test_on_exec_answers_other_commands():
    from cluster.seams.kube import ExecResult

    kube = FakeKube()
    (dns,) = kube.pods("kube-system")
    kube.on_exec(lambda ns, pod, argv: argv[0] == "cat", lambda ns, pod, argv: ExecResult(0, "hello", ""))
    assert kube.exec("kube-system", dns["metadata"]["name"], ["cat", "/etc/hostname"]).stdout == "hello"


def test_list_items_carry_their_type_as_the_client_gives_them():
    """The API server sends apiVersion and kind on the list only; the
    kubernetes client's DynamicClient copies them onto each item, and that
    is what ClientKube returns (the contract scenario checks it for real)."""
    kube = FakeKube()
    kube.apply(deny_all("default"))
    (item,) = kube.list(NP, "NetworkPolicy", "default")
    assert (item["apiVersion"], item["kind"], item["metadata"]["name"]) == (NP, "NetworkPolicy", "deny")
    kube.apply({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "pool"}})
    (pool,) = kube.list("crd.projectcalico.org/v1", "IPPool")
    assert pool["kind"] == "IPPool"
