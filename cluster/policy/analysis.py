"""Offline analysis of a profile: step by step prediction, comparison with the
intended matrix, a least-privilege audit, and "why" for one edge.

Pure: profile + engine, no client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.errors import ManifestError
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine, Verdict
from cluster.policy.engine.model import ACCEPT, HOST, Edge
from cluster.policy.engine.predictions import Predictions, engine_for, predict_matrix
from cluster.policy.profile import BASELINE, Profile


@dataclass(frozen=True)
class Difference:
    edge: Edge
    intended: bool  # what the intent says
    predicted: bool  # what the policies do
    detail: str  # why, naming steps and policies


@dataclass
class StepResult:
    index: int  # 1-based
    name: str
    verdicts: Predictions  # the predicted matrix after this step
    differences: list[Difference]  # vs the step-intended state

    @property
    def allowed(self) -> int:
        return sum(map(self.verdicts.allowed, self.verdicts))


@dataclass
class CheckReport:
    profile: Profile
    steps: list[StepResult]
    final: list[Difference]  # vs the full intended matrix
    over_permissive: list[str] = field(default_factory=list)
    verdicts: Predictions | None = None  # the final predicted matrix
    # What the prediction rests on that the reader must know: peers the
    # engine does not model, policies a CNI refuses, ClusterNetworkPolicies
    # of one tier and priority that match the same traffic.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.final and not any(s.differences for s in self.steps)


def _missing_detail(profile: Profile, edge: Edge, verdict: Verdict) -> str:
    intent = profile.intent_of(edge)
    step = intent.step if intent else "?"
    present = step == BASELINE or any(s.name == step for s in profile.steps)
    sides = []
    for d, peer in ((verdict.egress, verdict.dst), (verdict.ingress, verdict.src)):
        if d.allowed:
            continue
        if d.decided_by:
            sides.append(d.line(peer, verdict.port, verdict.protocol))
        else:
            sides.append(f"no {d.direction} rule for {d.subject} (blocked by {', '.join(d.selecting)})")
    where = f"step {step}" + ("" if present else " is not in the applied set")
    reason = f" [{intent.reason}]" if intent and intent.reason else ""
    return f"intended ({where}){reason}, but missing: {'; '.join(sides)}"


def _extra_detail(verdict: Verdict) -> str:
    parts = []
    for d in (verdict.egress, verdict.ingress):
        if d.decided_by:
            parts.append(f"{d.direction} allowed by {d.decided_by}")
        elif d.isolated:
            parts.append(f"{d.direction} allowed by {', '.join(d.allowing)}")
        elif d.note:
            parts.append(f"{d.direction}: {d.note}")
        else:
            parts.append(f"{d.direction} of {d.subject} not isolated (no policy selects it)")
    return "not intended, but " + "; ".join(parts)


def _diff(profile: Profile, want: dict[Edge, bool], verdicts: Predictions) -> list[Difference]:
    out = []
    for edge, intended in want.items():
        if verdicts.allowed(edge) != intended:
            v = verdicts[edge]
            detail = _missing_detail(profile, edge, v) if intended else _extra_detail(v)
            out.append(Difference(edge, intended, v.allowed, detail))
    return out


def audit(profile: Profile, verdicts: Predictions, intended: dict[Edge, bool]) -> list[str]:
    """Rules that allow no intended edge: over-permissive (or dead) rules."""
    used: set[str] = set()
    for edge in verdicts:
        if intended.get(edge) and verdicts.allowed(edge):
            v = verdicts[edge]
            used.update(v.egress.allowing)
            used.update(v.ingress.allowing)
    findings = []
    engine = Engine(profile.namespaces, profile.policies_through(len(profile.steps)))
    for p in engine.policies:
        for direction, rules in (("ingress", p.ingress), ("egress", p.egress)):
            for rule in rules or ():
                tag = f"{p.ref} {direction} rule {rule.index}"
                if tag not in used:
                    findings.append(f"{tag} ({rule}) allows no intended edge of the matrix")
    # A ClusterNetworkPolicy's Accept rules allow; its Deny and Pass rules
    # take away or hand on, and are guardrails rather than openings.
    for c in engine.cluster_policies:
        for direction in ("ingress", "egress"):
            for rule in c.rules(direction):
                tag = f"{c.ref} {direction} rule {rule.index}"
                if rule.action == ACCEPT and tag not in used:
                    findings.append(f"{tag} ({rule}) allows no intended edge of the matrix")
    return findings


def warnings(profile: Profile, policies) -> list[str]:
    """What a prediction with ``policies`` rests on that the engine cannot
    check: unmodelled peers, policies the profile's CNI refuses, and
    ClusterNetworkPolicies of one tier and priority that can match the same
    connection among the profile's endpoints."""
    engine = engine_for(profile, policies)
    return list(engine.notes) + engine.overlaps(profile.endpoints)


def check(profile: Profile) -> CheckReport:
    """Predict every cumulative step and compare with the intent."""
    results = []
    verdicts = None
    compiled: list = []  # each step's policies compiled once, not once per later step
    for k, step in enumerate(profile.steps, 1):
        compiled += [compile_policy(o) for o in step.objects]
        verdicts = predict_matrix(profile, list(compiled))
        diffs = _diff(profile, profile.intended_after(k), verdicts)
        results.append(StepResult(k, step.name, verdicts, diffs))
    if verdicts is None:  # no steps: the open baseline
        verdicts = predict_matrix(profile, [])
    final_want = profile.intended_final()
    final = _diff(profile, final_want, verdicts)
    return CheckReport(profile, results, final, audit(profile, verdicts, final_want), verdicts,
                       warnings(profile, compiled))


def parse_port(text: str) -> tuple[int | str, str]:
    """'8080', '53/udp', 'metrics/TCP' -> (port, PROTOCOL); TCP when no protocol is given."""
    port, _, proto = str(text).partition("/")
    proto = (proto or "TCP").upper()
    if proto not in ("TCP", "UDP", "SCTP"):
        raise ManifestError(f"invalid protocol {proto!r} in {text!r} (TCP, UDP, SCTP)")
    if port.isdigit():
        n = int(port)
        if not 1 <= n <= 65535:
            raise ManifestError(f"PORT {text!r}: port {n} out of range 1-65535")
        return n, proto
    if not port:
        raise ManifestError(f"PORT {text!r}: no port number or name")
    return port, proto


def explain(profile: Profile, src: str, dst: str, port_text: str, upto: str | None = None) -> Verdict:
    """The verdict for one edge, after all steps or after step ``upto``."""
    k = len(profile.steps) if upto is None else profile.step_index(upto)
    source = HOST if src in ("host", HOST.key) else profile.endpoint(src)
    target = profile.endpoint(dst)
    port, proto = parse_port(port_text)
    if isinstance(port, str):
        named = [p for p in target.ports if p.name == port and p.protocol == proto]
        if not named:
            others = sorted({p.protocol for p in target.ports if p.name == port})
            hint = f" (it has {port!r} on {', '.join(others)}: say {port}/{others[0]})" if others else \
                f" (its ports: {', '.join(str(p) for p in target.ports) or 'none declared'})"
            raise ManifestError(f"{dst} has no port named {port!r} on {proto}{hint}")
        port = named[0].port
    return engine_for(profile, profile.policies_through(k)).evaluate(source, target, port, proto)
