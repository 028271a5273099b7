"""Calico and Cilium: exact invocations, the install configuration as data, readiness and detection."""

import pytest
import yaml

from cluster import versions
from cluster.errors import DashiError
from cluster.live.observe import cni
from cluster.live.setup.pipeline import Run, Session, Wait
from cluster.local import calico, cilium
from cluster.policy import schema
from cluster.seams.runner import FakeRunner, Result
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support.local_world import add_flannel_annotation, recording_console, seed_calico, seed_cilium

CTX = "k3d-dashi"


# -- Calico -------------------------------------------------------------------


def test_calico_install_commands_exact():
    runs = [a for a in calico.install_actions(CTX) if isinstance(a, Run)]
    base = "https://raw.githubusercontent.com/projectcalico/calico/v3.32.2/manifests"
    assert [a.argv for a in runs] == [
        ["kubectl", "--context", CTX, "apply", "--server-side", "--force-conflicts", "-f", f"{base}/operator-crds.yaml"],
        ["kubectl", "--context", CTX, "apply", "--server-side", "--force-conflicts", "-f",
         f"{base}/tigera-operator.yaml"],
        ["kubectl", "--context", CTX, "wait", "--for=condition=established", "--timeout=60s",
         "crd/installations.operator.tigera.io", "crd/apiservers.operator.tigera.io",
         "crd/tigerastatuses.operator.tigera.io"],
        ["kubectl", "--context", CTX, "apply", "--server-side", "--force-conflicts",
         "--field-manager=dashi-cluster", "-f", str(calico.CUSTOM_RESOURCES)],
    ]
    waits = [a.what for a in calico.install_actions(CTX) if isinstance(a, Wait)]
    assert waits == ["TigeraStatus calico is Available", "DaemonSet calico-system/calico-node is rolled out"]


def test_calico_installation_fits_k3s():
    docs = list(yaml.safe_load_all(calico.CUSTOM_RESOURCES.read_text()))
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("operator.tigera.io/v1", "Installation", "default"), ("operator.tigera.io/v1", "APIServer", "default")]
    net = docs[0]["spec"]["calicoNetwork"]
    assert net["containerIPForwarding"] == "Enabled"
    assert net["bgp"] == "Disabled"
    (pool,) = net["ipPools"]
    # The pool must be the cluster CIDR k3s is started with.
    assert pool["cidr"] == versions.POD_CIDR
    assert pool["encapsulation"] == "VXLAN"


def test_calico_ready_and_installed_read_status():
    kube = FakeKube()
    assert calico.installed(kube) is None
    assert cni.calico_status_available(kube) == (False, "TigeraStatus calico not reported yet")
    seed_calico(kube)
    assert cni.calico_status_available(kube)[0]
    assert cni.calico_node_rolled_out(kube)[0]
    assert calico.installed(kube).startswith("Calico v3.32.2 running")
    kube2 = FakeKube()
    seed_calico(kube2, version="v3.29.0")  # an older Calico: re-install (upgrade) it
    assert calico.installed(kube2) is None


# -- Cilium -------------------------------------------------------------------


def test_cilium_helm_command_exact():
    assert cilium.helm_argv(CTX) == [
        "helm", "upgrade", "--install", "cilium", "cilium", "--repo", "https://helm.cilium.io/",
        "--version", "1.20.2", "--namespace", "kube-system", "--kube-context", CTX,
        "--values", str(cilium.VALUES)]


def test_cilium_install_applies_the_pinned_clusternetworkpolicy_crd_first():
    actions = cilium.install_actions(CTX)
    runs = [a.argv for a in actions if isinstance(a, Run)]
    assert runs == [["kubectl", "--context", CTX, "apply", "--server-side", "--force-conflicts", "-f",
                     str(schema.CNP_CRD)], cilium.helm_argv(CTX)]
    assert [a.what for a in actions if isinstance(a, Wait)][0] == \
        "CRD clusternetworkpolicies.policy.networking.k8s.io is established"
    kube = FakeKube()
    assert cni.crd_established(kube) == (False, "CRD clusternetworkpolicies.policy.networking.k8s.io not there yet")
    kube.install_kcnp_crd()
    assert cni.crd_established(kube)[0]


def test_cilium_install_refuses_a_crd_that_is_not_the_pinned_one(tmp_path, monkeypatch):
    changed = tmp_path / "crd.yaml"
    changed.write_bytes(schema.CNP_CRD.read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(cilium, "CNP_CRD", changed)
    with pytest.raises(DashiError, match="is not the pinned one of network-policy-api v0.3.1"):
        cilium.install_actions(CTX)


def test_cilium_values_fit_k3d():
    values = yaml.safe_load(cilium.VALUES.read_text())
    assert values["ipam"]["mode"] == "kubernetes"
    assert values["operator"]["replicas"] == 1
    assert values["kubeProxyReplacement"] == "false"
    assert values["policyCIDRMatchMode"] == ["nodes"]  # ipBlock must select the API server on a node
    assert values["cgroup"] == {"autoMount": {"enabled": False}, "hostRoot": "/run/cilium/cgroupv2"}
    # ClusterNetworkPolicy on, Envoy off: Cilium as the test lane runs it, where its departures were measured.
    assert values["k8sClusterNetworkPolicy"] == {"enabled": True} and values["l7Proxy"] is False


def test_cilium_mounts_only_where_missing():
    assert cilium.mount_argv("k3d-dashi-server-0")[:5] == ["docker", "exec", "k3d-dashi-server-0", "sh", "-c"]
    script = cilium.MOUNT_SCRIPT
    assert 'if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then mount bpffs /sys/fs/bpf -t bpf' in script
    assert "mount -t cgroup2 none /run/cilium/cgroupv2" in script
    r = FakeRunner()
    r.on("docker", "exec", "k3d-dashi-server-0", stdout="mounted /sys/fs/bpf\nmounted /run/cilium/cgroupv2\n")
    console, _ = recording_console()
    s = Session(runner=r, console=console)
    assert cilium.run_mounts(s, ["k3d-dashi-server-0", "k3d-dashi-agent-0"]) == \
        (True, "mounted k3d-dashi-server-0:/sys/fs/bpf, k3d-dashi-server-0:/run/cilium/cgroupv2")
    assert [c.argv[2] for c in r.calls] == ["k3d-dashi-server-0", "k3d-dashi-agent-0"]
    s2 = Session(runner=FakeRunner(), console=console)
    assert cilium.run_mounts(s2, ["n"]) == (False, "bpffs and cgroup2 already mounted on every node")


def test_mount_script_is_valid_sh():
    import subprocess

    assert subprocess.run(["sh", "-n", "-c", cilium.MOUNT_SCRIPT]).returncode == 0


def test_cilium_installed_needs_pinned_chart_deployed_and_rolled_out():
    kube = FakeKube()
    r = FakeRunner()
    listing = {"out": "[]"}
    r.on("helm", "list", respond=lambda c: Result(c.argv, 0, listing["out"]))
    assert cilium.installed(r, kube, CTX) is None
    assert r.argvs[0] == ("helm", "list", "--kube-context", CTX, "--namespace", "kube-system",
                          "--filter", "^cilium$", "--output", "json")
    seed_cilium(kube)
    listing["out"] = '[{"name": "cilium", "status": "deployed", "chart": "cilium-1.17.0"}]'
    assert cilium.installed(r, kube, CTX) is None  # another version: upgrade it
    listing["out"] = '[{"name": "cilium", "status": "deployed", "chart": "cilium-1.20.2"}]'
    assert cilium.installed(r, kube, CTX) is None  # the ClusterNetworkPolicy CRD is missing
    kube.install_kcnp_crd()
    assert cilium.installed(r, kube, CTX).startswith("Cilium 1.20.2 deployed")


# -- detection ----------------------------------------------------------------


@pytest.mark.parametrize("seed,want", [
    (seed_calico, "calico"), (seed_cilium, "cilium"), (add_flannel_annotation, "k3s"), (None, "none")])
def test_detect_cni(seed, want):
    kube = FakeKube()
    if seed:
        seed(kube)
    assert cni.detect_cni(kube) == want


def test_k3s_policy_controller_disabled_is_read_from_node_args():
    kube = FakeKube()
    add_flannel_annotation(kube, disable_policy=True)
    assert cni.k3s_policy_controller_disabled(kube)
    ok, detail = cni.cni_health(kube, "k3s")
    assert not ok and "DISABLED" in detail


def test_waits_poll_until_ready():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    console, _ = recording_console()
    s = Session(runner=FakeRunner(), console=console, kube_factory=lambda c: kube, sleep=clock.sleep, clock=clock)
    wait = calico.install_actions(CTX)[-2]
    calls = {"n": 0}
    real = wait.probe

    def probe(sess):
        calls["n"] += 1
        if calls["n"] == 3:
            seed_calico(kube)
        return real(sess)

    wait.probe = probe
    assert "Available=True" in wait.execute(s)
    assert clock.slept == [2.0, 2.0]


CHART = "/var/cache/dashi-cluster-e2e/gomod/github.com/cilium/cilium@v{}/install/kubernetes/cilium"


def test_cilium_values_validate_against_the_pinned_charts_schema():
    """Our values over the chart's defaults pass the chart's own
    values.schema.json, read from the Cilium module the test lane builds
    (helm checks the same schema at install)."""
    import json
    from pathlib import Path

    import fastjsonschema

    from support.availability import unavailable

    chart = Path(CHART.format(versions.CILIUM_VERSION))
    if not chart.is_dir():
        unavailable("e2e", f"the Cilium {versions.CILIUM_VERSION} module is not on this machine ({chart}; "
                           "tests/e2e/hostcluster/build.sh downloads it)")
    defaults = yaml.load((chart / "values.yaml").read_text(), Loader=yaml.CSafeLoader)  # 120 KiB: libyaml
    ours = yaml.safe_load(cilium.VALUES.read_text())

    def merged(base: dict, over: dict) -> dict:
        return {**base, **{k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    assert set(ours) <= set(defaults)  # no key the chart does not know (a renamed value would be ignored)
    fastjsonschema.compile(json.loads((chart / "values.schema.json").read_text()))(merged(defaults, ours))
