"""Per-edge verdicts: the ``Engine`` decides one source, destination,
port and protocol against a set of policies, naming on each side (the
source's egress, the destination's ingress) the policies that select it
and the rules that allow, or the ClusterNetworkPolicy rule that decided
(``tiers``); ``DATAPLANES`` names where a dataplane departs from the API's
wording, which the engine predicts when told. The whole matrix at once is
``matrix``'s (``tiers``' with ClusterNetworkPolicies), offered here as
``Engine`` methods.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from cluster.policy.engine import cilium, matrix, tiers
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.model import (
    ACCEPT,
    ADMIN,
    BASELINE_TIER,
    KUBE_APISERVER_ENTITY,
    NS_NAME_LABEL,
    PASS,
    ClusterPolicy,
    Endpoint,
    Peer,
    Policy,
    Rule,
)

# --------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class DirectionVerdict:
    direction: str  # "egress" or "ingress"
    subject: str  # endpoint key whose policies decide
    allowed: bool
    isolated: bool
    selecting: tuple[str, ...] = ()  # policies that select the subject for this direction
    allowing: tuple[str, ...] = ()  # "ns/policy ingress rule N"
    note: str = ""
    # When a ClusterNetworkPolicy rule decided: its tier and the rule
    # ("ClusterNetworkPolicy x (Admin, priority 10) rule 2 'deny-all'"); the
    # Admin Pass rule that handed the direction on; the other policies of
    # the same priority that matched too ("ClusterNetworkPolicy y (Deny)").
    tier: str = ""
    decided_by: str = ""
    passed: str = ""
    tied: tuple[str, ...] = ()
    undefined: bool = False

    def line(self, peer: str, port: int, protocol: str) -> str:
        side = f"{self.direction} of {self.subject}"
        if self.note:
            return f"{side}: {self.note}"
        side += f": passed on by {self.passed}; then" if self.passed else ":"
        if self.decided_by:
            tied = (f" (also matched at the same priority: {', '.join(self.tied)}; the API leaves their order "
                    "undefined)" if self.undefined else "")
            return f"{side} {'ALLOWED' if self.allowed else 'DENIED'} by {self.decided_by}{tied}"
        if not self.isolated:
            if self.passed:
                return f"{side} allowed (no NetworkPolicy selects it for {self.direction}, no Baseline rule matches)"
            if self.selecting:
                return (f"{side} allowed (no rule of {', '.join(self.selecting)} matches, and no NetworkPolicy "
                        f"selects it for {self.direction})")
            return f"{side} allowed (no policy selects it for {self.direction})"
        if self.allowed:
            return f"{side} allowed by {', '.join(self.allowing)}"
        return (f"{side} BLOCKED: selected by {', '.join(self.selecting)}; "
                f"no rule allows {peer} on {port}/{protocol}")


@dataclass(frozen=True)
class Verdict:
    src: str
    dst: str
    port: int
    protocol: str
    egress: DirectionVerdict
    ingress: DirectionVerdict

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    def lines(self) -> list[str]:
        head = f"{self.src} -> {self.dst} {self.port}/{self.protocol}: " + (
            "ALLOWED" if self.allowed else "BLOCKED")
        return [head,
                "  " + self.egress.line(self.dst, self.port, self.protocol),
                "  " + self.ingress.line(self.src, self.port, self.protocol)]

    def blocking_side(self) -> list[str]:
        return [d.direction for d in (self.egress, self.ingress) if not d.allowed]


# --------------------------------------------------------------------------
# The engine


# Where a dataplane departs from the NetworkPolicy API's wording, as the live
# conformance suite (tests/e2e/test_conformance_e2e.py) measured it on each
# test lane; the engine predicts that dataplane's behaviour when told it
# (None: the API's wording, which kube-router, k3s's policy controller, met
# on every case).
DATAPLANES: dict[str | None, str] = {
    None: "the NetworkPolicy API as written",
    "k3s": "the NetworkPolicy API as written (kube-router: every conformance case agreed)",
    "calico": "the NetworkPolicy API as written (not measured here: Calico cannot be built on the test machines)",
    # Cilium v1.20.2 pkg/policy/types/selector.go, CIDRSelector.Matches: a
    # CIDR selector (an ipBlock) matches the world identity, node identities
    # under policy-cidr-match-mode=nodes, and pods only under
    # policy-cidr-match-mode=pods, which is not the default. Conformance
    # cases ipblock-ingress, ipblock-egress and ipblock-egress-except; the
    # same for a ClusterNetworkPolicy's networks (admin-networks-deny). A /0
    # (Cilium reads it as the world identity) also misses the node's
    # address, which is the API server's on k3d and on the lane: measured
    # with networks 0.0.0.0/0 (not matched) against 0.0.0.0/1 + 128.0.0.0/1
    # and a /32 (matched), and dashi's ipBlock allow-kube-api step (0.0.0.0/0
    # except the pod and service CIDRs) opened nothing there. Cilium v1.20.2
    # pkg/policy/repository.go puts NetworkPolicies (Normal tier) and the
    # Baseline tier in one list, so a Baseline Accept opens what a
    # selected pod's NetworkPolicies leave closed (np-then-baseline).
    # pkg/k8s/cluster_network_policy.go refuses a whole ClusterNetworkPolicy
    # with a nodes peer (node selector labels off, the default) or a
    # domainNames peer (L7 proxy off, as cluster-up and the lane run it)
    # (nodes-peer, domain-names-peer). Pods are selected by their identity's
    # labels, which pkg/labelsfilter trims (engine.cilium.identity_labels):
    # a selector on statefulset.kubernetes.io/pod-name matches no pod
    # (admin-pod-selectors, baseline-pod-selectors). A ClusterNetworkPolicy's
    # namespaces peer of NotIn / DoesNotExist only matches every pod and
    # address (tiers.negative_only; namespace-expressions).
    "cilium": "an ipBlock, or a ClusterNetworkPolicy's networks, selects no pod, whatever its address "
              "(policy-cidr-match-mode without pods), and a /0 not the node's address either; a Baseline "
              "Accept also opens what a selected pod's NetworkPolicies leave closed; a ClusterNetworkPolicy "
              "with a nodes or domainNames peer is refused whole; a pod selector on a label Cilium leaves out "
              "of identities (statefulset.kubernetes.io/pod-name, pod-template-hash, kubernetes.io/...) "
              "matches no pod; a ClusterNetworkPolicy's namespaces peer of NotIn / DoesNotExist only matches "
              "every pod and address",
}
# Why Cilium refuses a ClusterNetworkPolicy, in its agent's words (v1.20.2
# pkg/k8s/cluster_network_policy.go, ParseClusterNetworkPolicy).
_CILIUM_REFUSES = {"nodes": "egress.to.nodes is not supported since node selector labels are disabled",
                   "domainNames": "egress.to.domainNames is not supported since L7 proxy is disabled"}


class Engine:
    """Evaluate traffic against a set of policies.

    ``namespaces`` maps each namespace name to its labels; the
    ``kubernetes.io/metadata.name`` label is added as the API server does.
    """

    def __init__(self, namespaces: Mapping[str, Mapping[str, str]], policies: Iterable[Mapping | Policy], *,
                 dataplane: str | None = None):
        if dataplane not in DATAPLANES:
            raise ValueError(f"unknown dataplane {dataplane!r}: one of {', '.join(map(str, DATAPLANES))}")
        self.dataplane = dataplane
        # Cilium's CIDR selectors reach no pod, a /0 not the node either; its
        # Baseline tier follows the NetworkPolicies (see DATAPLANES).
        self.ipblock_selects_pods = dataplane != "cilium"
        self.world_selects_nodes = dataplane != "cilium"
        self.baseline_after_networkpolicy = dataplane == "cilium"
        # Cilium selects pods by their identity's labels; a namespaces peer of
        # NotIn / DoesNotExist only matches everything there (see DATAPLANES).
        self.negative_namespaces_match_all = dataplane == "cilium"
        self.identity_labels = cilium.identity_labels if dataplane == "cilium" else None
        self._seen: dict[int, tuple[Endpoint, Endpoint]] = {}
        self.namespaces = {n: {**(labels or {}), NS_NAME_LABEL: n} for n, labels in namespaces.items()}
        compiled = [p if isinstance(p, (Policy, ClusterPolicy)) else compile_policy(p) for p in policies]
        self.policies: list[Policy] = [p for p in compiled if isinstance(p, Policy)]
        # What the engine reads but cannot predict: peers it does not model,
        # and (on Cilium) the policies the agent refuses because of them.
        self.notes: list[str] = []
        self.cluster_policies: list[ClusterPolicy] = []
        for p in compiled:
            if not isinstance(p, ClusterPolicy):
                continue
            kinds = {peer.unmodelled.split()[0] for r in p.ingress + p.egress for peer in r.peers if peer.unmodelled}
            refused = sorted(_CILIUM_REFUSES[k] for k in kinds) if dataplane == "cilium" else []
            if refused:
                self.notes.append(f"{p.ref}: refused whole by Cilium ({'; '.join(refused)}): none of its rules "
                                  "apply, predicted so")
                continue
            self.notes.extend(f"{p.ref} {n}: not modelled, predicted as matching none of the endpoints"
                              for n in p.unmodelled)
            self.cluster_policies.append(p)
        if self.identity_labels is not None:
            self.notes.extend(_identity_notes(self.policies + self.cluster_policies))
            self.notes.extend(f"{p.ref} {direction} rule {r.index}{f' {r.name!r}' if r.name else ''}: a "
                              "namespaces peer of NotIn / DoesNotExist only, which Cilium matches with every pod "
                              "and address: predicted so"
                              for p in self.cluster_policies for direction in ("ingress", "egress")
                              for r in getattr(p, direction)
                              if any(peer.pod_selector is None and peer.namespace_selector is not None
                                     and tiers.negative_only(peer.namespace_selector) for peer in r.peers))
        self.tiers = tiers.Tiers(self.cluster_policies, self) if self.cluster_policies else None
        self._by_ns: dict[str, list[Policy]] = {}
        for p in self.policies:
            self._by_ns.setdefault(p.namespace, []).append(p)
        # What evaluate works out once per endpoint, not once per edge: the
        # policies selecting it (_side), and whether a rule's peers include
        # it (_rule_allows). An engine's policies never change.
        self._sides: dict[tuple[str, Endpoint], object] = {}
        self._peers_of: dict[tuple[int, str, Endpoint], bool] = {}

    # -- peers --------------------------------------------------------------

    def ns_labels(self, namespace: str | None) -> Mapping[str, str]:
        if namespace is None:
            return {}
        return self.namespaces.get(namespace, {NS_NAME_LABEL: namespace})

    def network_matches(self, network, ep: Endpoint) -> bool:
        """Whether a CIDR (an ipBlock's, a ClusterNetworkPolicy's networks)
        selects an endpoint at a known address, as the dataplane decides."""
        if ep.ip is None or ipaddress.ip_address(ep.ip) not in network:
            return False
        if ep.is_pod and not self.ipblock_selects_pods:
            return False
        return network.prefixlen > 0 or self.world_selects_nodes or not ep.is_kube_apiserver

    def peer_matches(self, peer: Peer, policy_ns: str, ep: Endpoint) -> bool:
        if peer.entity is not None:
            return peer.entity == KUBE_APISERVER_ENTITY and ep.is_kube_apiserver
        if peer.cidr is not None:
            if not self.network_matches(peer.cidr, ep):
                return False
            addr = ipaddress.ip_address(ep.ip)
            return not any(addr in ex for ex in peer.excepts)
        if not ep.is_pod:
            return False
        if peer.namespace_selector is None:
            if ep.namespace != policy_ns:
                return False
        elif not peer.namespace_selector.matches(self.ns_labels(ep.namespace)):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(ep.labels)

    def _rule_allows(self, rule: Rule, policy_ns: str, peer: Endpoint, dst: Endpoint,
                     port: int, protocol: str) -> bool:
        if rule.ports is not None and not any(pr.matches(dst, port, protocol) for pr in rule.ports):
            return False
        if rule.peers is None:
            return True
        # The rule lives as long as the engine's policies, so its id is a key.
        key = (id(rule), policy_ns, peer)
        hit = self._peers_of.get(key)
        if hit is None:
            hit = self._peers_of[key] = any(self.peer_matches(p, policy_ns, peer) for p in rule.peers)
        return hit

    def selecting(self, ep: Endpoint, direction: str) -> list[Policy]:
        if not ep.is_pod:
            return []
        out = []
        for p in self._by_ns.get(ep.namespace or "", ()):
            rules = p.ingress if direction == "ingress" else p.egress
            if rules is not None and p.pod_selector.matches(ep.labels):
                out.append(p)
        return out

    def _side(self, direction: str, ep: Endpoint):
        """What decides ``direction`` for ``ep``, worked out once per endpoint:
        a fixed verdict where no policy can apply, else the refs of the
        policies selecting it, their rules as (rule, policy namespace,
        "ns/policy direction rule N"), and the verdicts made so far by the
        rules that allowed (verdicts are immutable, so equal ones are shared)."""
        key = (direction, ep)
        side = self._sides.get(key)
        if side is None:
            if ep.kind == "host":
                side = DirectionVerdict(direction, ep.key, True, False,
                                        note="the node's own traffic is not subject to NetworkPolicy")
            elif not ep.is_pod:
                side = DirectionVerdict(direction, ep.key, True, False,
                                        note="outside the pod network: no policy applies here")
            else:
                policies = self.selecting(ep, direction)
                if not policies:
                    side = DirectionVerdict(direction, ep.key, True, False)
                else:
                    rules = [(rule, p.namespace, f"{p.ref} {direction} rule {rule.index}")
                             for p in policies for rule in (p.ingress if direction == "ingress" else p.egress) or ()]
                    side = (tuple(p.ref for p in policies), rules, {})
            self._sides[key] = side
        return side

    def _direction(self, direction: str, subject: Endpoint, peer: Endpoint, dst: Endpoint,
                   port: int, protocol: str) -> DirectionVerdict:
        side = self._side(direction, subject)
        if isinstance(side, DirectionVerdict) and side.note:  # the node itself, or outside the pod network
            return side
        if direction == "ingress" and peer.kind == "host":
            return DirectionVerdict(direction, subject.key, True, False,
                                    note="allowed: traffic from the node to its local pods "
                                         "(kubelet probes, port-forward) is always allowed")
        if self.tiers is None:
            return self._networkpolicy(side, direction, subject, peer, dst, port, protocol)
        args = (direction, subject, peer, dst, port, protocol)
        admin = self.tiers.decide(ADMIN, *args)
        if admin is not None and admin.action != PASS:
            return self._decided(direction, subject, admin)
        passed = admin.rule.label if admin is not None else ""
        verdict = self._networkpolicy(side, *args)
        if verdict.isolated:
            if not verdict.allowed and self.baseline_after_networkpolicy:
                base = self.tiers.decide(BASELINE_TIER, *args)
                if base is not None and base.action == ACCEPT:
                    return self._decided(direction, subject, base, passed,
                                         " (Cilium: the Baseline tier also decides what a pod's NetworkPolicies "
                                         "leave closed)")
            return replace(verdict, passed=passed) if passed else verdict
        base = self.tiers.decide(BASELINE_TIER, *args)
        if base is not None and base.action != PASS:
            return self._decided(direction, subject, base, passed)
        return DirectionVerdict(direction, subject.key, True, False, self.tiers.selecting(direction, subject),
                                passed=passed or (base.rule.label if base is not None else ""))

    @staticmethod
    def _decided(direction: str, subject: Endpoint, decision: tiers.Decision, passed: str = "",
                 why: str = "") -> DirectionVerdict:
        t = decision.rule
        accepted = decision.action == ACCEPT
        return DirectionVerdict(direction, subject.key, accepted, True, (t.policy.ref,),
                                (t.tag,) if accepted else (), tier=t.policy.tier, decided_by=t.label + why,
                                passed=passed, tied=decision.tied, undefined=decision.undefined)

    def _networkpolicy(self, side, direction: str, subject: Endpoint, peer: Endpoint, dst: Endpoint,
                       port: int, protocol: str) -> DirectionVerdict:
        """The NetworkPolicy tier's verdict (the whole verdict without ClusterNetworkPolicies)."""
        if isinstance(side, DirectionVerdict):  # no policy selects it
            return side
        selecting, rules, made = side
        allowing = tuple(label for rule, ns, label in rules
                         if self._rule_allows(rule, ns, peer, dst, port, protocol))
        verdict = made.get(allowing)
        if verdict is None:
            verdict = made[allowing] = DirectionVerdict(direction, subject.key, bool(allowing), True,
                                                        selecting, allowing)
        return verdict

    def seen(self, ep: Endpoint) -> Endpoint:
        """``ep`` as the dataplane's selectors see it: on Cilium, with the
        labels its identities leave out taken away."""
        if self.identity_labels is None or not ep.labels:
            return ep
        hit = self._seen.get(id(ep))
        if hit is None or hit[0] is not ep:  # (the pair keeps ep alive, so its id is not reused)
            labels = self.identity_labels(ep.labels)
            hit = self._seen[id(ep)] = (ep, ep if len(labels) == len(ep.labels) else replace(ep, labels=labels))
        return hit[1]

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Decide src -> dst on port/protocol, naming the policies on each side."""
        src, dst = self.seen(src), self.seen(dst)
        egress = self._direction("egress", src, dst, dst, port, protocol)
        ingress = self._direction("ingress", dst, src, dst, port, protocol)
        return Verdict(src.key, dst.key, port, protocol, egress, ingress)

    # -- whole matrices -----------------------------------------------------

    def allowed_matrix(self, endpoints: Sequence[Endpoint]) -> dict[tuple[int, int], int]:
        """Every (src, dst, dst port) among ``endpoints`` as bitsets:
        {(dst_index, port_index): allowed source indices} (``matrix.allowed_matrix``,
        ``tiers.allowed_matrix`` when there are ClusterNetworkPolicies)."""
        endpoints = [self.seen(ep) for ep in endpoints]
        if self.tiers is not None:
            return tiers.allowed_matrix(self, endpoints)
        return matrix.allowed_matrix(self, endpoints)

    def port_ranges(self, endpoints: Sequence[Endpoint]):
        """Every allowed port range between ``endpoints``, declared ports or not:
        ``(dst_index, protocol, segments)`` (``matrix.port_ranges``, ``tiers.port_ranges``)."""
        endpoints = [self.seen(ep) for ep in endpoints]
        if self.tiers is not None:
            return tiers.port_ranges(self, endpoints)
        return matrix.port_ranges(self, endpoints)

    def overlaps(self, endpoints: Sequence[Endpoint]) -> list[str]:
        """ClusterNetworkPolicies of one tier and priority that can match one
        connection among ``endpoints`` (``tiers.overlaps``), one line each."""
        return tiers.overlaps(self, [self.seen(ep) for ep in endpoints]) if self.tiers is not None else []


def _identity_notes(policies: Sequence[Policy | ClusterPolicy]) -> list[str]:
    """One note per policy whose pod selectors use labels Cilium's
    identities leave out (those selectors match no pod there)."""
    out = []
    for p in policies:
        if isinstance(p, Policy):
            selectors = [p.pod_selector] + [peer.pod_selector for r in (p.ingress or ()) + (p.egress or ())
                                            for peer in (r.peers or ())]
        else:
            selectors = [p.subject_pods] + [peer.pod_selector for r in p.ingress + p.egress for peer in r.peers]
        keys = sorted({k for sel in selectors if sel is not None
                       for k in [k for k, _ in sel.match_labels] + [k for k, _, _ in sel.expressions]
                       if not cilium.in_identity(k)})
        if keys:
            out.append(f"{p.ref}: selects pods by {', '.join(keys)}, a label Cilium leaves out of pod identities "
                       "(pkg/labelsfilter): predicted as Cilium has it, no pod carries it")
    return out
