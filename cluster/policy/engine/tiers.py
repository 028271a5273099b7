"""ClusterNetworkPolicy's tiers around NetworkPolicy, per direction.

Each direction of a connection (the source's egress, the destination's
ingress) is decided on its own, in this order (ClusterNetworkPolicySpec.Tier
in apis/v1beta1/clusternetworkpolicy_types.go, NPEP-285):

1. Admin tier: the rules of the Admin policies whose subject selects the
   pod, by priority (lower first), each policy's rules in order; the first
   rule whose peer and protocols match decides. Accept and Deny are final
   for this direction; Pass skips the rest of the tier.
2. NetworkPolicy tier: a pod that a NetworkPolicy (or a CiliumNetworkPolicy
   of the subset the engine reads) selects for this direction is decided
   there: allowed when one of their rules allows, else denied.
3. Baseline tier: as the Admin tier, for pods no NetworkPolicy selects for
   this direction; Pass, like no match, goes on to
4. the default: allowed.

Traffic flows when both directions allow it: an egress Accept leaves the
destination's ingress to be decided. Traffic from the node to its pods is
not subject to any of it (its ingress peers name pods only).

Two policies of one tier with the same priority leave the order undefined
(the API: "the implementation can apply any of the matching policies").
The engine orders them as Cilium v1.20.2 does (pkg/k8s/
cluster_network_policy.go gives rule i of a policy the priority
``priority + i/100``; measured on the test lane: at one level, Deny before
Accept before Pass), so rule 1 of every tied policy comes before rule 2 of
any, and names the other tied policies that matched in the verdict.

Two paths, which the randomized tests hold to each other: ``Tiers.decide``
for one connection (``evaluate`` builds the verdict that names the deciding
rule), and ``allowed_matrix`` / ``port_ranges`` for the whole matrix as
bitsets: the NetworkPolicy tier's decision per direction comes from
``matrix`` (over the ingress rules alone, then the egress rules alone), the
ClusterNetworkPolicy tiers are bitsets of their own, and the two combine per
destination and port.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from cluster.policy.engine import matrix
from cluster.policy.engine.matrix import MAX_PORT
from cluster.policy.engine.model import (
    ACCEPT,
    ADMIN,
    BASELINE_TIER,
    DENY,
    PASS,
    PROTOCOLS,
    ClusterPeer,
    ClusterPolicy,
    ClusterRule,
    Endpoint,
)

DIRECTIONS = ("ingress", "egress")
# At one priority level Cilium applies a Deny before an Accept before a Pass
# (measured on the cilium lane: same-priority Accept vs Deny and Pass vs
# Deny gave Deny, Accept vs Pass gave Accept).
_ACTION_ORDER = {DENY: 0, ACCEPT: 1, PASS: 2}


@dataclass(frozen=True)
class TierRule:
    """One rule of a ClusterNetworkPolicy, in the order its tier applies it."""

    policy: ClusterPolicy
    rule: ClusterRule
    direction: str

    @property
    def order(self) -> tuple:
        return self.policy.priority, self.rule.index, _ACTION_ORDER[self.rule.action], self.policy.name

    @property
    def label(self) -> str:
        """How a verdict names it: "ClusterNetworkPolicy x (Admin, priority 10) rule 2 'deny-all'"."""
        name = f" {self.rule.name!r}" if self.rule.name else ""
        return f"{self.policy.describe} rule {self.rule.index}{name}"

    @property
    def tag(self) -> str:
        """How the least-privilege audit names it, as a NetworkPolicy's rule: "<ref> ingress rule N"."""
        return f"{self.policy.ref} {self.direction} rule {self.rule.index}"

    def matches_port(self, dst: Endpoint, port: int, protocol: str) -> bool:
        ports = self.rule.ports
        return ports is None or any(pr.matches(dst, port, protocol) for pr in ports)


@dataclass(frozen=True)
class Decision:
    """What a tier decided for one direction: the rule, and the other
    policies of the same priority that matched too (``tied``: "<policy>
    (<action>)"), whose order the API leaves undefined."""

    rule: TierRule
    tied: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        return self.rule.rule.action

    @property
    def undefined(self) -> bool:
        """Another same-priority policy would have decided otherwise."""
        return any(not t.endswith(f"({self.action})") for t in self.tied)


class Peers(Protocol):
    """What the tiers read of an ``Engine``: a namespace's labels, whether
    a CIDR selects an endpoint (where the dataplane decides), and whether a
    ``namespaces`` peer of NotIn / DoesNotExist only matches everything (as
    on Cilium: see ``negative_only``)."""

    negative_namespaces_match_all: bool

    def ns_labels(self, namespace: str | None) -> Mapping[str, str]: ...

    def network_matches(self, network, ep: Endpoint) -> bool: ...


def negative_only(selector) -> bool:
    """A selector of NotIn / DoesNotExist requirements only. Cilium v1.20.2
    turns a ``namespaces`` peer into a selector over namespace labels alone
    (pkg/k8s/cluster_network_policy.go; a ``pods`` peer, and a NetworkPolicy's,
    also requires the cluster label), so such a selector also selects the
    identities without namespace labels: the reserved ones (world, host,
    kube-apiserver) and the cluster's aggregate identity, which the datapath
    looks up for every pod (pkg/policy/aggregate.go). The peer then matches
    every pod and every address, measured on the lane (namespace-expressions)."""
    return not selector.match_labels and bool(selector.expressions) and \
        all(op in ("NotIn", "DoesNotExist") for _, op, _ in selector.expressions)


class Tiers:
    """The ClusterNetworkPolicies of an engine, ordered per tier and direction."""

    def __init__(self, policies: Sequence[ClusterPolicy], peers: Peers):
        self.policies = list(policies)
        self.peers = peers
        self.ordered: dict[tuple[str, str], list[TierRule]] = {}
        for tier in (ADMIN, BASELINE_TIER):
            for direction in DIRECTIONS:
                rules = [TierRule(p, r, direction) for p in self.policies if p.tier == tier
                         for r in p.rules(direction)]
                self.ordered[(tier, direction)] = sorted(rules, key=lambda t: t.order)
        self._subject: dict[tuple[str, str, str], list[TierRule]] = {}
        self._peer: dict[tuple[int, str], bool] = {}

    # -- who is who ---------------------------------------------------------

    def selects(self, policy: ClusterPolicy, ep: Endpoint) -> bool:
        """The policy's subject holds the pod (host-network pods never, nor anything outside the pod network)."""
        return ep.is_pod and policy.subject_namespaces.matches(self.peers.ns_labels(ep.namespace)) and \
            (policy.subject_pods is None or policy.subject_pods.matches(ep.labels))

    def peer_matches(self, peer: ClusterPeer, ep: Endpoint) -> bool:
        if peer.unmodelled:
            return False
        if peer.networks:
            return ep.ip is not None and any(self.peers.network_matches(n, ep) for n in peer.networks)
        if peer.pod_selector is None and self.peers.negative_namespaces_match_all and \
                negative_only(peer.namespace_selector):
            return True
        if not ep.is_pod or not peer.namespace_selector.matches(self.peers.ns_labels(ep.namespace)):
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(ep.labels)

    def _matches_peer(self, rule: ClusterRule, ep: Endpoint) -> bool:
        key = (id(rule), ep.key)
        hit = self._peer.get(key)
        if hit is None:
            hit = self._peer[key] = any(self.peer_matches(p, ep) for p in rule.peers)
        return hit

    def rules_for(self, tier: str, direction: str, subject: Endpoint) -> list[TierRule]:
        """The tier's rules for the subject's direction, in order."""
        key = (tier, direction, subject.key)
        got = self._subject.get(key)
        if got is None:
            got = self._subject[key] = [t for t in self.ordered[(tier, direction)] if self.selects(t.policy, subject)]
        return got

    def selecting(self, direction: str, subject: Endpoint) -> tuple[str, ...]:
        seen = dict.fromkeys(t.policy.describe for tier in (ADMIN, BASELINE_TIER)
                             for t in self.rules_for(tier, direction, subject))
        return tuple(seen)

    # -- one connection -----------------------------------------------------

    def decide(self, tier: str, direction: str, subject: Endpoint, peer: Endpoint, dst: Endpoint,
               port: int, protocol: str) -> Decision | None:
        """The first rule of ``tier`` that matches ``peer`` (the other end) on
        the port of ``dst``, for the subject's ``direction``; None when none does."""
        first = None
        tied: dict[str, str] = {}
        for t in self.rules_for(tier, direction, subject):
            if first is not None and t.policy.priority != first.policy.priority:
                break
            if t.policy.name in tied or (first is not None and t.policy is first.policy):
                continue
            if not t.matches_port(dst, port, protocol) or not self._matches_peer(t.rule, peer):
                continue
            if first is None:
                first = t
            else:
                tied[t.policy.name] = f"{t.policy.ref} ({t.rule.action})"
        return None if first is None else Decision(first, tuple(tied.values()))


# --------------------------------------------------------------------------
# The whole matrix


class PolicySet(matrix.PolicySet, Peers, Protocol):
    """What the whole-matrix path reads of an ``Engine``."""

    cluster_policies: list[ClusterPolicy]
    tiers: Tiers
    baseline_after_networkpolicy: bool


@dataclass
class _OneWay:
    """An engine's NetworkPolicies with one direction only, for ``matrix``:
    its allowed bits are then that direction's decision alone."""

    engine: PolicySet
    direction: str

    def __post_init__(self):
        other = "egress" if self.direction == "ingress" else "ingress"
        self.policies = [replace(p, **{other: None}) for p in self.engine.policies
                         if getattr(p, self.direction) is not None]

    def ns_labels(self, namespace):
        return self.engine.ns_labels(namespace)

    def peer_matches(self, peer, policy_ns, ep):
        return self.engine.peer_matches(peer, policy_ns, ep)


def _walk(matches, undecided: int) -> tuple[int, int, int]:
    """A tier over a set of connections (bits): each (action, bits) in the
    tier's order takes the still undecided bits it matches. Returns the
    accepted, the passed and the still undecided bits (the rest is denied)."""
    accepted = passed = 0
    for action, bits in matches:
        hit = bits & undecided
        if not hit:
            continue
        if action == ACCEPT:
            accepted |= hit
        elif action == PASS:
            passed |= hit
        undecided &= ~hit
        if not undecided:
            break
    return accepted, passed, undecided


class _Bits:
    """Bitsets over the endpoints for the ClusterNetworkPolicy tiers: each
    policy's subject, each rule's peers, the pods NetworkPolicies isolate per
    direction; and per destination, the ingress rules of the policies that
    select it."""

    def __init__(self, engine: PolicySet, endpoints: Sequence[Endpoint]):
        self.engine = engine
        self.endpoints = endpoints
        tiers = engine.tiers
        self.full = (1 << len(endpoints)) - 1
        self.subject = {p.name: self._bits(lambda ep, p=p: tiers.selects(p, ep)) for p in engine.cluster_policies}
        self.peers = {id(t.rule): self._bits(lambda ep, t=t: any(tiers.peer_matches(x, ep) for x in t.rule.peers))
                      for rules in tiers.ordered.values() for t in rules}
        self.isolated = {d: 0 for d in DIRECTIONS}
        for p in engine.policies:
            selected = self._bits(lambda ep, p=p: ep.is_pod and ep.namespace == p.namespace
                                  and p.pod_selector.matches(ep.labels))
            for d in DIRECTIONS:
                if getattr(p, d) is not None:
                    self.isolated[d] |= selected
        self.ingress_rules = {
            (tier, i): [t for t in tiers.ordered[(tier, "ingress")] if self.subject[t.policy.name] >> i & 1]
            for tier in (ADMIN, BASELINE_TIER) for i in range(len(endpoints))}

    def _bits(self, pred: Callable[[Endpoint], bool]) -> int:
        out = 0
        for i, ep in enumerate(self.endpoints):
            if pred(ep):
                out |= 1 << i
        return out

    def _ingress(self, tier: str, d: int, dst: Endpoint, port: int, protocol: str):
        return [(t.rule.action, self.peers[id(t.rule)]) for t in self.ingress_rules[(tier, d)]
                if t.matches_port(dst, port, protocol)]

    def _egress(self, tier: str, d: int, dst: Endpoint, port: int, protocol: str):
        return [(t.rule.action, self.subject[t.policy.name]) for t in self.engine.tiers.ordered[(tier, "egress")]
                if self.peers[id(t.rule)] >> d & 1 and t.matches_port(dst, port, protocol)]

    def _direction(self, matches: Callable[[str], list], isolated: bool | int, decided: int) -> int:
        """One direction over every connection (bits: the other ends for
        ingress, the sources for egress) given the NetworkPolicy tier's
        decision ``decided`` and which of them it isolates (``isolated``)."""
        accepted, passed, undecided = _walk(matches(ADMIN), self.full)
        rest = undecided | passed
        by_np = rest & isolated
        allowed = accepted | (by_np & decided)
        baseline = rest & ~isolated
        if self.engine.baseline_after_networkpolicy:
            # Cilium: a Baseline Accept also opens what the NetworkPolicies
            # of an isolated pod leave closed (see DATAPLANES).
            baseline |= by_np & ~decided
        if baseline:
            b_accepted, b_passed, b_undecided = _walk(matches(BASELINE_TIER), baseline)
            allowed |= b_accepted | ((b_passed | b_undecided) & rest & ~isolated)
        return allowed

    def allowed(self, d: int, dst: Endpoint, port: int, protocol: str, np_in: int, np_out: int) -> int:
        """The sources allowed to reach ``dst`` on port/protocol."""
        ingress = self._direction(lambda tier: self._ingress(tier, d, dst, port, protocol),
                                  self.full if self.isolated["ingress"] >> d & 1 else 0, np_in)
        if not ingress:
            return 0
        egress = self._direction(lambda tier: self._egress(tier, d, dst, port, protocol),
                                 self.isolated["egress"], np_out)
        return ingress & egress


def allowed_matrix(engine: PolicySet, endpoints: Sequence[Endpoint]) -> dict[tuple[int, int], int]:
    """``matrix.allowed_matrix`` with the ClusterNetworkPolicy tiers:
    {(dst_index, port_index): allowed source indices}."""
    np_in = matrix.allowed_matrix(_OneWay(engine, "ingress"), endpoints)
    np_out = matrix.allowed_matrix(_OneWay(engine, "egress"), endpoints)
    b = _Bits(engine, endpoints)
    return {(d, q): b.allowed(d, dst, p.port, p.protocol, np_in[(d, q)], np_out[(d, q)])
            for d, dst in enumerate(endpoints) for q, p in enumerate(dst.ports)}


def _segments(engine, direction: str, endpoints) -> dict[tuple[int, str], list]:
    return {(d, protocol): segments
            for d, protocol, segments in matrix.port_ranges(_OneWay(engine, direction), endpoints)}


def _bits_at(segments: list, starts: list[int], port: int) -> int:
    k = bisect_right(starts, port) - 1
    if k >= 0 and segments[k][0] <= port <= segments[k][1]:
        return segments[k][2]
    return 0


def _rule_bounds(rules: Sequence[TierRule], dst: Endpoint, protocol: str) -> set[int]:
    """Where a rule's ports start and end on ``dst`` (named ports resolved there)."""
    out: set[int] = set()
    for t in rules:
        for pr in t.rule.ports or ():
            if pr.protocol is None:
                out.update(n for p in dst.ports if p.name == pr.port and p.protocol == protocol
                           for n in (p.port, p.port + 1))
            elif pr.protocol == protocol and pr.port is not None:
                out.update((pr.port, (pr.end_port or pr.port) + 1))
    return out


def port_ranges(engine: PolicySet, endpoints: Sequence[Endpoint]):
    """``matrix.port_ranges`` with the ClusterNetworkPolicy tiers: per
    destination and protocol, the port axis is cut where a NetworkPolicy
    tier's segment or a ClusterNetworkPolicy rule's ports start or end; one
    port of each cut stands for the whole cut."""
    np_in = _segments(engine, "ingress", endpoints)
    np_out = _segments(engine, "egress", endpoints)
    b = _Bits(engine, endpoints)
    every = [t for rules in engine.tiers.ordered.values() for t in rules]
    for d, dst in enumerate(endpoints):
        for protocol in PROTOCOLS:
            seg_in, seg_out = np_in.get((d, protocol), []), np_out.get((d, protocol), [])
            cuts = {1, MAX_PORT + 1} | _rule_bounds(every, dst, protocol)
            for lo, hi, _ in seg_in + seg_out:
                cuts.update((lo, hi + 1))
            cuts = sorted(c for c in cuts if 1 <= c <= MAX_PORT + 1)
            starts_in, starts_out = [s[0] for s in seg_in], [s[0] for s in seg_out]
            out: list[tuple[int, int, int]] = []
            for lo, nxt in zip(cuts, cuts[1:]):
                bits = b.allowed(d, dst, lo, protocol, _bits_at(seg_in, starts_in, lo),
                                 _bits_at(seg_out, starts_out, lo))
                if not bits:
                    continue
                if out and out[-1][2] == bits and out[-1][1] == lo - 1:
                    out[-1] = (out[-1][0], nxt - 1, bits)
                else:
                    out.append((lo, nxt - 1, bits))
            if out:
                yield d, protocol, out


# --------------------------------------------------------------------------
# Same-priority overlaps


def overlaps(engine: PolicySet, endpoints: Sequence[Endpoint]) -> list[str]:
    """Pairs of ClusterNetworkPolicies of one tier and priority whose rules
    can match one connection among ``endpoints`` (the API leaves which one
    applies undefined), one line each, naming an example."""
    b = _Bits(engine, endpoints)
    found: dict[tuple[str, str], str] = {}
    for (tier, direction), rules in engine.tiers.ordered.items():
        for i, x in enumerate(rules):
            for y in rules[i + 1:]:
                if y.policy.priority != x.policy.priority:
                    break
                key = tuple(sorted((x.policy.name, y.policy.name)))
                if y.policy is x.policy or key in found:
                    continue
                example = _common(b, x, y, direction, endpoints)
                if example is not None:
                    same = x.rule.action == y.rule.action
                    found[key] = (f"{x.policy.ref} and {y.policy.ref} ({tier}, priority {x.policy.priority}) "
                                  f"can both match {example}: " +
                                  (f"both {x.rule.action}, the same outcome either way" if same else
                                   f"{x.rule.action} vs {y.rule.action}: the API leaves which applies "
                                   "undefined (the engine predicts what Cilium does)"))
    return list(found.values())


def _candidate_ports(x: TierRule, y: TierRule, dst: Endpoint) -> list[tuple[int, str]]:
    """Ports where two rules can both match traffic to ``dst``: its declared
    ports, and where either rule's ports begin (declared or not, a port can
    be dialled)."""
    out = [(p.port, p.protocol) for p in dst.ports]
    for t in (x, y):
        for pr in t.rule.ports or ():
            if isinstance(pr.port, int):
                out.append((pr.port, pr.protocol))
    out += [(1, protocol) for protocol in PROTOCOLS]
    return out


def _common(b: _Bits, x: TierRule, y: TierRule, direction: str, endpoints) -> str | None:
    subjects = b.subject[x.policy.name] & b.subject[y.policy.name]
    peers = b.peers[id(x.rule)] & b.peers[id(y.rule)]
    for s in range(len(endpoints)):
        for o in range(len(endpoints)):
            if s == o or not (subjects >> s & 1 and peers >> o & 1):
                continue
            src, dst = (endpoints[o], endpoints[s]) if direction == "ingress" else (endpoints[s], endpoints[o])
            for port, protocol in _candidate_ports(x, y, dst):
                if x.matches_port(dst, port, protocol) and y.matches_port(dst, port, protocol):
                    return f"{src.key} -> {dst.key} {port}/{protocol}"
    return None
