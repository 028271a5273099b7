"""Observe before enforce, on the Cilium lane's real Hubble.

The dashi stand-ins carry traffic (prepare --traffic): every client dials
its intended servers every 2 s, and TiTiler dials the catalog API, an edge
the intended matrix does not list. Hubble (the agent's Observer API on
loopback, tests/e2e/hostcluster/up.sh) sees both; flows-check names the
step that would cut the unlisted one and the policy; network-policies-up
--observe refuses that step before changing anything and proceeds with
--accept-blocking; a deliberately wrong step's evidence holds what the
dataplane dropped. The module ends as it found the cluster: no policies of
ours, the stand-ins without traffic.

kube-router has no Hubble: there this module skips, and flow files are
tested offline (tests/policy/flows) on every machine.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cluster.policy.profile import MANIFESTS_DIR

pytestmark = pytest.mark.e2e

# tests/e2e/hostcluster/cluster.env: HUBBLE_ADDRESS
HUBBLE = os.environ.get("DASHI_E2E_HUBBLE", "127.0.0.1:4244")
UNLISTED = "dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP"
ACCEPT = "dashi-serving/titiler dashi-catalog/stac-fastapi 8080/TCP"
OBSERVE = "4s"  # two beats of the traffic stand-ins


@pytest.fixture(scope="module")
def lane(e2e_cluster):
    if e2e_cluster.lane != "cilium":
        pytest.skip(f"the {e2e_cluster.lane} lane has no Hubble; flow files are tested offline (tests/policy/flows)")
    proc = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--yes", "--traffic")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the stand-ins carry traffic" in proc.stdout
    yield e2e_cluster
    back = e2e_cluster.inv("rollback", "--to", "baseline", "--context", e2e_cluster.context, "--yes")
    plain = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--yes")
    assert back.returncode == 0 and plain.returncode == 0, back.stdout + back.stderr + plain.stdout + plain.stderr


def ours(cluster) -> list[str]:
    from kubernetes import client

    net = client.NetworkingV1Api(cluster.api())
    return sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in net.list_network_policy_for_all_namespaces().items
                  if (p.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "dashi-cluster")


WANTED = {UNLISTED, "dashi-data/flow-run -> dashi-catalog/stac-fastapi 8080/TCP",
          "dashi-catalog/stac-fastapi -> dashi-catalog/pgstac 5432/TCP",
          "dashi-serving/titiler -> dashi-platform/rustfs 9000/TCP"}


def test_observe_records_intended_and_unlisted_traffic(lane):
    # Right after the stand-ins start, a client may look a server up before
    # its headless Service has an address; CoreDNS caches that answer for
    # up to 30 s (cache 30), so every edge carries traffic within about 40 s.
    seen: set = set()
    for _ in range(6):
        proc = lane.inv("observe", "--duration", "8s", "--hubble", HUBBLE)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"from Hubble at {HUBBLE}" in proc.stdout and "none lost" in proc.stdout
        data = json.loads(lane.inv("flows-check", "--json").stdout)
        seen = {f"{c['src']} -> {c['dst']} {c['port']}/{c['protocol']}" for s in data["steps"] for c in s["cuts"]}
        if WANTED <= seen:
            break
    assert WANTED <= seen, seen  # the unlisted edge and intended ones


def test_flows_check_names_the_step_that_cuts_the_unlisted_edge(lane):
    proc = lane.inv("flows-check")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = proc.stdout
    assert "[1/9] default-deny: would newly block" in out
    assert f"BLOCKS   {UNLISTED}" in out
    assert ("egress of dashi-serving/titiler: BLOCKED: selected by dashi-serving/default-deny; no rule allows "
            "dashi-catalog/stac-fastapi on 8080/TCP") in out
    assert "until allow-dns opens them" in out  # DNS: a window of the rollout, not a failure
    assert "flows-check: FAIL: 1 observed edge(s) would be cut outside the intent (by default-deny)" in out
    ok = lane.inv("flows-check", "--accept-blocking", ACCEPT)
    assert ok.returncode == 0 and "flows-check: OK" in ok.stdout


def test_the_rollout_refuses_the_step_then_proceeds_when_the_cut_is_accepted(lane):
    before = ours(lane)
    proc = lane.inv("network-policies-up", "--context", lane.context, "--yes", "--until", "allow-dns",
                    "--observe", OBSERVE, "--hubble", HUBBLE)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"WOULD CUT: {UNLISTED}" in proc.stdout
    assert "error: step default-deny would cut observed traffic outside the intent" in proc.stderr
    assert ours(lane) == before == []  # nothing changed

    proc = lane.inv("network-policies-up", "--context", lane.context, "--yes", "--until", "allow-dns",
                    "--observe", OBSERVE, "--hubble", HUBBLE, "--accept-blocking", ACCEPT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"accepted cut: {UNLISTED}" in proc.stdout
    assert "[2/9] allow-dns: verified" in proc.stdout
    # After default-deny the dataplane drops the unlisted edge: Cilium says so.
    drops = sorted((lane.state_dir / "clusters").glob("*/dashi/evidence/*-default-deny-drops.json"))
    flows = json.loads(drops[-1].read_text())["flows"]
    assert any(f["src"].startswith("dashi-serving/titiler-") and f["dst"].startswith("dashi-catalog/stac-fastapi-")
               and f["port"] == 8080 and f["reason"] == "policy_denied egress" for f in flows), flows[:5]


def test_a_wrong_steps_evidence_holds_the_dataplanes_drops(lane, tmp_path):
    # A typo: serving's S3 egress names 9001, so step 3 leaves titiler -> rustfs:9000 shut.
    broken = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", broken)
    step3 = broken / "policies" / "03-allow-platform.yaml"
    head, _, tail = step3.read_text().rpartition("port: 9000}")
    step3.write_text(head + "port: 9001}" + tail)
    proc = lane.inv("network-policies-up", "--profile", str(broken), "--context", lane.context, "--yes",
                    "--until", "allow-platform", "--observe", OBSERVE, "--hubble", HUBBLE, "--accept-blocking", ACCEPT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "allow-platform: verification FAILED" in proc.stdout
    evidence = sorted((lane.state_dir / "clusters").glob("*/dashi/evidence/*-allow-platform-failed.json"))
    drops = json.loads(evidence[-1].read_text())["cni_drops"]
    assert drops["source"] == f"Hubble at {HUBBLE}"
    assert any(f["src"].startswith("dashi-serving/titiler-") and f["dst"].startswith("dashi-platform/rustfs-")
               and f["port"] == 9000 and f["reason"] == "policy_denied egress" for f in drops["flows"]), \
        drops["summary"]
    md = evidence[-1].with_suffix(".md").read_text()
    assert "## cni_drops" in md


def test_a_port_forward_through_the_kube_seam_reaches_a_pod(lane):
    # The way to hubble-relay on a cluster the tool set up: ClientKube's
    # port_forward, here to a stand-in's HTTP port (agnhost porter answers
    # with its SERVE_PORT_8080 value); FakeKube's forward is tested offline.
    import urllib.request

    from cluster.seams.kubeclient import ClientKube

    kube = ClientKube(context=lane.context, kubeconfig=lane.kubeconfig)
    pod = next(p["metadata"]["name"] for p in kube.list("v1", "Pod", "dashi-catalog")
               if p["metadata"]["name"].startswith("stac-fastapi-"))
    with kube.port_forward("dashi-catalog", pod, 8080) as fwd:
        for _ in range(2):  # one connection each: every one is carried on its own
            with urllib.request.urlopen(f"http://{fwd.address}/", timeout=10) as resp:
                assert resp.read().decode().strip() == "stac-fastapi"
