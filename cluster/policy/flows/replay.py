"""Observed traffic replayed against every step of a profile.

``observe`` places the gathered flows on the profile's endpoints: one
observed edge per (source endpoint, destination endpoint, port, protocol),
with its count and first and last time; the rest is counted by reason
(``Resolver``), the node's own traffic apart (NetworkPolicy never governs
it), and so is a pod talking to itself.

``replay`` asks the engine about every observed edge after each step (the
bitset matrix, ``Predictions``, for edges of the profile's matrix; one
evaluation per step for an edge on a port the destination does not
declare) and reports, per step, the observed edges it newly blocks, each
with the policy that blocks it as ``inv explain`` names it:

- a **window**: a later step opens the edge again (DNS between
  default-deny and allow-dns); reported with its length in steps, not a
  failure;
- a **cut**: nothing reopens it. Unless acknowledged (matrix.yaml's
  ``blocked:``, or ``--accept-blocking``), a cut fails the check: the
  matrix allows only what it lists, so observed traffic it cuts is either a
  gap in the matrix or traffic that should stop, and a person decides
  which.

It also lists the observed edges no intended edge covers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cluster.errors import ManifestError
from cluster.policy.engine.model import HOST, Edge
from cluster.policy.engine.predictions import Predictions, engine_for
from cluster.policy.flows.recording import Gathered
from cluster.policy.flows.resolve import Resolver, protocol_problem
from cluster.policy.profile import BlockedEdge


@dataclass
class ObservedEdge:
    edge: Edge
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)  # what the CNI said: forwarded, dropped, ...

    def add(self, n: int, first: float, last: float, verdict: str) -> None:
        self.count += n
        self.first = min(self.first, first) if self.first and first else self.first or first
        self.last = max(self.last, last)
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + n


@dataclass
class NotPlaced:
    why: str
    count: int = 0
    example: str = ""


@dataclass
class Observation:
    edges: dict[Edge, ObservedEdge]
    not_placed: list[NotPlaced]
    from_node: int  # the node to its pods (kubelet probes, port-forward): never subject to NetworkPolicy
    to_itself: int  # a pod to its own address
    total: int
    meta: dict

    @property
    def placed(self) -> int:
        return sum(o.count for o in self.edges.values())

    @property
    def unplaced(self) -> int:
        return sum(n.count for n in self.not_placed)


def observe(profile, gathered: Gathered) -> Observation:
    """Place every gathered flow; count what cannot be placed, by reason."""
    resolver = Resolver(profile)
    by_key = {ep.key: ep for ep in profile.endpoints}
    edges: dict[Edge, ObservedEdge] = {}
    why: dict[str, NotPlaced] = {}
    from_node = to_itself = total = 0
    peers = gathered.peers
    for (s, d, port, proto, verdict), (n, first, last) in gathered.by_key.items():
        total += n
        src, dst = resolver.place(peers[s], True), resolver.place(peers[d], False)
        reason = src.why or dst.why
        if not reason and dst.key == HOST.key:
            reason = "to the node (the profile models no node as a destination)"
        if not reason:
            reason = protocol_problem(proto if proto != "-" else None, port)
        if reason:
            np = why.get(reason)
            if np is None:
                np = why[reason] = NotPlaced(reason, example=f"{peers[s]} -> {peers[d]} {port or '-'}/{proto}")
            np.count += n
            continue
        if src.key == HOST.key:
            from_node += n
            continue
        if src.key == dst.key and by_key[dst.key].replicas <= 1:
            to_itself += n
            continue
        edge = Edge(src.key, dst.key, port, proto)
        oe = edges.get(edge)
        if oe is None:
            oe = edges[edge] = ObservedEdge(edge)
        oe.add(n, first, last, verdict)
    return Observation(edges, sorted(why.values(), key=lambda x: -x.count), from_node, to_itself, total,
                       gathered.meta)


# --------------------------------------------------------------------------
# Acknowledged cuts


def parse_accept(text: str, profile) -> BlockedEdge:
    """``--accept-blocking "SRC DST PORT[/PROTO]"`` (SRC and DST may hold
    wildcards; "SRC -> DST PORT/PROTO", as reports print edges, works too)."""
    parts = str(text).replace("->", " ").split()
    if len(parts) != 3:
        raise ManifestError(f"--accept-blocking {text!r}: expected \"SRC DST PORT[/PROTO]\", "
                            "e.g. \"dashi-serving/titiler dashi-catalog/stac-fastapi 8080/TCP\"")
    src, dst, port = parts
    number, _, proto = port.partition("/")
    keys = [ep.key for ep in profile.endpoints]

    def match(pattern: str) -> frozenset[str]:
        found = frozenset(k for k in keys if fnmatch.fnmatchcase(k, pattern))
        if not found:
            raise ManifestError(f"--accept-blocking {text!r}: {pattern!r} matches no endpoint of profile "
                                f"{profile.name}")
        return found

    if proto and proto.upper() not in ("TCP", "UDP", "SCTP"):
        raise ManifestError(f"--accept-blocking {text!r}: protocol {proto!r} (TCP, UDP, SCTP)")
    value: int | str = int(number) if number.isdigit() else number
    return BlockedEdge(match(src), match(dst), value, proto.upper() or None, "accepted with --accept-blocking",
                       "--accept-blocking")


# --------------------------------------------------------------------------
# The replay


@dataclass
class Cut:
    """An observed edge that a step newly blocks."""

    observed: ObservedEdge
    index: int  # the step (1-based) that blocks it
    step: str
    why: list[str]  # the blocking side(s), as explain names them
    intended_step: str | None  # the step the intended matrix opens it with, None: not intended
    reopened_at: int | None = None  # the step that opens it again (a window), None: stays blocked
    reopened_by: str | None = None
    acknowledged: str = ""  # why it may be cut (matrix.yaml blocked:, --accept-blocking)

    @property
    def edge(self) -> Edge:
        return self.observed.edge

    @property
    def window(self) -> bool:
        """An intended edge a later step opens again: part of the rollout
        (DNS between default-deny and allow-dns), not a failure."""
        return self.reopened_at is not None and self.intended_step is not None

    @property
    def length(self) -> int:
        """How many steps the window lasts (the steps after which it is blocked)."""
        return (self.reopened_at or 0) - self.index

    @property
    def failure(self) -> bool:
        return not self.window and not self.acknowledged

    def accept_arg(self) -> str:
        e = self.edge
        return f'--accept-blocking "{e.src} {e.dst} {e.port}/{e.protocol}"'


@dataclass
class FlowsCheck:
    profile_name: str
    steps: list[str]
    observation: Observation
    cuts: list[Cut]
    uncovered: list[tuple[ObservedEdge, bool]]  # observed, not intended; allowed after every step?

    @property
    def failures(self) -> list[Cut]:
        return [c for c in self.cuts if c.failure]

    @property
    def windows(self) -> list[Cut]:
        return [c for c in self.cuts if c.window]

    @property
    def ok(self) -> bool:
        return not self.failures

    def cuts_at(self, index: int) -> list[Cut]:
        return [c for c in self.cuts if c.index == index]


def allowed_per_step(profile, edges: list[Edge]) -> tuple[list[dict[Edge, bool]], list]:
    """For k = 0..n steps, whether each edge is allowed, and the engines
    (with Predictions where the profile's matrix has the edge) that said so."""
    in_matrix = set(profile.edges())
    matrix_edges = [e for e in edges if e in in_matrix]
    by_key = {ep.key: ep for ep in profile.endpoints}
    allowed: list[dict[Edge, bool]] = []
    deciders = []
    for k in range(len(profile.steps) + 1):
        engine = engine_for(profile, profile.policies_through(k))
        preds = Predictions(engine, profile.endpoints, matrix_edges)
        row = {}
        for e in edges:
            if e in preds:
                row[e] = preds.allowed(e)
            else:
                row[e] = engine.evaluate(by_key[e.src], by_key[e.dst], e.port, e.protocol).allowed
        allowed.append(row)
        deciders.append((engine, preds))
    return allowed, deciders


def _why(profile, decider, edge: Edge) -> list[str]:
    engine, preds = decider
    if edge in preds:
        verdict = preds[edge]
    else:
        by_key = {ep.key: ep for ep in profile.endpoints}
        verdict = engine.evaluate(by_key[edge.src], by_key[edge.dst], edge.port, edge.protocol)
    return [d.line(verdict.dst if d.direction == "egress" else verdict.src, verdict.port, verdict.protocol)
            for d in (verdict.egress, verdict.ingress) if not d.allowed]


def replay(profile, observation: Observation, accepted: list[BlockedEdge] = ()) -> FlowsCheck:
    """Every observed edge after each step: what each step newly blocks."""
    edges = sorted(observation.edges, key=str)
    allowed, deciders = allowed_per_step(profile, edges)
    intents = profile.intents()
    by_key = {ep.key: ep for ep in profile.endpoints}
    rules = list(getattr(profile, "blocked", ())) + list(accepted)
    n = len(profile.steps)
    names = [s.name for s in profile.steps]
    cuts: list[Cut] = []
    for e in edges:
        for k in range(1, n + 1):
            if allowed[k - 1][e] and not allowed[k][e]:
                again = next((j for j in range(k + 1, n + 1) if allowed[j][e]), None)
                ie = intents.get(e)
                ack = next((r.reason or f"listed in {r.where}" for r in rules if r.matches(e, by_key[e.dst])), "")
                cuts.append(Cut(observation.edges[e], k, names[k - 1], _why(profile, deciders[k], e),
                                ie.step if ie else None, again, names[again - 1] if again else None, ack))
    cuts.sort(key=lambda c: (c.index, -c.observed.count, str(c.edge)))
    uncovered = [(observation.edges[e], allowed[n][e]) for e in edges if e not in intents]
    uncovered.sort(key=lambda x: -x[0].count)
    return FlowsCheck(profile.name, names, observation, cuts, uncovered)


# --------------------------------------------------------------------------
# Output


def when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "?"


def observation_lines(obs: Observation) -> list[str]:
    meta = obs.meta
    src = meta.get("source", "?")
    lines = [f"Observed: {obs.total} flow(s) from {src}"
             + (f", recorded {meta['recorded_at']}" if meta.get("recorded_at") else "")
             + f"; {obs.placed} placed on {len(obs.edges)} edge(s)"]
    if meta.get("capped"):
        lines.append(f"  the recording stopped at its cap ({meta['capped']}): {meta.get('seen', '?')} flow(s) seen, "
                     f"{meta.get('kept', '?')} kept")
    if meta.get("lost"):
        lines.append(f"  the source reported {meta['lost']} flow(s) lost (Hubble's lost events)")
    if obs.from_node:
        lines.append(f"  {obs.from_node} from the node to its pods (kubelet probes, port-forward): never subject "
                     "to NetworkPolicy")
    if obs.to_itself:
        lines.append(f"  {obs.to_itself} from a pod to itself")
    if obs.not_placed:
        lines.append(f"  {obs.unplaced} not placed on the profile's endpoints:")
        for np in obs.not_placed:
            lines.append(f"    {np.count:>8}  {np.why}  (e.g. {np.example})")
    for what, n in sorted((meta.get("skipped") or {}).items()):
        lines.append(f"  skipped, not connections: {n} {what}")
    return lines


def _edge_line(oe: ObservedEdge) -> str:
    return f"{oe.edge}  {oe.count} flow(s), {when(oe.first)} .. {when(oe.last)}"


def check_lines(check: FlowsCheck) -> list[str]:
    out = observation_lines(check.observation)
    n = len(check.steps)
    out.append(f"Replayed against the {n} step(s) of profile {check.profile_name}:")
    for k, name in enumerate(check.steps, 1):
        cuts = check.cuts_at(k)
        if not cuts:
            out.append(f"[{k}/{n}] {name}: blocks no observed traffic")
            continue
        out.append(f"[{k}/{n}] {name}: would newly block {len(cuts)} observed edge(s)")
        for c in cuts:
            if c.window:
                continue
            intent = f"intended (opened by {c.intended_step})" if c.intended_step else "not in the intended matrix"
            tag = "accepted" if c.acknowledged else "BLOCKS"
            out.append(f"  {tag:<8} {_edge_line(c.observed)}: {intent}"
                       + (f"; {c.reopened_by} opens it again" if c.reopened_by else "")
                       + (f"; {c.acknowledged}" if c.acknowledged else ""))
            out += [f"           {w}" for w in c.why]
            if not c.acknowledged:
                out.append(f"           to cut it on purpose: {c.accept_arg()} (or list it under blocked: in "
                           "matrix.yaml)")
        groups: dict[str, list[Cut]] = {}
        for c in sorted(cuts, key=lambda c: c.reopened_at or 0):  # in the order the steps reopen them
            if c.window:
                groups.setdefault(c.reopened_by, []).append(c)
        for reopener, group in groups.items():
            out.append(f"  window   {len(group)} intended edge(s), {sum(c.observed.count for c in group)} flow(s), "
                       f"cut for {group[0].length} step(s) until {reopener} opens them (the rollout's order, "
                       "not a failure):")
            out += [f"           {c.edge} ({c.observed.count})" for c in group]
    if check.uncovered:
        out.append(f"Observed edges no intended edge covers ({len(check.uncovered)}):")
        for oe, still in check.uncovered:
            out.append(f"  {_edge_line(oe)}: {'still allowed after the last step' if still else 'blocked'}")
    fails = check.failures
    if fails:
        where = ", ".join(dict.fromkeys(c.step for c in fails))
        out.append(f"flows-check: FAIL: {len(fails)} observed edge(s) would be cut outside the intent (by {where}); "
                   "add each to the matrix if it must flow, or acknowledge the cut")
    else:
        out.append(f"flows-check: OK: no step cuts observed traffic outside the intent ({len(check.windows)} "
                   f"window(s) of the rollout, {sum(1 for c in check.cuts if c.acknowledged)} accepted cut(s))")
    return out


def _oe_dict(oe: ObservedEdge) -> dict:
    e = oe.edge
    return {"src": e.src, "dst": e.dst, "port": e.port, "protocol": e.protocol, "count": oe.count,
            "first": when(oe.first), "last": when(oe.last), "verdicts": oe.verdicts}


def check_to_dict(check: FlowsCheck) -> dict:
    obs = check.observation
    return {
        "profile": check.profile_name, "ok": check.ok,
        "observed": {"flows": obs.total, "placed": obs.placed, "edges": len(obs.edges), "from_node": obs.from_node,
                     "to_itself": obs.to_itself, "not_placed": [vars(n) for n in obs.not_placed],
                     "meta": obs.meta},
        "steps": [{"step": name, "index": k,
                   "cuts": [{**_oe_dict(c.observed), "window": c.window,
                             "reopened_by": c.reopened_by, "length": c.length if c.window else None,
                             "intended_step": c.intended_step, "acknowledged": c.acknowledged or None,
                             "failure": c.failure, "why": c.why} for c in check.cuts_at(k)]}
                  for k, name in enumerate(check.steps, 1)],
        "uncovered": [{**_oe_dict(oe), "allowed_after_last_step": still} for oe, still in check.uncovered],
    }


def draft_matrix(profile, obs: Observation, source: str = "") -> str:
    """matrix.yaml entries for the observed edges the intended matrix does
    not list, for a person to review (the matrix stays the source of truth)."""
    intents = profile.intents()
    by_key = {ep.key: ep for ep in profile.endpoints}
    new = sorted((oe for e, oe in obs.edges.items() if e not in intents), key=lambda oe: str(oe.edge))
    listed = len(obs.edges) - len(new)
    lines = [f"# Drafted by `inv matrix-from-flows` from {source or obs.meta.get('source', 'observed flows')}: "
             f"{len(new)} observed edge(s) the intended matrix of profile {profile.name} does not list "
             f"({listed} it does).",
             "# Review each: move it under `allowed:` with the step that should open it, or under `blocked:`",
             "# (traffic that must stop) with the reason. Nothing here is trusted until a person has decided."]
    if not new:
        lines.append("allowed: []")
        return "\n".join(lines) + "\n"
    lines.append("allowed:")
    for oe in new:
        e = oe.edge
        port = next((p for p in by_key[e.dst].ports if p.port == e.port and p.protocol == e.protocol), None)
        lines += [f"  - from: {e.src}",
                  f"    to: {e.dst}",
                  f"    port: {port.name if port and port.name else e.port}"
                  + (f"  # {e.port}" if port and port.name else "  # not a port the destination declares"
                     if not port else ""),
                  f"    protocol: {e.protocol}",
                  "    step: TODO  # the step that should open it",
                  f"    reason: \"observed: {oe.count} flow(s), first {when(oe.first)}, last {when(oe.last)}\""]
    return "\n".join(lines) + "\n"
