"""Make an existing cluster ready for the rollout: ``inv prepare --context C``.

No k3d, no CNI install: connect to the cluster the user names, check its
nodes, deploy a profile's stand-ins and prove enforcement with the canary.
The stand-in and canary stages are shared with ``cluster-up``
(cluster.local.lifecycle), which runs them after creating the cluster.

``prepare`` changes a cluster, so it is guarded like the rollout: the
banner names the cluster, the plan says which objects will be created or
updated, a cluster that is not a local k3d one must be confirmed, and the
whole run holds this machine's lock and the cluster's lease. The shared
stages take the lock and lease themselves when ``cluster-up`` runs them.

The canary's deny phase shows how the CNI treats a denied packet (dropped:
the probe times out; rejected: refused); that is kept with the cluster's
state (``ClusterState.save_cni``) and read by every later probe.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from rich.console import Console

from cluster.errors import DashiError
from cluster.invoked import command
from cluster.live.observe import readiness
from cluster.live.observe.cni import cni_label, detect_cni
from cluster.live.record.identity import ClusterState
from cluster.live.safety import guard
from cluster.live.safety.lease import Hold
from cluster.live.setup import canary, standins
from cluster.live.setup.pipeline import Apply, Note, Session, Stage, poll, print_plan, run_stages
from cluster.policy.manifests import obj_ref
from cluster.policy.profile import load_profile
from cluster.seams.kube import Kube

PROFILES = ("dashi", "dashi-cnp", "environments")

# Nodes turn Ready once the CNI has written its config; after the CNI's own
# rollout that takes seconds, 3 minutes covers slow agents.
NODES_TIMEOUT_S = 180


def nodes_ready(expected: int | None) -> Callable[[Session], tuple[bool, str]]:
    def probe(s: Session) -> tuple[bool, str]:
        nodes = s.kube.list("v1", "Node")
        states = [readiness.node_ready(n) for n in nodes]
        ready = sum(1 for ok, _ in states if ok)
        want = expected if expected is not None else max(len(nodes), 1)
        return len(nodes) >= want and ready == len(nodes), f"{ready}/{want} nodes Ready"
    return probe


@contextlib.contextmanager
def held(s: Session, command: str):
    """The session's hold when the whole pipeline took one (``prepare``);
    otherwise this machine's lock and the cluster's lease for one stage
    (``cluster-up`` runs the shared stages on a cluster it just made)."""
    if s.ctx.hold is not None:
        yield s.ctx.hold
        return
    with Hold(s.kube, ClusterState.open(s.kube).dir, command) as hold:
        yield hold


def standins_stage(profile_name: str, adopt: bool = False, traffic: bool = False) -> Stage:
    def actions(s: Session):
        profile = load_profile(profile_name)
        namespaces, workloads = standins.objects(profile, traffic)
        n = sum(1 for w in workloads if readiness.is_workload(w))
        return [Apply(namespaces + workloads, why=f"the {profile_name} profile's namespaces and stand-ins"),
                Note(f"wait until all {n} stand-in workloads are Ready (timeout {standins.READY_TIMEOUT_S}s)")]

    def run(s: Session):
        profile = load_profile(profile_name)
        with held(s, f"deploy the {profile_name} stand-ins"):
            changed, note = standins.deploy(s.kube, profile, adopt=adopt, sleep=s.sleep, clock=s.clock,
                                            progress=s.progress, traffic=traffic)
        s.ctx.standins = note
        return changed, note

    return Stage("standins", f"Deploy the {profile_name} stand-ins and wait until Ready", actions=actions, run=run)


def canary_stage(cni_label: Callable[[Session], str], connect=None, profile_name: str | None = None) -> Stage:
    """The canary; with ``profile_name`` whose steps hold ClusterNetworkPolicies,
    it proves that kind enforced too."""
    cluster_policy = bool(profile_name and load_profile(profile_name).cluster_policy_steps)

    def actions(s: Session):
        out = []
        for what, objs in canary.plan(cluster_policy=cluster_policy):
            out.append(Apply(objs, why=what) if objs else Note(what))
        return out

    def run(s: Session) -> str:
        with held(s, "run the enforcement canary"):
            result = canary.measure(s.kube, ClusterState.open(s.kube), cni_label(s), sleep=s.sleep, clock=s.clock,
                                    progress=s.progress, connect=connect, cluster_policy=cluster_policy)
        s.ctx.canary = result
        line = canary.verdict(result, cni_label(s))  # raises loudly when not enforced
        s.ctx.canary_line = line
        return line

    what = "NetworkPolicy and ClusterNetworkPolicy" if cluster_policy else "NetworkPolicy"
    return Stage("canary", f"Prove {what} enforcement (canary)", actions=actions, run=run, verify=True)


def plan(kube: Kube, profile_name: str, traffic: bool = False) -> list[str]:
    """What prepare will change: the stand-in objects it creates and those it
    applies again (server-side apply leaves an unchanged one as it is)."""
    namespaces, workloads = standins.objects(load_profile(profile_name), traffic)
    create, update = [], []
    for obj in namespaces + workloads:
        md = obj["metadata"]
        live = kube.get(obj["apiVersion"], obj["kind"], md["name"], md.get("namespace"))
        (create if live is None else update).append(obj_ref(obj))
    out = [f"Plan: {len(create)} object(s) to create, {len(update)} to apply again (unchanged ones stay as they "
           "are); the canary then creates a throwaway namespace dashi-canary-<random> and deletes it"]
    if create:
        out.append(f"  create: {', '.join(create)}")
    if update:
        out.append(f"  apply again: {', '.join(update)}")
    return out


def _refuse_unserved_kind(kube: Kube, context: str, profile: str) -> None:
    """A profile with ClusterNetworkPolicy steps on a cluster without the
    kind's CRD (kube-router, k3s's controller, implements NetworkPolicy
    only): refused before anything is deployed, not after the stand-ins."""
    steps = load_profile(profile).cluster_policy_steps
    if steps and kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", canary.KCNP_CRD) is None:
        raise DashiError(f"profile {profile} needs ClusterNetworkPolicy ({', '.join(steps)}), which context "
                         f"{context} does not serve (no CRD {canary.KCNP_CRD}): nothing was changed; "
                         f"{command('cluster-up --cni cilium')} makes a cluster that enforces it")


def prepare(context: str, *, profile: str, console: Console, kube_factory: Callable[[str], Kube],
            adopt: bool = False, dry_run: bool = False, yes: bool = False, confirm: guard.Confirm | None = None,
            sleep=None, clock=None, connect=None, runner=None, traffic: bool = False) -> dict:
    if not context:
        raise DashiError("prepare needs --context: name the kubeconfig context of the cluster to prepare")
    if profile not in PROFILES:
        raise DashiError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    s = Session(runner=runner, console=console, kube_factory=kube_factory, context=context,
                dry_run=dry_run)
    if sleep:
        s.sleep = sleep
    if clock:
        s.clock = clock

    def connect_stage(s: Session) -> str:
        server = s.kube.server()
        cni = detect_cni(s.kube)
        s.ctx.cni = cni
        poll(s, "all nodes are Ready", nodes_ready(None), NODES_TIMEOUT_S)
        return f"{context} at {server}; policy engine seen: {cni}"

    stages = [
        Stage("connect", f"Connect to context '{context}'",
             actions=lambda s: [Note("read the API server address, detect the CNI, check nodes Ready")],
             run=connect_stage, verify=True),
        standins_stage(profile, adopt=adopt, traffic=traffic),
        canary_stage(lambda s: cni_label(s.ctx.cni), connect=connect, profile_name=profile),
    ]
    if dry_run:
        console.print(f"[bold]Dry run[/bold] — prepare context '{context}' with profile {profile}. Nothing is changed.")
        print_plan(stages, s)
        return {"dry_run": True}
    kube = s.kube
    _refuse_unserved_kind(kube, context, profile)
    server, proxy = kube.server(), kube.proxy()
    action = f"prepare: deploy profile {profile}'s stand-ins and run the canary"
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(guard.banner(context, server, action, proxy))
    cluster = ClusterState.open(kube)
    if cluster.note:
        say(cluster.note)
    for line in plan(kube, profile, traffic):
        say(line)
    guard.check(context, server, context, yes=yes, confirm=confirm, action=action, proxy=proxy)
    with Hold(kube, cluster.dir, f"prepare ({profile})", say=say) as hold:
        s.ctx.hold = hold
        console.print(f"[bold]prepare[/bold] — context {context}, profile {profile} (no k3d, no CNI install)")
        run_stages(stages, s, after_failure="Objects applied so far are left in place for inspection.")
    return {"context": context, "cni": s.ctx.cni, "standins": s.ctx.standins or None,
            "canary": s.ctx.canary_line or None}
