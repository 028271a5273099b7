"""The whole-matrix algorithm as it was before destinations were grouped
and egress rules merged (cluster/policy/engine/matrix.py and the output of
cluster/policy/reachability.py at that time), kept unchanged as the
reference the current implementation must reproduce byte for byte
(tests/policy/engine/test_matrix_reference.py). Not product code.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Protocol

from cluster.errors import ManifestError
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import PROTOCOLS, Endpoint, Peer, Policy, Rule
from cluster.policy.manifests import ResourceSet
from cluster.policy.reachability import ENDPOINT_MODES, per_pod
from cluster.selectors import Selector

MAX_PORT = 65535


class PolicySet(Protocol):
    """What the matrix reads of an ``Engine``: its compiled policies, the
    labels of a namespace, and whether a peer picks an endpoint (where the
    dataplane decides what an ipBlock selects)."""

    policies: list[Policy]

    def ns_labels(self, namespace: str | None) -> Mapping[str, str]: ...

    def peer_matches(self, peer: Peer, policy_ns: str, ep: Endpoint) -> bool: ...


def allowed_matrix(engine: PolicySet, endpoints: Sequence[Endpoint]) -> dict[tuple[int, int], int]:
    """Every (src, dst, dst port) among ``endpoints`` as bitsets.

    Returns {(dst_index, port_index): int bitset of allowed source indices}.
    Instead of evaluating n*n*ports pairs one by one, each rule's peer set
    and each policy's selected set is computed once as a bitset over the
    endpoints; a destination port then costs one pass over the rules that
    can reach it. The cost grows with pods x ports x (rules touching a
    pod), and with the bit-width (pods) of the integer operations.
    """
    b = _Bitsets(engine, endpoints)
    result: dict[tuple[int, int], int] = {}
    for d, dst in enumerate(endpoints):
        for q, port in enumerate(dst.ports):
            # ingress: which sources may enter
            if d in b.ingress_sel:
                allowed_in = b.hosts
                for p in b.ingress_sel[d]:
                    for rule in p.ingress:
                        if rule.ports is None or any(pr.matches(dst, port.port, port.protocol)
                                                     for pr in rule.ports):
                            allowed_in |= b.peer_bits(rule, p.namespace)
            else:
                allowed_in = b.full
            # egress: which sources may leave towards it
            allowed_out = b.open_egress
            for selected, rule in b.egress_towards(d):
                if rule.ports is None or any(pr.matches(dst, port.port, port.protocol)
                                             for pr in rule.ports):
                    allowed_out |= selected
            result[(d, q)] = allowed_in & allowed_out
    return result


def port_ranges(engine: PolicySet, endpoints: Sequence[Endpoint]):
    """Every allowed port range between ``endpoints``, declared ports or not.

    Yields ``(dst_index, protocol, segments)`` for each destination and
    protocol with any allowed traffic; ``segments`` is a sorted list of
    ``(lo, hi, sources)``: every port in lo..hi is allowed from exactly the
    sources in the bitset, adjacent segments differ, and ports outside
    every segment are blocked from everyone. Loopback is not excluded
    (the caller knows whether i -> i is one pod or several replicas).

    Per destination and protocol, the port axis is cut at the bounds of
    every rule that can reach it (ingress rules of the policies selecting
    it, egress rules whose peers include it); inside one cut the verdict
    is the same for every port, so each cut costs one pass over those
    rules, like one declared port in ``allowed_matrix``.
    """
    b = _Bitsets(engine, endpoints)
    everything = [(1, MAX_PORT, b.full)]
    for d, dst in enumerate(endpoints):
        towards = b.egress_towards(d)
        if d not in b.ingress_sel and not towards and b.open_egress == b.full:
            for protocol in PROTOCOLS:  # nothing isolates either side
                yield d, protocol, everything
            continue
        for protocol in PROTOCOLS:
            if d in b.ingress_sel:
                ingress = [([(1, MAX_PORT)], b.hosts)] if b.hosts else []
                for p in b.ingress_sel[d]:
                    for rule in p.ingress:
                        spans = _spans(rule, dst, protocol)
                        if spans:
                            ingress.append((spans, b.peer_bits(rule, p.namespace)))
            else:
                ingress = [([(1, MAX_PORT)], b.full)]
            egress = [([(1, MAX_PORT)], b.open_egress)] if b.open_egress else []
            for selected, rule in towards:
                spans = _spans(rule, dst, protocol)
                if spans:
                    egress.append((spans, selected))
            segments = _combine(ingress, egress)
            if segments:
                yield d, protocol, segments


def _spans(rule: Rule, dst: Endpoint, protocol: str) -> list[tuple[int, int]]:
    """The port ranges of ``protocol`` a rule opens on ``dst`` (named ports resolve on dst)."""
    if rule.ports is None:
        return [(1, MAX_PORT)]
    out = []
    for pr in rule.ports:
        if pr.protocol != protocol:
            continue
        if pr.port is None:
            return [(1, MAX_PORT)]
        if isinstance(pr.port, int):
            out.append((pr.port, pr.end_port or pr.port))
        else:
            out.extend((p.port, p.port) for p in dst.ports if p.name == pr.port and p.protocol == protocol)
    return out


def _paint(contributions, cuts: list[int]) -> list[int]:
    """OR each contribution's bits into the elementary segments its spans cover."""
    bits = [0] * (len(cuts) - 1)
    for spans, b in contributions:
        for lo, hi in spans:
            for i in range(bisect_left(cuts, lo), bisect_left(cuts, hi + 1)):
                bits[i] |= b
    return bits


def _combine(ingress, egress) -> list[tuple[int, int, int]]:
    """Segments where ingress AND egress allow, adjacent equal ones merged."""
    cuts = {1, MAX_PORT + 1}
    for spans, _ in ingress + egress:
        for lo, hi in spans:
            cuts.add(lo)
            cuts.add(hi + 1)
    cuts = sorted(cuts)
    allowed = [i & e for i, e in zip(_paint(ingress, cuts), _paint(egress, cuts))]
    out: list[tuple[int, int, int]] = []
    for k, bits in enumerate(allowed):
        if not bits:
            continue
        lo, hi = cuts[k], cuts[k + 1] - 1
        if out and out[-1][2] == bits and out[-1][1] == lo - 1:
            out[-1] = (out[-1][0], hi, bits)
        else:
            out.append((lo, hi, bits))
    return out


def source_ranges(segments) -> list[tuple[int, list[tuple[int, int]]]]:
    """Segments of ``port_ranges`` regrouped per source: ``[(sources, ranges)]``
    where every source of the bitset is allowed exactly the merged ``ranges``.
    Sources with the same pattern share one group, so the work grows with the
    number of distinct patterns, not with the number of sources."""
    union = 0
    for _, _, bits in segments:
        union |= bits
    parts: list[tuple[int, list[int]]] = [(union, [])]
    for k, (_, _, bits) in enumerate(segments):
        refined = []
        for group, pattern in parts:
            inside, outside = group & bits, group & ~bits
            if inside:
                refined.append((inside, pattern + [k]))
            if outside:
                refined.append((outside, pattern))
        parts = refined
    out = []
    for group, pattern in parts:
        ranges: list[tuple[int, int]] = []
        for k in pattern:
            lo, hi, _ = segments[k]
            if ranges and ranges[-1][1] == lo - 1:
                ranges[-1] = (ranges[-1][0], hi)
            else:
                ranges.append((lo, hi))
        out.append((group, ranges))
    return out


class _Bitsets:
    """What whole-matrix computations share: bitsets over endpoint indices,
    each computed once (pods per namespace, per distinct selector, per
    namespace selector, per rule peer), the policies selecting each
    destination for ingress, and the egress rules inverted per destination."""

    def __init__(self, engine: PolicySet, endpoints: Sequence[Endpoint]):
        self.engine = engine
        self.endpoints = endpoints
        n = len(endpoints)
        self.full = (1 << n) - 1
        self.ns_pods: dict[str, int] = {}
        self.all_pods = 0
        # The node's own traffic passes every ingress policy (see evaluate).
        self.hosts = 0
        for i, ep in enumerate(endpoints):
            if ep.kind == "host":
                self.hosts |= 1 << i
            if ep.is_pod:
                self.ns_pods[ep.namespace or ""] = self.ns_pods.get(ep.namespace or "", 0) | 1 << i
                self.all_pods |= 1 << i
        self._sel: dict[Selector, int] = {}
        self._nssel: dict[Selector, int] = {}
        self._peer: dict[tuple[Peer, str], int] = {}

        self.ingress_sel: dict[int, list[Policy]] = {}  # dst index -> policies selecting it for ingress
        egress_isolated = 0
        egress_rules: list[tuple[int, int, Rule]] = []  # (selected sources, peer bitset, rule)
        for p in engine.policies:
            selected = self.pods_matching(p.pod_selector) & self.ns_pods.get(p.namespace, 0)
            if not selected:
                continue
            if p.ingress is not None:
                for i in _indices(selected):
                    self.ingress_sel.setdefault(i, []).append(p)
            if p.egress is not None:
                egress_isolated |= selected
                for rule in p.egress:
                    egress_rules.append((selected, self.peer_bits(rule, p.namespace), rule))
        # Invert: for each destination, the egress rules whose peers include
        # it. Rules open to every peer are kept once, not copied to every
        # destination (an allow-all egress would cost n entries each).
        self._to_all: list[tuple[int, Rule]] = []
        self._to: dict[int, list[tuple[int, Rule]]] = {}
        for selected, peers, rule in egress_rules:
            if peers == self.full:
                self._to_all.append((selected, rule))
                continue
            for i in _indices(peers):
                self._to.setdefault(i, []).append((selected, rule))
        self.open_egress = self.full & ~egress_isolated

    def egress_towards(self, d: int) -> list[tuple[int, Rule]]:
        return self._to_all + self._to.get(d, []) if self._to_all else self._to.get(d, [])

    def pods_matching(self, sel: Selector) -> int:
        b = self._sel.get(sel)
        if b is None:
            b = 0
            if not sel.match_labels and not sel.expressions:
                b = self.all_pods
            else:
                for i, ep in enumerate(self.endpoints):
                    if ep.is_pod and sel.matches(ep.labels):
                        b |= 1 << i
            self._sel[sel] = b
        return b

    def in_namespaces(self, sel: Selector) -> int:
        b = self._nssel.get(sel)
        if b is None:
            b = 0
            for ns, pods in self.ns_pods.items():
                if sel.matches(self.engine.ns_labels(ns)):
                    b |= pods
            self._nssel[sel] = b
        return b

    def peer_bits(self, rule: Rule, policy_ns: str) -> int:
        if rule.peers is None:
            return self.full
        out = 0
        for peer in rule.peers:
            ck = (peer, policy_ns)
            b = self._peer.get(ck)
            if b is None:
                if peer.by_address:
                    b = 0
                    for i, ep in enumerate(self.endpoints):
                        if self.engine.peer_matches(peer, policy_ns, ep):
                            b |= 1 << i
                else:
                    b = self.all_pods if peer.pod_selector is None else self.pods_matching(peer.pod_selector)
                    b &= self.ns_pods.get(policy_ns, 0) if peer.namespace_selector is None \
                        else self.in_namespaces(peer.namespace_selector)
                self._peer[ck] = b
            out |= b
        return out


def _indices(bits: int):
    """The set bit positions of an int, lowest first."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


def compute(rs: ResourceSet, endpoints: str = "workloads") -> dict:
    if endpoints not in ENDPOINT_MODES:
        raise ManifestError(f"--endpoints: unknown value {endpoints!r} (workloads, pods)")
    eps = per_pod(rs.endpoints, rs.pod_keys) if endpoints == "pods" else list(rs.endpoints)
    eps.sort(key=lambda e: e.key)
    engine = Engine(rs.namespaces, rs.compiled)
    keys = [e.key for e in eps]
    allowed: set[tuple] = set()
    ranges = []
    for d, protocol, segments in port_ranges(engine, eps):
        dst = eps[d]
        # Loopback: one pod to itself is not policy-governed traffic; a
        # workload endpoint with several replicas stands for pod-to-pod.
        loop = 0 if dst.replicas > 1 else 1 << d
        for bits, spans in source_ranges(segments):
            bits &= ~loop
            if not bits:
                continue
            port_list = [[lo, hi] for lo, hi in spans]
            declared = [p.port for p in dst.ports if p.protocol == protocol
                        and any(lo <= p.port <= hi for lo, hi in spans)]
            s_bits, s = bits, 0
            while s_bits:
                low = s_bits & -s_bits
                s = low.bit_length() - 1
                s_bits ^= low
                ranges.append({"src": keys[s], "dst": dst.key, "protocol": protocol, "ports": port_list})
                for port in declared:
                    allowed.add((keys[s], dst.key, protocol, port))
    ranges.sort(key=lambda r: (r["src"], r["dst"], r["protocol"]))
    return {"endpoints": keys,
            "allowed": [{"src": s, "dst": d, "protocol": p, "port": n} for s, d, p, n in sorted(allowed)],
            "ranges": ranges}
