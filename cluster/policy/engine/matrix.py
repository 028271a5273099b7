"""The whole matrix at once, as bitsets over the endpoints: every
(source, destination, declared port) in one pass per destination port
(``allowed_matrix``), and every allowed port range, declared or not
(``port_ranges``, regrouped per source by ``source_ranges``). They agree
with the per-edge ``Engine.evaluate`` on every edge (the truth-table and
randomized tests hold them to it); ``Engine`` offers both as methods.

What a destination's verdicts depend on is small: the policies selecting
it for ingress, the egress rules whose peers include it, and its declared
ports (named ports resolve on them). Egress rules with the same peers and
ports are merged into one (their selected sources ORed): a platform's
hundreds of "egress to every namespace of team a" rules are one rule
here. Destinations that agree on all three share one computation, so the
cost grows with the distinct (policies, rules, ports) combinations and
with what is reported, not with the breadth of the peers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Protocol

from cluster.policy.engine.model import PROTOCOLS, Endpoint, Peer, Policy, PortRule
from cluster.selectors import Selector

MAX_PORT = 65535
_EVERY_PORT = ((1, MAX_PORT),)


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
    can reach it, once for all destinations that share those rules and
    ports.
    """
    b = _Bitsets(engine, endpoints)
    result: dict[tuple[int, int], int] = {}
    done: dict[tuple, list[int]] = {}
    for d, dst in enumerate(endpoints):
        if not dst.ports:
            continue
        key = b.key(d)
        columns = done.get(key)
        if columns is None:
            columns = done[key] = [b.allowed_in(key[0], dst, port.port, port.protocol)
                                   & b.allowed_out(key[1], dst, port.port, port.protocol) for port in dst.ports]
        for q, bits in enumerate(columns):
            result[(d, q)] = bits
    return result


def port_ranges(engine: PolicySet, endpoints: Sequence[Endpoint]):
    """Every allowed port range between ``endpoints``, declared ports or not.

    Yields ``(dst_index, protocol, segments)`` for each destination and
    protocol with any allowed traffic; ``segments`` is a sorted list of
    ``(lo, hi, sources)``: every port in lo..hi is allowed from exactly the
    sources in the bitset, adjacent segments differ, and ports outside
    every segment are blocked from everyone. Loopback is not excluded
    (the caller knows whether i -> i is one pod or several replicas).
    Destinations decided alike get the same list object.

    Per destination and protocol, the port axis is cut at the bounds of
    every rule that can reach it (ingress rules of the policies selecting
    it, egress rules whose peers include it); inside one cut the verdict
    is the same for every port, so each cut costs one pass over those
    rules, like one declared port in ``allowed_matrix``. Rules that open no
    port of a protocol are skipped for it.
    """
    b = _Bitsets(engine, endpoints)
    everything = [(1, MAX_PORT, b.full)]
    unisolated = [(protocol, everything) for protocol in PROTOCOLS]
    done: dict[tuple, list] = {}
    for d, dst in enumerate(endpoints):
        key = b.key(d)
        out = done.get(key)
        if out is None:
            if key[0] is None and b.open_egress == b.full:
                out = unisolated  # nothing isolates either side
            else:
                out = []
                for protocol in PROTOCOLS:
                    segments = _combine(b.ingress_spans(key, dst, protocol), b.egress_spans(key, dst, protocol))
                    if segments:
                        out.append((protocol, segments))
            done[key] = out
        for protocol, segments in out:
            yield d, protocol, segments


def _spans(ports: tuple[PortRule, ...] | None, dst: Endpoint, protocol: str) -> tuple[tuple[int, int], ...]:
    """The port ranges of ``protocol`` a rule's ports open on ``dst`` (named ports resolve on dst)."""
    if ports is None:
        return _EVERY_PORT
    out = []
    for pr in ports:
        if pr.protocol != protocol:
            continue
        if pr.port is None:
            return _EVERY_PORT
        if isinstance(pr.port, int):
            out.append((pr.port, pr.end_port or pr.port))
        else:
            out.extend((p.port, p.port) for p in dst.ports if p.name == pr.port and p.protocol == protocol)
    return tuple(out)


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
    if not ingress or not egress:
        return []
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


def indices(bits: int) -> list[int]:
    """The set bit positions of an int, lowest first. The binary text is
    searched in C: a bit costs one ``find``, not a pass over the whole int;
    the text starts at the lowest set bit (endpoints are sorted by
    namespace, so a namespace's pods are one short stretch of a long int)."""
    if not bits:
        return []
    base = (bits & -bits).bit_length() - 1
    text = bin(bits >> base)[:1:-1]  # lowest bit first
    out = []
    i = 0
    while i >= 0:
        out.append(base + i)
        i = text.find("1", i + 1)
    return out


def _bitset(positions, width: int) -> int:
    """An int with the given bits set, built in one pass (``|= 1 << i`` in a
    loop copies the whole int for every bit)."""
    buf = bytearray((width >> 3) + 1)
    for i in positions:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


class _Bitsets:
    """What whole-matrix computations share: bitsets over endpoint indices,
    each computed once (pods per namespace, per label, per distinct
    selector, per namespace selector, per rule peer); per destination, the
    policies selecting it for ingress and the merged egress rules whose
    peers include it (``key``)."""

    def __init__(self, engine: PolicySet, endpoints: Sequence[Endpoint]):
        self.engine = engine
        self.endpoints = endpoints
        n = self.width = len(endpoints)
        self.full = (1 << n) - 1
        ns_members: dict[str, list[int]] = {}
        pods: list[int] = []
        hosts: list[int] = []
        by_label: dict[tuple[str, str], list[int]] = {}
        by_key: dict[str, list[int]] = {}
        for i, ep in enumerate(endpoints):
            if ep.kind == "host":
                hosts.append(i)
            if ep.is_pod:
                ns_members.setdefault(ep.namespace or "", []).append(i)
                pods.append(i)
                for k, v in ep.labels.items():
                    by_label.setdefault((k, v), []).append(i)
                    by_key.setdefault(k, []).append(i)
        self.ns_pods = {ns: _bitset(members, n) for ns, members in ns_members.items()}
        self.all_pods = _bitset(pods, n)
        # The node's own traffic passes every ingress policy (see evaluate).
        self.hosts = _bitset(hosts, n)
        # Selectors are matched through the label index, not pod by pod.
        self._label = {kv: _bitset(members, n) for kv, members in by_label.items()}
        self._has_key = {k: _bitset(members, n) for k, members in by_key.items()}
        self._sel: dict[Selector, int] = {}
        self._nssel: dict[Selector, int] = {}
        self._peer: dict[tuple[Peer, str], int] = {}
        self._address_peer: dict[Peer, int] = {}
        self._port_ids: dict[tuple, int] = {}
        self._named: dict[int, bool] = {}  # id(rule ports) -> whether a port is named
        self._spans: dict[tuple, tuple[tuple[int, int], ...]] = {}
        self._ingress_spans: dict[tuple, list] = {}
        self._egress_spans: dict[tuple, list] = {}

        self.policies = engine.policies
        ingress_of: dict[int, list[int]] = {}  # dst index -> policies selecting it for ingress
        egress_isolated = 0
        # Egress rules merged by (peers, ports): the sources they open for.
        merged: dict[tuple[int, tuple | None], int] = {}
        for pi, p in enumerate(engine.policies):
            selected = self.pods_matching(p.pod_selector) & self.ns_pods.get(p.namespace, 0)
            if not selected:
                continue
            if p.ingress is not None:
                for i in indices(selected):
                    ingress_of.setdefault(i, []).append(pi)
            if p.egress is not None:
                egress_isolated |= selected
                for rule in p.egress:
                    key = (self.peer_bits(rule.peers, p.namespace), rule.ports)
                    merged[key] = merged.get(key, 0) | selected
        self.open_egress = self.full & ~egress_isolated
        self._ingress_of = {d: tuple(pis) for d, pis in ingress_of.items()}
        # Each merged rule is (sources, ports). Rules open to every peer
        # apply to every destination and are kept once; the others are
        # inverted: for each destination, the rules whose peers include it.
        self.rules: list[tuple[int, tuple | None]] = []
        self._to_all: list[int] = []
        towards: dict[int, list[int]] = {}
        for (peers, ports), sources in merged.items():
            g = len(self.rules)
            self.rules.append((sources, ports))
            if peers == self.full:
                self._to_all.append(g)
                continue
            for i in indices(peers):
                towards.setdefault(i, []).append(g)
        self._towards = {d: tuple(gs) for d, gs in towards.items()}

    def key(self, d: int) -> tuple:
        """What decides every verdict towards destination ``d``: the
        policies selecting it for ingress (None: not isolated), the merged
        egress rules that reach it, and its ports."""
        ports = self.endpoints[d].ports
        pid = self._port_ids.get(ports)
        if pid is None:
            pid = self._port_ids[ports] = len(self._port_ids)
        return self._ingress_of.get(d), self._towards.get(d, ()), pid

    # -- one destination, declared port by port ---------------------------

    def allowed_in(self, ingress: tuple[int, ...] | None, dst: Endpoint, port: int, protocol: str) -> int:
        """The sources the ingress of ``dst`` lets in on port/protocol."""
        if ingress is None:
            return self.full
        bits = self.hosts
        for pi in ingress:
            p = self.policies[pi]
            for rule in p.ingress:
                if rule.ports is None or any(pr.matches(dst, port, protocol) for pr in rule.ports):
                    bits |= self.peer_bits(rule.peers, p.namespace)
        return bits

    def allowed_out(self, egress: tuple[int, ...], dst: Endpoint, port: int, protocol: str) -> int:
        """The sources whose egress lets them reach ``dst`` on port/protocol."""
        bits = self.open_egress
        for g in (*self._to_all, *egress):
            sources, ports = self.rules[g]
            if ports is None or any(pr.matches(dst, port, protocol) for pr in ports):
                bits |= sources
        return bits

    # -- one destination, the whole port axis of a protocol ---------------

    def spans(self, ports: tuple[PortRule, ...] | None, dst: Endpoint, pid: int, protocol: str):
        """``_spans``, kept per rule's ports (which live as long as the
        engine's policies) and protocol, and where a port is named, per
        destination ports (``pid``): names resolve there."""
        named = self._named.get(id(ports))
        if named is None:
            named = self._named[id(ports)] = ports is not None and any(isinstance(pr.port, str) for pr in ports)
        key = (id(ports), protocol, pid if named else -1)
        out = self._spans.get(key)
        if out is None:
            out = self._spans[key] = _spans(ports, dst, protocol)
        return out

    def ingress_spans(self, key: tuple, dst: Endpoint, protocol: str) -> list:
        """[(spans, sources)]: what the ingress of ``dst`` (``key(d)``) lets in on ``protocol``."""
        ingress, _, pid = key
        if ingress is None:
            return [(_EVERY_PORT, self.full)]
        out = self._ingress_spans.get((ingress, pid, protocol))
        if out is None:
            out = [(_EVERY_PORT, self.hosts)] if self.hosts else []
            for pi in ingress:
                p = self.policies[pi]
                for rule in p.ingress:
                    spans = self.spans(rule.ports, dst, pid, protocol)
                    if spans:
                        out.append((spans, self.peer_bits(rule.peers, p.namespace)))
            self._ingress_spans[(ingress, pid, protocol)] = out
        return out

    def egress_spans(self, key: tuple, dst: Endpoint, protocol: str) -> list:
        """[(spans, sources)]: whose egress reaches ``dst`` (``key(d)``) on ``protocol``, and where."""
        _, egress, pid = key
        out = self._egress_spans.get((egress, pid, protocol))
        if out is None:
            out = [(_EVERY_PORT, self.open_egress)] if self.open_egress else []
            for g in (*self._to_all, *egress):
                sources, ports = self.rules[g]
                spans = self.spans(ports, dst, pid, protocol)
                if spans:
                    out.append((spans, sources))
            self._egress_spans[(egress, pid, protocol)] = out
        return out

    # -- selectors and peers ----------------------------------------------

    def pods_matching(self, sel: Selector) -> int:
        b = self._sel.get(sel)
        if b is None:
            b = self.all_pods
            for kv in sel.match_labels:
                b &= self._label.get(kv, 0)
            for key, op, values in sel.expressions:
                if op == "In" or op == "NotIn":
                    any_of = 0
                    for v in values:
                        any_of |= self._label.get((key, v), 0)
                    b &= any_of if op == "In" else ~any_of
                elif op == "Exists":
                    b &= self._has_key.get(key, 0)
                else:  # DoesNotExist
                    b &= ~self._has_key.get(key, 0)
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

    def peer_bits(self, peers: tuple[Peer, ...] | None, policy_ns: str) -> int:
        if peers is None:
            return self.full
        out = 0
        for peer in peers:
            if peer.by_address:
                # An address or an entity picks the same endpoints from any namespace.
                b = self._address_peer.get(peer)
                if b is None:
                    matches = self.engine.peer_matches
                    b = self._address_peer[peer] = _bitset(
                        (i for i, ep in enumerate(self.endpoints) if matches(peer, policy_ns, ep)), self.width)
            else:
                ck = (peer, policy_ns)
                b = self._peer.get(ck)
                if b is None:
                    b = self.all_pods if peer.pod_selector is None else self.pods_matching(peer.pod_selector)
                    b &= self.ns_pods.get(policy_ns, 0) if peer.namespace_selector is None \
                        else self.in_namespaces(peer.namespace_selector)
                    self._peer[ck] = b
            out |= b
        return out
