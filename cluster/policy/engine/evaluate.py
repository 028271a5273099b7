"""Per-edge verdicts: the ``Engine`` decides one source, destination,
port and protocol against a set of policies, naming on each side (the
source's egress, the destination's ingress) the policies that select it
and the rules that allow; ``DATAPLANES`` names where a dataplane departs
from the API's wording, which the engine predicts when told. The whole
matrix at once is ``matrix``'s, offered here as ``Engine`` methods.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cluster.policy.engine import matrix
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.model import KUBE_APISERVER_ENTITY, NS_NAME_LABEL, Endpoint, Peer, Policy, Rule

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

    def line(self, peer: str, port: int, protocol: str) -> str:
        side = f"{self.direction} of {self.subject}"
        if self.note:
            return f"{side}: {self.note}"
        if not self.isolated:
            return f"{side}: allowed (no policy selects it for {self.direction})"
        if self.allowed:
            return f"{side}: allowed by {', '.join(self.allowing)}"
        return (f"{side}: BLOCKED: selected by {', '.join(self.selecting)}; "
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
    # cases ipblock-ingress, ipblock-egress and ipblock-egress-except.
    "cilium": "an ipBlock selects no pod, whatever its address (policy-cidr-match-mode without pods)",
}


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
        # Cilium's CIDR selectors reach no pod (see DATAPLANES).
        self.ipblock_selects_pods = dataplane != "cilium"
        self.namespaces = {n: {**(labels or {}), NS_NAME_LABEL: n} for n, labels in namespaces.items()}
        self.policies: list[Policy] = [p if isinstance(p, Policy) else compile_policy(p) for p in policies]
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

    def peer_matches(self, peer: Peer, policy_ns: str, ep: Endpoint) -> bool:
        if peer.entity is not None:
            return peer.entity == KUBE_APISERVER_ENTITY and ep.is_kube_apiserver
        if peer.cidr is not None:
            if ep.ip is None or (ep.is_pod and not self.ipblock_selects_pods):
                return False
            addr = ipaddress.ip_address(ep.ip)
            return addr in peer.cidr and not any(addr in ex for ex in peer.excepts)
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

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Decide src -> dst on port/protocol, naming the policies on each side."""
        egress = self._direction("egress", src, dst, dst, port, protocol)
        ingress = self._direction("ingress", dst, src, dst, port, protocol)
        return Verdict(src.key, dst.key, port, protocol, egress, ingress)

    # -- whole matrices -----------------------------------------------------

    def allowed_matrix(self, endpoints: Sequence[Endpoint]) -> dict[tuple[int, int], int]:
        """Every (src, dst, dst port) among ``endpoints`` as bitsets:
        {(dst_index, port_index): allowed source indices} (``matrix.allowed_matrix``)."""
        return matrix.allowed_matrix(self, endpoints)

    def port_ranges(self, endpoints: Sequence[Endpoint]):
        """Every allowed port range between ``endpoints``, declared ports or not:
        ``(dst_index, protocol, segments)`` (``matrix.port_ranges``)."""
        return matrix.port_ranges(self, endpoints)

