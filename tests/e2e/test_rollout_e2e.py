"""The dashi rollout end to end on a real cluster with NetworkPolicy enforcement.

The tests run in file order and build on each other, as a user would:
prepare the cluster, watch a wrong step get caught and rolled back, roll
back to the baseline, roll out every step, smoke, measure port-forward under
default deny, and restore the baseline exactly. Test traffic goes only to
pods of this cluster (and its API server).
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from cluster.policy.engine.predictions import predict
from cluster.policy.profile import MANIFESTS_DIR, load_profile

pytestmark = pytest.mark.e2e

DASHI_NS = ["dashi-platform", "dashi-catalog", "dashi-data", "dashi-serving", "dashi-monitoring"]
# Filled by the first test: every NetworkPolicy (and CiliumNetworkPolicy) in
# the profile's namespaces before the rollout touched anything, spec by spec.
BEFORE: dict = {}


def live_policies(cluster) -> dict[tuple[str, str, str], dict]:
    """(namespace, name, kind) -> spec; CiliumNetworkPolicies where the CRD is served."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = cluster.api()
    net = client.NetworkingV1Api(api)
    custom = client.CustomObjectsApi(api)
    out = {}
    for ns in DASHI_NS:
        for p in net.list_namespaced_network_policy(ns).items:
            out[(ns, p.metadata.name, "NetworkPolicy")] = api.sanitize_for_serialization(p.spec)
        try:
            cnps = custom.list_namespaced_custom_object("cilium.io", "v2", ns, "ciliumnetworkpolicies")["items"]
        except ApiException as e:
            if e.status != 404:  # 404: no Cilium CRDs on this lane
                raise
            cnps = []
        for p in cnps:
            out[(ns, p["metadata"]["name"], "CiliumNetworkPolicy")] = p.get("spec")
    return out


def dashi(cluster):
    """The dashi profile in the form the rollout uses on this lane's CNI."""
    return load_profile("dashi").for_cni("cilium" if cluster.lane == "cilium" else None)


def step_names(profile, k: int) -> set[tuple[str, str, str]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"], o["kind"]) for o in profile.policies_through(k)}


def observed_allowed(report: dict) -> set[tuple]:
    return {(e["src"], e["dst"], e["port"], e["protocol"]) for e in report["edges"]
            if e["observed"] and e["kind"] != "unprobed"}


def probed(report: dict) -> set[tuple]:
    return {(e["src"], e["dst"], e["port"], e["protocol"]) for e in report["edges"]
            if e["kind"] not in (None, "unprobed")}


def test_prepare_deploys_standins_and_proves_enforcement(e2e_cluster):
    # The test cluster is not a local k3d one: prepare asks, --yes answers.
    proc = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from kubernetes import client

    api = e2e_cluster.api()
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    for ns in DASHI_NS:
        for d in apps.list_namespaced_deployment(ns).items + apps.list_namespaced_stateful_set(ns).items:
            assert (d.status.ready_replicas or 0) == d.spec.replicas, f"{ns}/{d.metadata.name} not ready"
        debug = core.read_namespaced_pod("debug", ns)
        assert debug.status.phase == "Running" and not debug.metadata.labels
    # the canary's namespace is gone again (or on its way: deletion is asynchronous)
    assert not [n.metadata.name for n in core.list_namespace().items
                if "canary" in n.metadata.name and n.metadata.deletion_timestamp is None]
    BEFORE.update(live_policies(e2e_cluster))
    assert not any(k in step_names(dashi(e2e_cluster), 9) for k in BEFORE), \
        "the cluster already holds dashi policies; start from a clean cluster"


def test_a_probe_shell_kept_open_answers_as_an_exec_does(e2e_cluster):
    """The probe shell the prober keeps open in a source pod (an exec with
    stdin open, Kube.open_exec) answers request after request exactly as a
    one-shot exec of the same batch does, through the real API server,
    kubelet and runtime."""
    from cluster.live.observe.discovery import discover
    from cluster.live.observe.probebatch import ProbeSession, connect_batch
    from cluster.seams.kubeclient import ClientKube

    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)
    profile = dashi(e2e_cluster)
    targets = [t for t in discover(kube, profile).targets.values()
               if not isinstance(t, str) and (t.namespace, t.pod) == ("dashi-data", "debug")]
    assert len(targets) > 10
    session = ProbeSession(kube, "dashi-data", "debug")
    try:
        first, tool = session.batch(targets, 0.3, "auto", "drop")
        again, _ = session.batch(targets, 0.3, "auto", "drop")
    finally:
        session.close()
    once, _ = connect_batch(kube, "dashi-data", "debug", targets, 0.3, "auto", "drop")
    kinds = [r.kind for r in once]
    assert [r.kind for r in first] == [r.kind for r in again] == kinds and tool == "nc"
    assert set(kinds) <= {"connected", "unprobed"} and "connected" in kinds  # no policies yet: all open


def test_wrong_step_is_caught_and_rolled_back(e2e_cluster, tmp_path):
    # A realistic typo: the database rule names port 5433, so step 5 closes
    # stac-fastapi -> pgstac instead of opening it.
    broken = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", broken)
    step5 = broken / "policies" / "05-allow-catalog-internal.yaml"
    step5.write_text(step5.read_text().replace("port: postgres}", "port: 5433}"))
    profile = load_profile(broken)

    proc = e2e_cluster.inv("network-policies-up", "--profile", str(broken), "--context", e2e_cluster.context,
                           "--yes")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "allow-catalog-internal" in out
    assert "dashi-catalog/stac-fastapi -> dashi-catalog/pgstac 5432/TCP" in out

    # Rolled back to the snapshot taken before step 5: exactly steps 1-4.
    ours = {k for k in live_policies(e2e_cluster) if k not in BEFORE}
    assert ours == step_names(profile, 4)

    # The live matrix equals what steps 1-4 predict (what it was before step 5).
    report_path = tmp_path / "smoke.json"
    smoke = e2e_cluster.inv("smoke", "--context", e2e_cluster.context, "--json", str(report_path))
    assert smoke.returncode == 0
    report = json.loads(report_path.read_text())
    expected = {(e.src, e.dst, e.port, e.protocol) for e, v in
                predict(profile, profile.policies_through(4)).items() if v.allowed}
    assert observed_allowed(report) == expected & probed(report)


def test_rollback_to_baseline_after_the_failure(e2e_cluster):
    proc = e2e_cluster.inv("rollback", "--to", "baseline", "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert live_policies(e2e_cluster) == BEFORE


def test_all_steps_apply_and_verify(e2e_cluster):
    t0 = time.monotonic()
    proc = e2e_cluster.inv("network-policies-up", "--until", "allow-ingress-port-forward",
                           "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"network-policies-up, 8 steps verified live: {time.monotonic() - t0:.1f} s")
    profile = dashi(e2e_cluster)
    assert {k for k in live_policies(e2e_cluster) if k not in BEFORE} == step_names(profile, 8)
    history = e2e_cluster.inv("history", "--context", e2e_cluster.context)
    assert history.returncode == 0
    for step in profile.steps[:8]:
        assert step.name in history.stdout


APPLIED: list[int] = []  # how many steps the cluster holds after the kube-api step


def test_kube_api_step_verifies_in_the_form_for_the_cni(e2e_cluster):
    """allow-kube-api opens the worker's egress to the API server. An ipBlock
    selects it where policies match addresses (kube-router); Cilium gives
    the API server's address (the node's own) the host and kube-apiserver
    identities, which no ipBlock selects (measured here even with
    policy-cidr-match-mode=nodes), so on Cilium the rollout applies the
    step's cilium variant, a CiliumNetworkPolicy to the entity
    kube-apiserver, and it verifies too."""
    profile = dashi(e2e_cluster)
    t0 = time.monotonic()
    proc = e2e_cluster.inv("network-policies-up", "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[9/9] allow-kube-api: verified" in proc.stdout
    ours = {k for k in live_policies(e2e_cluster) if k not in BEFORE}
    assert ours == step_names(profile, 9)
    APPLIED.append(9)
    if e2e_cluster.lane == "cilium":
        assert "09-allow-kube-api.cilium.yaml, the cilium form" in proc.stdout
        assert ("dashi-data", "allow-kube-api", "CiliumNetworkPolicy") in ours
        form = "CiliumNetworkPolicy toEntities kube-apiserver"
    else:
        assert ("dashi-data", "allow-kube-api", "NetworkPolicy") in ours
        form = "NetworkPolicy ipBlock"
    print(f"{e2e_cluster.lane}: allow-kube-api verified live as {form} in {time.monotonic() - t0:.1f} s")


def test_smoke_passes_and_writes_its_report(e2e_cluster, tmp_path):
    json_path, md_path = tmp_path / "smoke.json", tmp_path / "smoke.md"
    t0 = time.monotonic()
    proc = e2e_cluster.inv("smoke", "--context", e2e_cluster.context, "--json", str(json_path),
                           "--markdown", str(md_path))
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(json_path.read_text())
    assert report["ok"] is True
    profile = load_profile("dashi")
    k = APPLIED[-1] if APPLIED else 8
    intended = {(e.src, e.dst, e.port, e.protocol) for e, ok in profile.intended_after(k).items() if ok}
    assert observed_allowed(report) == intended & probed(report)
    assert len(probed(report)) == len(report["edges"])  # every edge, UDP DNS included
    assert set(_udp_dns(report).values()) == {(True, "connected")}
    assert md_path.read_text().startswith("#")
    print(f"full-matrix smoke: {len(report['edges'])} edges, first probe pass "
          f"{report['first_pass_seconds']} s with {report['workers']} workers, task wall time {wall:.1f} s")


def test_port_forward_is_not_subject_to_network_policy(e2e_cluster):
    """Measured: under default deny (+ DNS only) a pod cannot reach
    Prometheus, but kubectl-style port-forward still can."""
    proc = e2e_cluster.inv("rollback", "--to", "allow-dns", "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from kubernetes import client
    from kubernetes.stream import portforward

    from cluster.live.observe.probe import connect
    from cluster.seams.kubeclient import ClientKube

    api = e2e_cluster.api()
    core = client.CoreV1Api(api)
    prom = core.list_namespaced_pod("dashi-monitoring",
                                    label_selector="app.kubernetes.io/name=prometheus").items[0]
    # Control: pod-to-pod traffic to the same port is denied (dropped, or
    # rejected by kube-router).
    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)
    blocked = connect(kube, "dashi-monitoring", "debug", prom.status.pod_ip, 9090)
    assert blocked.ok is False and blocked.kind in e2e_cluster.denied_kinds, blocked

    pf = portforward(core.connect_get_namespaced_pod_portforward, prom.metadata.name, "dashi-monitoring",
                     ports="9090")
    try:
        sock = pf.socket(9090)
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: prometheus\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"prometheus" not in data and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        pf.close()
    assert b"prometheus" in data, data[:200]
    print(f"{e2e_cluster.lane}: port-forward to dashi-monitoring/prometheus:9090 under default deny: reachable "
          f"(NetworkPolicy does not apply); pod-to-pod to the same port: {blocked.kind}")


def _udp_dns(report: dict) -> dict[str, tuple]:
    """Each source's UDP 53 edge to cluster DNS: (observed, probe kind)."""
    return {e["src"]: (e["observed"], e["kind"]) for e in report["edges"]
            if e["dst"] == "kube-system/kube-dns" and e["protocol"] == "UDP" and e["port"] == 53}


def test_udp_dns_is_probed_for_real_blocked_then_allowed(e2e_cluster, tmp_path):
    """DNS over UDP is a real query from every stand-in: under default deny
    alone it is blocked (no answer; on kube-router the reject may come back
    as a refusal), and once allow-dns is in place every pod gets its answer."""
    profile = dashi(e2e_cluster)
    sources = {ep.key for ep in profile.endpoints if ep.kind in ("workload", "debug")}  # not DNS itself
    verdicts = {}
    for step in ("default-deny", "allow-dns"):
        proc = e2e_cluster.inv("rollback", "--to", step, "--context", e2e_cluster.context, "--yes")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        path = tmp_path / f"{step}.json"
        smoke = e2e_cluster.inv("smoke", "--context", e2e_cluster.context, "--json", str(path))
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        verdicts[step] = _udp_dns(json.loads(path.read_text()))
        assert set(verdicts[step]) == sources, f"{step}: UDP DNS edges {sorted(verdicts[step])}"
    blocked_kinds = e2e_cluster.denied_kinds
    assert all(obs is False and kind in blocked_kinds for obs, kind in verdicts["default-deny"].values()), \
        verdicts["default-deny"]
    assert all(v == (True, "connected") for v in verdicts["allow-dns"].values()), verdicts["allow-dns"]
    print(f"{e2e_cluster.lane}: UDP DNS probed from {len(sources)} pods: default-deny "
          f"{sorted({k for _, k in verdicts['default-deny'].values()})}, allow-dns all answered")


def test_rollback_to_baseline_restores_exactly(e2e_cluster):
    proc = e2e_cluster.inv("rollback", "--to", "baseline", "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert live_policies(e2e_cluster) == BEFORE


def test_the_environments_rollout_verifies_every_step(e2e_cluster):
    """The training chapter's lab on the same cluster: its stand-ins deployed
    and proven, its three steps applied and verified live, then removed."""
    prep = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--profile", "environments", "--yes")
    assert prep.returncode == 0, prep.stdout + prep.stderr
    t0 = time.monotonic()
    up = e2e_cluster.inv("network-policies-up", "--profile", "environments", "--context", e2e_cluster.context,
                         "--yes")
    assert up.returncode == 0, up.stdout + up.stderr
    for i, step in enumerate(load_profile("environments").steps, 1):
        assert f"[{i}/3] {step.name}: verified" in up.stdout
    print(f"{e2e_cluster.lane}: environments, 3 steps verified live in {time.monotonic() - t0:.1f} s")
    down = e2e_cluster.inv("rollback", "--profile", "environments", "--to", "baseline", "--context",
                           e2e_cluster.context, "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
