"""Which clusters may be changed, and with what ceremony."""

from __future__ import annotations

import pytest

from cluster.errors import DashiError, GuardError
from cluster.live.safety import guard


LOCAL = "https://127.0.0.1:6550"


def outcome(context, explicit, yes, answer, server=LOCAL):
    """'ok', or the GuardError message's key phrase. answer: None = no terminal."""
    asked = []
    confirm = None if answer is None else (lambda q: asked.append(q) or answer)
    try:
        guard.check(context, server, explicit, yes=yes, confirm=confirm, action="apply policies")
    except GuardError as e:
        msg = str(e)
        for key in ("name it explicitly", "re-run with --yes", "not confirmed"):
            if key in msg:
                return key
        return msg
    return "ok" + (" (asked)" if asked else "")


def test_guard_truth_table():
    # Default: a non-k3d context must be named and confirmed; exceptions below.
    cases = {
        # local k3d: no ceremony at all
        ("k3d-dashi", None, False, None): "ok",
        ("k3d-dashi", "k3d-dashi", False, False): "ok",
        # anything else, not named explicitly: refused whatever else is said
        ("prod", None, True, True): "name it explicitly",
        ("prod", "staging", True, True): "name it explicitly",
        ("k3d-", None, True, None): "name it explicitly",  # "k3d-" alone is not a k3d cluster name
        # named: --yes, or a "y" at the terminal
        ("prod", "prod", True, None): "ok",
        ("prod", "prod", False, True): "ok (asked)",
        ("prod", "prod", False, False): "not confirmed",
        ("prod", "prod", False, None): "re-run with --yes",
        # named like k3d but the API server is elsewhere: not local, the same ceremony
        ("k3d-dashi", None, True, True, "https://10.0.0.7:6443"): "name it explicitly",
        ("k3d-dashi", "k3d-dashi", False, None, "https://k3d.example.com:6443"): "re-run with --yes",
        ("k3d-dashi", "k3d-dashi", False, True, "https://10.0.0.7:6443"): "ok (asked)",
        # k3d's own ways of writing this machine
        ("k3d-dashi", None, False, None, "https://0.0.0.0:6550"): "ok",
        ("k3d-dashi", None, False, None, "https://localhost:6550"): "ok",
        ("k3d-dashi", None, False, None, "https://[::1]:6550"): "ok",
    }
    assert {k: outcome(*k) for k in cases} == cases


def test_local_means_a_k3d_context_on_loopback():
    assert guard.is_local("k3d-dashi", "https://127.0.0.1:6550")
    assert guard.is_local("k3d-dashi", "https://127.0.0.2:6550")  # all of 127/8 is loopback
    assert not guard.is_local("k3d-dashi", "https://192.168.1.5:6550")
    assert not guard.is_local("kind-dashi", "https://127.0.0.1:6550")
    assert not guard.is_local("k3d-dashi", "not a url")
    msg = outcome("k3d-dashi", None, True, True, "https://10.0.0.7:6443")
    assert msg == "name it explicitly"
    try:
        guard.check("k3d-x", "https://10.0.0.7:6443", None, yes=True, confirm=None, action="apply")
    except Exception as e:  # noqa: BLE001
        assert "its API server https://10.0.0.7:6443 is not on this machine" in str(e)


def test_banner_names_the_cluster():
    assert guard.banner("k3d-dashi", "https://0.0.0.0:6550", "apply") == \
        "Cluster: k3d-dashi (https://0.0.0.0:6550, local k3d cluster) - apply"
    assert "NOT a local k3d cluster" in guard.banner("gke_x", "https://1.2.3.4", "apply")
    assert "NOT a local k3d cluster" in guard.banner("k3d-dashi", "https://10.0.0.7:6443", "apply")


def test_a_proxied_cluster_is_never_local(tmp_path):
    """k3d on a remote VM reached through a bastion: the kubeconfig says
    0.0.0.0, which is the loopback of the machine behind the proxy."""
    from support.rollout_world import RolloutWorld

    proxy = "http://bastion.example:3128"
    assert guard.is_local("k3d-dashi", "https://0.0.0.0:6550") and \
        not guard.is_local("k3d-dashi", "https://0.0.0.0:6550", proxy)
    assert guard.banner("k3d-dashi", "https://0.0.0.0:6550", "apply", proxy) == \
        "Cluster: k3d-dashi (https://0.0.0.0:6550 through proxy http://bastion.example:3128, NOT a local k3d " \
        "cluster) - apply"
    with pytest.raises(GuardError, match="^context 'k3d-dashi' is named like a k3d cluster but is reached through "
                                         "the proxy http://bastion.example:3128: to apply there, name it explicitly"):
        guard.check("k3d-dashi", "https://0.0.0.0:6550", None, yes=True, confirm=None, action="apply", proxy=proxy)
    w = RolloutWorld(tmp_path, proxy=proxy)
    with pytest.raises(GuardError, match="re-run with --yes"):
        w.rollout(explicit_context="k3d-dashi").up()
    assert w.kube.writes() == []
    w.rollout(explicit_context="k3d-dashi", yes=True).up(until="default-deny")
    assert w.ours() == w.through(1)


def test_no_terminal_means_no_prompt(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert guard.terminal_confirm() is None


# -- the plan comes before the question -------------------------------------------------


def test_the_plan_is_printed_before_the_confirmation(tmp_path):
    from support.rollout_world import RolloutWorld

    w = RolloutWorld(tmp_path, context="prod-eu", server="https://10.0.0.1:6443")
    seen = []

    def confirm(question):
        seen.append(w.out)  # what the user had in front of them when asked
        return False

    with pytest.raises(GuardError, match="not confirmed; nothing was changed"):
        w.rollout(explicit_context="prod-eu", confirm=confirm).up(until="allow-dns")
    (shown,) = seen
    lines = shown.splitlines()
    assert lines[0].startswith("Cluster: prod-eu (https://10.0.0.1:6443, NOT a local k3d cluster)")
    assert lines[1] == ("Plan for our NetworkPolicies in develop, staging, production, ingress-nginx: 6 to create, "
                        "0 to update, 0 to delete, 0 unchanged")
    assert lines[2] == ("  create: develop/allow-dns, develop/default-deny, production/allow-dns, "
                        "production/default-deny, staging/allow-dns, staging/default-deny")
    assert w.kube.writes() == []  # no change, no lease either


def test_the_rollback_plan_names_what_it_deletes(tmp_path):
    from support.rollout_world import RolloutWorld

    w = RolloutWorld(tmp_path)
    w.rollout().up(until="allow-dns")
    w.rollout().rollback(to="default-deny")
    assert "Plan for our NetworkPolicies in develop, staging, production, ingress-nginx: 0 to create, 0 to update, " \
           "3 to delete, 3 unchanged" in w.out
    assert "  delete: develop/allow-dns, production/allow-dns, staging/allow-dns" in w.out


def test_a_foreign_policy_holding_one_of_our_names_is_refused_before_any_change(tmp_path):
    from support.rollout_world import NP, RolloutWorld

    w = RolloutWorld(tmp_path)
    w.kube.as_manager("kubectl-create").create({
        "apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "default-deny", "namespace": "staging"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    w.kube.calls.clear()
    with pytest.raises(DashiError, match=r"^staging/default-deny \(field managers kubectl-create\): a policy that is "
                                         "not ours already has the name; nothing was changed"):
        w.rollout().up()
    assert w.kube.writes() == []


def test_prepare_is_guarded_like_the_rollout(tmp_path):
    from cluster.live.setup import prepare
    from support.local_world import LocalWorld, recording_console, seed_calico

    w = LocalWorld(tools=())
    seed_calico(w.kube)
    w.kube.calls.clear()
    console, buf = recording_console()
    asked = []
    with pytest.raises(GuardError, match="not confirmed; nothing was changed"):
        prepare.prepare("prod-eu", profile="environments", console=console, kube_factory=w.kube_factory,
                        runner=w.runner, sleep=w.clock.sleep, clock=w.clock,
                        confirm=lambda q: asked.append((q, buf.getvalue())) or False)
    (question, shown), = asked
    assert "prod-eu" in question
    assert shown.splitlines()[0].startswith("Cluster: prod-eu (https://0.0.0.0:6550")
    assert "object(s) to create" in shown and "create: Namespace develop" in shown
    assert w.kube.writes() == []
    with pytest.raises(GuardError, match="no terminal to ask: re-run with --yes"):
        prepare.prepare("prod-eu", profile="environments", console=console, kube_factory=w.kube_factory,
                        runner=w.runner, sleep=w.clock.sleep, clock=w.clock)


def test_prepare_holds_the_cluster_lease(tmp_path):
    from cluster.errors import LockError
    from cluster.live.setup import prepare
    from cluster.live.safety.lease import ClusterLease
    from support.local_world import LocalWorld, recording_console, seed_calico

    w = LocalWorld(tools=())
    seed_calico(w.kube)
    other = ClusterLease(w.kube, "rollback (dashi)")
    other.acquire()
    console, _ = recording_console()
    with pytest.raises(LockError, match=r"another run is changing this cluster: .* \(`rollback \(dashi\)`\) since"):
        prepare.prepare("k3d-dashi", profile="environments", console=console, kube_factory=w.kube_factory,
                        runner=w.runner, sleep=w.clock.sleep, clock=w.clock)
    assert w.kube.get("v1", "Namespace", "develop") is None
    other.release()
