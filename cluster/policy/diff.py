"""The connectivity difference between two policy sets on the same workloads.

``policies-diff`` asks what a change to the policies (NetworkPolicies and
ClusterNetworkPolicies) does to traffic,
not to YAML: every edge of the matrix (each source pod to each declared
port, as ``policies-check`` and the live probes see it) is predicted once
with the old policies and once with the new ones. The result lists the edges
opened and closed, each with the policies that decide it on either side,
counts the unchanged ones, and marks every opened edge the intended matrix
does not allow.

Inputs (``load_side``), each a directory:

* a profile (``profile.yaml``): its workloads, its intended matrix and all
  its steps;
* an exported Flux tree (``flux/bootstrap/flux-system/infrastructure.yaml``,
  see ``export``): what Flux applies, read by ``fluxtree``; workloads and
  intent from ``--profile``;
* a Kustomize directory (``kustomization.yaml``): its build;
* plain manifests as ``inv reachability`` reads them: if they hold
  workloads, those (no intended matrix); NetworkPolicies only: the
  profile's workloads and intent.

Exit codes (``PolicyDiff.exit_code``): 0 the diff is shown and opens
nothing the intended matrix forbids; 3 it opens at least one edge the
intended matrix does not allow. ``NotComparable`` (exit 2): the two sides
have different workloads, so the change is not a policy change alone (the
chapter's guardrail: keep policy changes apart from application changes).
Bad input is a ``ManifestError`` (exit 1).

Pure: files and the engine, no client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from cluster.errors import DashiError, ManifestError
from cluster.policy import fluxtree
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine, Verdict
from cluster.policy.engine.model import KCNP_KIND, NS_NAME_LABEL, Edge
from cluster.policy.engine.predictions import Predictions
from cluster.policy.kinds import POLICY_KINDS
from cluster.policy.manifests import obj_ref, read_dir
from cluster.policy.profile import Profile, load_profile
from cluster.ui import prose

EXIT_OK = 0
EXIT_NOT_COMPARABLE = 2
EXIT_UNINTENDED = 3
STEP_ANNOTATION = "dashi.io/step"


class NotComparable(DashiError):
    """OLD and NEW do not describe the same workloads."""

    exit_code = EXIT_NOT_COMPARABLE


# --------------------------------------------------------------------------
# The matrix of a policy set


def allowed_edges(profile: Profile, policies) -> set[Edge]:
    """The edges of ``profile.edges()`` the policies allow, computed with the
    engine's bitset matrix (one pass per destination port, not per edge)."""
    predicted = Predictions(Engine(profile.namespaces, policies), profile.endpoints, profile.edges())
    return {e for e in predicted if predicted.allowed(e)}


# --------------------------------------------------------------------------
# One side of the diff


@dataclass
class PolicySet:
    label: str  # how outputs name this side: a directory, or REV:PATH (commit)
    kind: str  # "profile", "flux", "kustomize", "manifests"
    profile: Profile  # workloads and namespaces as this side has them; intent when has_intent
    policies: list[dict]
    has_intent: bool

    def by_name(self) -> dict[str, dict]:
        return {policy_name(p): p for p in self.policies}


def policy_name(p: dict) -> str:
    """How the diff names a policy: "ns/name", or "ClusterNetworkPolicy name"."""
    meta = p["metadata"]
    return f"{KCNP_KIND} {meta['name']}" if p["kind"] == KCNP_KIND else f"{meta['namespace']}/{meta['name']}"


def _kind_of(directory: Path) -> str:
    if (directory / "profile.yaml").is_file():
        return "profile"
    if fluxtree.find_root(directory) is not None:
        return "flux"
    if fluxtree.kustomization_file(directory) is not None:
        return "kustomize"
    return "manifests"


def _hinted(hint: str | Path | Profile) -> Profile:
    return hint if isinstance(hint, Profile) else load_profile(hint)


def _with_policies_of(profile: Profile, namespaces: list[dict], policies: list[tuple[dict, str]],
                      label: str, kind: str) -> PolicySet:
    """Policies read from a tree, on the profile's workloads. Namespaces the
    tree declares replace the profile's (their labels are what the cluster
    gets); each policy must live in a namespace one of them knows."""
    ns_labels = dict(profile.namespaces)
    for obj in namespaces:
        meta = obj["metadata"]
        ns_labels[meta["name"]] = {**{str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
                                   NS_NAME_LABEL: meta["name"]}
    sources = {}
    out = []
    for obj, src in policies:
        ns = obj["metadata"].get("namespace")
        key = (obj["kind"], ns, obj["metadata"]["name"])
        if obj["kind"] != KCNP_KIND and ns not in ns_labels:
            raise ManifestError(f"namespace {ns!r} is in neither the tree nor profile {profile.name} "
                                "(pass --profile with the profile these policies are for)",
                                path=src, obj=obj_ref(obj))
        if key in sources:
            raise ManifestError(f"duplicate {obj['kind']} (also in {sources[key]})", path=src, obj=obj_ref(obj))
        compile_policy(obj, src)
        sources[key] = src
        out.append(obj)
    return PolicySet(label, kind, replace(profile, namespaces=ns_labels), out, has_intent=True)


def load_side(directory: str | Path, profile_hint: str | Path | Profile = "dashi", label: str | None = None,
              root: Path | None = None) -> PolicySet:
    """Read one side of the diff (see the module docstring for the kinds).
    ``profile_hint``: the profile (or its name) whose workloads and intent
    apply to trees of policies only. ``root``: a Kustomize directory's build
    reads nothing outside it."""
    directory = Path(directory)
    label = label or str(directory)
    if not directory.is_dir():
        raise ManifestError("not a directory", path=str(directory))
    kind = _kind_of(directory)
    if kind == "profile":
        prof = load_profile(directory)
        return PolicySet(label, kind, prof, list(prof.policies_through(len(prof.steps))), True)
    if kind == "flux":
        namespaces, policies = fluxtree.read_flux_tree(directory)
        return _with_policies_of(_hinted(profile_hint), namespaces, policies, label, kind)
    if kind == "kustomize":
        objs = fluxtree.build(directory, root)
        return _with_policies_of(_hinted(profile_hint),
                                 [o for o, _ in objs if o["kind"] == "Namespace"],
                                 [(o, s) for o, s in objs if o["kind"] in POLICY_KINDS], label, kind)
    rs = read_dir(directory, check_namespaces=False)
    for p in rs.policies:
        if p["kind"] != KCNP_KIND:
            p["metadata"].setdefault("namespace", "default")  # as the API server defaults it
    if not rs.endpoints:
        return _with_policies_of(_hinted(profile_hint), rs.namespace_objects,
                                 list(zip(rs.policies, rs.policy_sources)), label, kind)
    rs.check_namespaces(extra=("default",))
    prof = Profile(name=directory.name, root=directory, description="", namespaces=dict(rs.namespaces),
                   namespace_objects=rs.namespace_objects, workload_objects=rs.objects,
                   endpoints=list(rs.endpoints), steps=[], intended=[])
    return PolicySet(label, kind, prof, list(rs.policies), False)


# --------------------------------------------------------------------------
# The diff


@dataclass(frozen=True)
class Change:
    edge: Edge
    intended: bool | None  # None: no intended matrix applies
    before: str  # what decided it with the old policies
    after: str  # what decides it with the new ones


@dataclass(frozen=True)
class EdgeState:
    """One edge of the matrix on both sides: the grid of the HTML report."""

    edge: Edge
    before: bool  # allowed by the old policies
    after: bool  # allowed by the new ones
    intended: bool | None  # None: no intended matrix applies
    explanation: tuple[str, ...]  # the verdict with the new policies, as explain words it


@dataclass
class PolicyDiff:
    old: str
    new: str
    profile: str | None  # whose intended matrix applies, if any
    total: int
    opened: list[Change]
    closed: list[Change]
    unchanged_allowed: int
    unchanged_blocked: int
    added: list[str] = field(default_factory=list)  # policies, "ns/name" or "ClusterNetworkPolicy name"
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # "develop: +allow-dns" from the step annotations
    notes: list[str] = field(default_factory=list)
    matrix: list[EdgeState] = field(default_factory=list)  # every edge, in the matrix's order

    @property
    def unchanged(self) -> int:
        return self.unchanged_allowed + self.unchanged_blocked

    @property
    def unintended(self) -> list[Change]:
        return [c for c in self.opened if c.intended is False]

    @property
    def broken(self) -> list[Change]:
        return [c for c in self.closed if c.intended]

    @property
    def exit_code(self) -> int:
        return EXIT_UNINTENDED if self.unintended else EXIT_OK


def _endpoint_view(profile: Profile) -> dict[str, tuple]:
    return {ep.key: (ep.kind, tuple(sorted(ep.labels.items())), ep.ports, ep.replicas, ep.ip)
            for ep in profile.endpoints}


def _check_comparable(old: PolicySet, new: PolicySet) -> None:
    a, b = _endpoint_view(old.profile), _endpoint_view(new.profile)
    if a == b:
        return
    gone = sorted(set(a) - set(b))
    came = sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    parts = ([f"only in OLD: {', '.join(gone[:3])}"] if gone else []) + \
            ([f"only in NEW: {', '.join(came[:3])}"] if came else []) + \
            ([f"labels, ports or replicas differ: {', '.join(differ[:3])}"] if differ else [])
    raise NotComparable(f"{old.label} and {new.label} have different workloads ({'; '.join(parts)}): "
                        "keep policy changes apart from application changes, and compare policies "
                        "on the same workloads")


def why(v: Verdict) -> str:
    """One line: for an allowed edge the rules that allow it (on isolated
    sides), for a blocked one the side(s) that block it."""
    sides = [(v.egress, v.dst), (v.ingress, v.src)]
    if v.allowed:
        lines = [d.line(peer, v.port, v.protocol) for d, peer in sides if d.isolated]
        return "; ".join(lines) or "no policy selects either side"
    return "; ".join(d.line(peer, v.port, v.protocol) for d, peer in sides if not d.allowed)


def _policy_changes(old: PolicySet, new: PolicySet) -> tuple[list[str], list[str], list[str]]:
    a, b = old.by_name(), new.by_name()

    def body(p):
        meta = p.get("metadata") or {}
        return json.dumps({"spec": p.get("spec"), "labels": meta.get("labels")}, sort_keys=True)

    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    changed = sorted(n for n in set(a) & set(b) if body(a[n]) != body(b[n]))
    return added, removed, changed


def _steps_by_namespace(ps: PolicySet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in ps.policies:
        step = ((p.get("metadata") or {}).get("annotations") or {}).get(STEP_ANNOTATION)
        if step:
            steps = out.setdefault(p["metadata"].get("namespace") or "cluster-scoped", [])
            if step not in steps:
                steps.append(step)
    return out


def _step_changes(old: PolicySet, new: PolicySet) -> list[str]:
    a, b = _steps_by_namespace(old), _steps_by_namespace(new)
    out = []
    for ns in sorted(set(a) | set(b)):
        plus = [s for s in b.get(ns, []) if s not in a.get(ns, [])]
        minus = [s for s in a.get(ns, []) if s not in b.get(ns, [])]
        if plus or minus:
            out.append(f"{ns}: " + " ".join([f"+{s}" for s in plus] + [f"-{s}" for s in minus]))
    return out


def diff(old: PolicySet, new: PolicySet) -> PolicyDiff:
    """Predict every edge with OLD's and NEW's policies and compare."""
    _check_comparable(old, new)
    before = allowed_edges(old.profile, old.policies)
    after = allowed_edges(new.profile, new.policies)
    intent_profile = new if new.has_intent else (old if old.has_intent else None)
    intended = {ie.edge for ie in intent_profile.profile.intended} if intent_profile else None
    by_key = {ep.key: ep for ep in new.profile.endpoints}
    old_engine = Engine(old.profile.namespaces, old.policies)
    new_engine = Engine(new.profile.namespaces, new.policies)

    def change(e: Edge) -> Change:
        src, dst = by_key[e.src], by_key[e.dst]
        return Change(e, None if intended is None else e in intended,
                      why(old_engine.evaluate(src, dst, e.port, e.protocol)),
                      why(new_engine.evaluate(src, dst, e.port, e.protocol)))

    edges = new.profile.edges()
    opened = [change(e) for e in edges if e in after and e not in before]
    closed = [change(e) for e in edges if e in before and e not in after]
    both = sum(1 for e in edges if e in before and e in after)
    matrix = [EdgeState(e, e in before, e in after, None if intended is None else e in intended,
                        tuple(new_engine.evaluate(by_key[e.src], by_key[e.dst], e.port, e.protocol).lines()))
              for e in edges]
    added, removed, changed = _policy_changes(old, new)
    notes = []
    if intended is None:
        notes.append("no intended matrix applies (plain manifests with their own workloads): "
                      "opened edges are not judged")
    if old.profile.namespaces != new.profile.namespaces:
        notes.append("namespace labels differ between OLD and NEW; each side is evaluated with its own")
    return PolicyDiff(old.label, new.label, intent_profile.profile.name if intent_profile else None,
                      len(edges), opened, closed, both, len(edges) - len(opened) - len(closed) - both,
                      added, removed, changed, _step_changes(old, new), notes, matrix)


# --------------------------------------------------------------------------
# Rendering: a terminal table, JSON, Markdown for a pull-request comment


def _intended_text(c: Change, opened: bool) -> str:
    if c.intended is None:
        return "-"
    if opened:
        return "yes" if c.intended else "NO: not in the intended matrix"
    return "yes: breaks intended traffic" if c.intended else "no"


def summary(d: PolicyDiff) -> str:
    return (f"{len(d.opened)} opened, {len(d.closed)} closed, {d.unchanged} unchanged "
            f"({d.unchanged_allowed} allowed, {d.unchanged_blocked} blocked) of {d.total} edges")


def verdict_line(d: PolicyDiff) -> str:
    if d.profile is None:
        return "no intended matrix applies"
    if d.unintended:
        return (f"FAIL: {len(d.unintended)} opened edge(s) are not in the intended matrix of "
                f"profile {d.profile} (exit {EXIT_UNINTENDED})")
    tail = f"; {len(d.broken)} closed edge(s) were intended" if d.broken else ""
    return f"every opened edge is in the intended matrix of profile {d.profile}{tail}"


def _policy_lines(d: PolicyDiff) -> list[str]:
    out = []
    for what, names in (("added", d.added), ("removed", d.removed), ("changed", d.changed)):
        if names:
            out.append(f"policies {what}: {', '.join(names)}")
    if d.steps:
        out.append(f"steps: {'; '.join(d.steps)}")
    return out


def print_diff(d: PolicyDiff, console: Console) -> None:
    """Edges one per line with what decided them before and after: a wide
    table would wrap those reasons into columns nobody can read in a CI log."""
    wrap = prose(console)
    console.print(f"[bold]policies-diff[/bold] {d.old} -> {d.new}", highlight=False, **wrap)
    console.print(summary(d), markup=False, **wrap)
    for line in _policy_lines(d) + d.notes:
        console.print(line, markup=False, highlight=False, **wrap)
    for title, rows, opened in (("opened", d.opened, True), ("closed", d.closed, False)):
        if rows:
            console.print(f"[bold]{title} ({len(rows)}):[/bold]")
        for c in rows:
            console.print(f"  {c.edge}  intended: {_intended_text(c, opened)}", markup=False, highlight=False,
                          **wrap)
            console.print(f"      before: {c.before}", markup=False, highlight=False, style="dim", **wrap)
            console.print(f"      after:  {c.after}", markup=False, highlight=False, style="dim", **wrap)
    style = "bold red" if d.unintended else "green"
    console.print(f"[{style}]{verdict_line(d)}[/{style}]", **wrap)


def _change_dict(c: Change) -> dict:
    e = c.edge
    return {"src": e.src, "dst": e.dst, "port": e.port, "protocol": e.protocol, "intended": c.intended,
            "before": c.before, "after": c.after}


def to_dict(d: PolicyDiff) -> dict:
    return {
        "old": d.old, "new": d.new, "profile": d.profile, "edges": d.total,
        "opened": [_change_dict(c) for c in d.opened],
        "closed": [_change_dict(c) for c in d.closed],
        "unchanged": {"allowed": d.unchanged_allowed, "blocked": d.unchanged_blocked},
        "policies": {"added": d.added, "removed": d.removed, "changed": d.changed},
        "steps": d.steps,
        "unintended_opened": len(d.unintended),
        "intended_closed": len(d.broken),
        "notes": d.notes,
        "exit_code": d.exit_code,
        "matrix": [{"src": m.edge.src, "dst": m.edge.dst, "port": m.edge.port, "protocol": m.edge.protocol,
                    "before": m.before, "after": m.after, "intended": m.intended,
                    "explanation": list(m.explanation)} for m in d.matrix],
    }


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# Longer tables go into a collapsed block, so a large change (a first
# default-deny closes hundreds of edges) keeps the comment readable.
_OPEN_ROWS = 25


def to_markdown(d: PolicyDiff, html_link: str | None = None) -> str:
    """``html_link``: where the HTML report is (its path, or the address of
    the CI run's artefacts), linked under the verdict."""
    icon = ":x:" if d.unintended else (":warning:" if d.broken else ":white_check_mark:")
    lines = [f"### NetworkPolicy connectivity: `{d.old}` → `{d.new}`", "",
             f"**{len(d.opened)} opened, {len(d.closed)} closed, {d.unchanged} unchanged** "
             f"of {d.total} edges ({d.unchanged_allowed} stay allowed, {d.unchanged_blocked} stay blocked)", "",
             f"{icon} {verdict_line(d)}", ""]
    if html_link:
        lines += [f"The whole matrix, opened and closed edges marked, every edge with the policies that decide "
                  f"it: [HTML report](<{html_link}>)", ""]
    for line in _policy_lines(d) + d.notes:
        lines += [f"- {_cell(line)}"]
    if _policy_lines(d) or d.notes:
        lines.append("")
    for title, rows, opened in (("Opened", d.opened, True), ("Closed", d.closed, False)):
        if not rows:
            continue
        body = ["| from | to | port | intended | before | after |", "|---|---|---|---|---|---|"]
        for c in rows:
            body.append(f"| `{c.edge.src}` | `{c.edge.dst}` | {c.edge.port}/{c.edge.protocol} | "
                        f"{_cell(_intended_text(c, opened))} | {_cell(c.before)} | {_cell(c.after)} |")
        if len(rows) > _OPEN_ROWS:
            lines += [f"<details><summary>{title}: {len(rows)} edges</summary>", "", *body, "", "</details>", ""]
        else:
            lines += [f"#### {title} ({len(rows)})", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"
