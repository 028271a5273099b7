"""A profile: namespaces, stand-in workloads, ordered policy steps and the
intended traffic matrix, read from ``manifests/<profile>/``.

Layout of a profile directory (all plain YAML a user can edit):

    profile.yaml      name, the files below, the ordered steps, and the
                      endpoints the cluster provides (DNS) or that live
                      outside the pod network (the Kubernetes API)
    namespaces.yaml   Namespace objects
    workloads/*.yaml  stand-ins: Deployments/StatefulSets/Pods (+ Services)
    policies/*.yaml   one file per step, NetworkPolicy and ClusterNetworkPolicy
                      objects; a step may name a variant file per CNI
                      (``variants: {cilium: file}``) that a live rollout on
                      that CNI applies instead (it may hold CiliumNetworkPolicies)
    matrix.yaml       the intended matrix: every edge that must be allowed,
                      with the step that opens it and why

Pure: no client imports.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path

from cluster.errors import Invalid, ManifestError
from cluster.paths import shipped
from cluster.policy import apivalidation as av
from cluster.policy import schema
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.model import KCNP_KIND, NS_NAME_LABEL, PROTOCOLS, Edge, Endpoint, Port
from cluster.policy.kinds import POLICY_KINDS
from cluster.policy.manifests import (ResourceSet, applied_documents, check_known, check_object, obj_ref, read_text,
                                      read_yaml)


def _manifests_dir() -> Path:
    """Where profiles are found by name: $DASHI_MANIFESTS, the clone's
    manifests/, or the copy an installed package put under
    <prefix>/share/dashi-cluster/manifests (pyproject's data-files)."""
    if os.environ.get("DASHI_MANIFESTS"):
        return Path(os.environ["DASHI_MANIFESTS"])
    return shipped("manifests")


MANIFESTS_DIR = _manifests_dir()
BASELINE = "baseline"


# The CNIs a step may have a variant for (the names cluster.live.observe.cni's
# detect_cni gives).
VARIANT_CNIS = ("calico", "cilium", "k3s")


@dataclass(frozen=True)
class StepVariant:
    path: Path
    objects: tuple[dict, ...]


@dataclass(frozen=True)
class PolicyStep:
    name: str
    path: Path
    origin: str
    objects: tuple[dict, ...]
    note: str = ""
    # Per CNI, the form of this step that works there (see Profile.for_cni).
    variants: Mapping[str, StepVariant] = field(default_factory=dict)
    cni: str | None = None  # the variant this step is, None: the plain form

    def for_cni(self, cni: str | None) -> "PolicyStep":
        v = self.variants.get(cni or "")
        return self if v is None else replace(self, path=v.path, objects=v.objects, cni=cni)


@dataclass(frozen=True)
class IntendedEdge:
    edge: Edge
    step: str  # a step name, or "baseline" (open before any step, and stays open)
    reason: str


@dataclass(frozen=True)
class HostAccess:
    dst: str
    reason: str


@dataclass(frozen=True)
class BlockedEdge:
    """An entry of matrix.yaml's ``blocked:`` list (or ``--accept-blocking``):
    edges known to carry traffic that must be cut, so a step cutting observed
    traffic on them is no failure (``inv flows-check``)."""

    sources: frozenset[str]
    destinations: frozenset[str]
    port: int | str  # a number, a port name of the destination, or "*"
    protocol: str | None  # None: TCP for a number, any for a name or "*"
    reason: str
    where: str  # "matrix.yaml blocked[0]", "--accept-blocking"

    def matches(self, edge: Edge, dst: Endpoint) -> bool:
        if edge.src not in self.sources or edge.dst not in self.destinations:
            return False
        if self.protocol is not None and edge.protocol != self.protocol:
            return False
        if self.port == "*":
            return True
        if isinstance(self.port, int):
            return edge.port == self.port and (self.protocol is not None or edge.protocol == "TCP")
        return any(p.name == self.port and p.port == edge.port and p.protocol == edge.protocol for p in dst.ports)


@dataclass(frozen=True)
class UnlistedEdge:
    """profile.yaml's ``traffic.unlisted``: an edge the stand-ins carry in
    traffic mode that the intended matrix does not list, as a real platform
    has (a sidecar exporting traces, a job calling an API nobody wrote down)."""

    edge: Edge
    reason: str


@dataclass
class Profile:
    name: str
    root: Path
    description: str
    namespaces: dict[str, dict[str, str]]
    namespace_objects: list[dict]
    workload_objects: list[dict]
    endpoints: list[Endpoint]
    steps: list[PolicyStep]
    intended: list[IntendedEdge]
    host_access: list[HostAccess] = field(default_factory=list)
    skipped_steps: tuple[str, ...] = ()
    cni: str | None = None  # the CNI whose step variants are in use (None: the plain forms)
    blocked: list[BlockedEdge] = field(default_factory=list)  # matrix.yaml blocked:
    unlisted: list[UnlistedEdge] = field(default_factory=list)  # profile.yaml traffic.unlisted
    traffic_beat_s: float = 2.0  # profile.yaml traffic.beat_seconds

    # -- lookups ------------------------------------------------------------

    def endpoint(self, key: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.key == key:
                return ep
        raise ManifestError(f"no endpoint {key!r} in profile {self.name} "
                            f"(known: {', '.join(e.key for e in self.endpoints)})")

    def step_index(self, name: str) -> int:
        """1-based position of a step; 0 for "baseline"."""
        if name == BASELINE:
            return 0
        for i, s in enumerate(self.steps, 1):
            if s.name == name:
                return i
        raise ManifestError(f"no step {name!r} in profile {self.name} "
                            f"(steps: {', '.join(s.name for s in self.steps)})")

    @property
    def profile_namespaces(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.namespace_objects]

    # -- the matrix ---------------------------------------------------------

    def edges(self) -> list[Edge]:
        """The probe universe: every source pod to every declared port.

        A workload's connection to itself is left out unless it has more
        than one replica (then it is pod-to-pod, e.g. RustFS nodes).
        """
        endpoints = tuple(self.endpoints)
        # Worked out once per list of endpoints (they are immutable): reports,
        # checks and verifications ask for the edges many times over.
        cached = self.__dict__.get("_edges")
        if cached is None or cached[0] != endpoints:
            out = []
            for src in endpoints:
                if not src.probe_source:
                    continue
                for dst in endpoints:
                    if dst.kind == "host" or (dst.key == src.key and dst.replicas <= 1):
                        continue
                    for p in dst.ports:
                        out.append(Edge(src.key, dst.key, p.port, p.protocol))
            cached = self.__dict__["_edges"] = (endpoints, out)
        return list(cached[1])

    def policies_through(self, k: int) -> list[dict]:
        """The cumulative policy objects of the first k steps."""
        return [obj for step in self.steps[:k] for obj in step.objects]

    def intended_after(self, k: int) -> dict[Edge, bool]:
        """What must be allowed once the first k steps are applied.

        k = 0 is the baseline before any policy: everything is open. From
        the first step on, only "baseline" edges and edges of applied steps.
        """
        edges = self.edges()
        if k == 0:
            return {e: True for e in edges}
        opened = {s.name for s in self.steps[:k]} | {BASELINE}
        allowed = {ie.edge for ie in self.intended if ie.step in opened}
        return {e: e in allowed for e in edges}

    def intended_final(self) -> dict[Edge, bool]:
        """The matrix as the profile means it: every intended edge, whichever steps exist."""
        allowed = {ie.edge for ie in self.intended}
        return {e: e in allowed for e in self.edges()}

    def intent_of(self, edge: Edge) -> IntendedEdge | None:
        for ie in self.intended:
            if ie.edge == edge:
                return ie
        return None

    def intents(self) -> dict[Edge, IntendedEdge]:
        """``intent_of`` for every intended edge at once (a report asks for each edge's)."""
        out: dict[Edge, IntendedEdge] = {}
        for ie in self.intended:
            out.setdefault(ie.edge, ie)
        return out

    def without(self, names) -> "Profile":
        """The profile with some steps left out (to see what they were for)."""
        names = tuple(names)
        for n in names:
            self.step_index(n)
        return replace(self, steps=[s for s in self.steps if s.name not in names],
                       skipped_steps=self.skipped_steps + names)

    def with_endpoints(self, endpoints) -> "Profile":
        return replace(self, endpoints=list(endpoints))

    @property
    def has_variants(self) -> bool:
        return any(s.variants for s in self.steps)

    @property
    def cluster_policy_steps(self) -> list[str]:
        """The steps holding ClusterNetworkPolicies (in any form): a cluster
        must serve and enforce that kind for them."""
        return [s.name for s in self.steps
                if any(o["kind"] == KCNP_KIND for form in (s, *s.variants.values()) for o in form.objects)]

    def for_cni(self, cni: str | None) -> "Profile":
        """The profile as a cluster running ``cni`` gets it: each step with a
        variant for that CNI takes the variant's policies; the others (and
        every step, for a CNI no variant names) keep their plain form. The
        engine predicts that CNI's dataplane for every profile, variants or
        not (engine.evaluate.DATAPLANES)."""
        steps = [s.for_cni(cni) for s in self.steps] if self.has_variants else self.steps
        return replace(self, steps=steps, cni=cni)


# --------------------------------------------------------------------------
# Loading


def _profile_dir(name_or_dir: str | os.PathLike) -> Path:
    p = Path(name_or_dir)
    if p.is_dir() and (p / "profile.yaml").exists():
        return p
    candidate = MANIFESTS_DIR / str(name_or_dir)
    if (candidate / "profile.yaml").exists():
        return candidate
    known = sorted(d.name for d in MANIFESTS_DIR.iterdir() if (d / "profile.yaml").exists()) \
        if MANIFESTS_DIR.is_dir() else []
    raise ManifestError(f"unknown profile {str(name_or_dir)!r} (known: {', '.join(known) or 'none'})")


def _ports_of(data) -> tuple[Port, ...]:
    # Shape, range and protocol are checked by the profile's schema.
    return tuple(Port(p.get("name"), p["port"], p.get("protocol", "TCP")) for p in data or [])


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _match(pattern: str, endpoints: list[Endpoint], path: str, what: str) -> list[Endpoint]:
    found = [ep for ep in endpoints if fnmatch.fnmatchcase(ep.key, pattern)]
    if not found:
        raise ManifestError(f"{what}: {pattern!r} matches no endpoint", path=path)
    return found


def _parse_matrix(data: dict, path: str, endpoints: list[Endpoint], step_names: list[str],
                  ) -> tuple[list[IntendedEdge], list[HostAccess], list[BlockedEdge]]:
    if not isinstance(data, dict):
        raise ManifestError("the matrix must be a mapping with 'allowed'", path=path)
    intended: dict[Edge, IntendedEdge] = {}
    for i, entry in enumerate(data.get("allowed") or []):
        what = f"allowed[{i}]"
        if not isinstance(entry, dict) or "from" not in entry or "to" not in entry or "port" not in entry:
            raise ManifestError(f"{what}: needs from, to and port", path=path)
        step = entry.get("step")
        if step != BASELINE and step not in step_names:
            raise ManifestError(f"{what}: step {step!r} is not a step of the profile "
                                f"({', '.join(step_names)}, or baseline)", path=path)
        port = entry["port"]
        protocol = entry.get("protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            raise ManifestError(f"{what}: invalid protocol {protocol!r}", path=path)
        sources = [ep for pat in _as_list(entry["from"]) for ep in _match(pat, endpoints, path, what)]
        for src in sources:
            if not src.probe_source:
                raise ManifestError(f"{what}: {src.key} cannot be a source (not a pod of the profile)", path=path)
        for pat in _as_list(entry["to"]):
            wildcard = any(ch in pat for ch in "*?[")
            for dst in _match(pat, endpoints, path, what):
                if port == "*":
                    ports = list(dst.ports)
                elif isinstance(port, int):
                    ports = [p for p in dst.ports if p.port == port and (protocol or "TCP") == p.protocol]
                else:
                    ports = [p for p in dst.ports if p.name == port and (protocol is None or p.protocol == protocol)]
                if not ports:
                    if wildcard:
                        continue
                    raise ManifestError(f"{what}: {dst.key} has no port {port!r}"
                                        f"{'/' + protocol if protocol else ''}", path=path)
                for src in sources:
                    if src.key == dst.key and dst.replicas <= 1:
                        continue
                    for p in ports:
                        edge = Edge(src.key, dst.key, p.port, p.protocol)
                        prev = intended.get(edge)
                        if prev is not None and prev.step != step:
                            raise ManifestError(f"{what}: {edge} is already opened by step {prev.step}",
                                                path=path)
                        intended[edge] = IntendedEdge(edge, step, str(entry.get("reason", "")))
    host = []
    blocked: list[BlockedEdge] = []
    for i, entry in enumerate(data.get("blocked") or []):
        what = f"blocked[{i}]"
        srcs = frozenset(ep.key for pat in _as_list(entry["from"]) for ep in _match(pat, endpoints, path, what))
        dsts = frozenset(ep.key for pat in _as_list(entry["to"]) for ep in _match(pat, endpoints, path, what))
        rule = BlockedEdge(srcs, dsts, entry["port"], entry.get("protocol"), str(entry.get("reason", "")),
                           f"matrix.yaml {what}")
        by_key = {ep.key: ep for ep in endpoints}
        both = [str(e) for e in intended if rule.matches(e, by_key[e.dst])]
        if both:
            raise ManifestError(f"{what}: {both[0]} is also in allowed (an edge is intended or blocked, not both)",
                                path=path)
        blocked.append(rule)
    for i, entry in enumerate(data.get("host") or []):
        for pat in _as_list((entry or {}).get("to")):
            for dst in _match(pat, endpoints, path, f"host[{i}]"):
                host.append(HostAccess(dst.key, str(entry.get("reason", ""))))
    return list(intended.values()), host, blocked


# Profiles loaded before in this process, by directory: the files that load
# read, with their texts, and the Profile, pickled. A command loads its
# profile in several places (cluster-up's stand-ins and canary stages, a
# rollout and its checks); where every one of those files still reads the
# same, the load is the same, and the caller gets a copy of its own.
_LOADED: dict[str, tuple[tuple[tuple[str, str], ...], bytes]] = {}
_READS: ContextVar[list | None] = ContextVar("profile_reads", default=None)


def _read(path: Path) -> str:
    """A profile file's text, noted for the profile being loaded."""
    text = read_text(path)
    reads = _READS.get()
    if reads is not None:
        reads.append((str(path), text))
    return text


def _unchanged(reads) -> bool:
    for path, text in reads:
        try:
            if read_text(Path(path)) != text:
                return False
        except ManifestError:
            return False
    return True


def load_profile(name_or_dir: str | os.PathLike = "dashi") -> Profile:
    """Load and validate a profile by name (``manifests/<name>``) or directory."""
    import pickle  # not for the offline tasks that read no profile

    root = _profile_dir(name_or_dir)
    kept = _LOADED.get(str(root))
    if kept is not None and _unchanged(kept[0]):
        return pickle.loads(kept[1])
    reads: list = []
    token = _READS.set(reads)
    try:
        profile = _load(root)
    finally:
        _READS.reset(token)
    _LOADED[str(root)] = (tuple(reads), pickle.dumps(profile, pickle.HIGHEST_PROTOCOL))
    return profile


def _load(root: Path) -> Profile:
    meta_path = root / "profile.yaml"
    spec = load_documents_plain(meta_path, "profile")
    rs = ResourceSet()

    ns_path = root / spec.get("namespaces", "namespaces.yaml")
    ns_docs = applied_documents(ns_path, "Namespace", _read(ns_path))
    check_known(ns_docs, str(ns_path), kinds=("Namespace",))
    for obj in ns_docs:
        rs.add(obj, str(ns_path))

    for rel in spec.get("workloads") or []:
        wpath = root / rel
        wdocs = applied_documents(wpath, "objects", _read(wpath))
        check_known(wdocs, str(wpath))
        for obj in wdocs:
            if obj["kind"] in ("NetworkPolicy", "Namespace"):
                raise ManifestError(f"{obj['kind']} belongs in the namespaces file or a policy step, "
                                    "not with the workloads", path=str(wpath), obj=obj_ref(obj))
            rs.add(obj, str(wpath))
    rs.check_namespaces()

    endpoints = list(rs.endpoints)
    namespaces = dict(rs.namespaces)
    for i, ce in enumerate(spec.get("cluster_endpoints") or []):
        what = f"cluster_endpoints[{i}]"
        av.labels(ce.get("labels"), f"{what}.labels", str(meta_path))
        ns = ce["namespace"]
        namespaces.setdefault(ns, {NS_NAME_LABEL: ns})
        endpoints.append(Endpoint(key=f"{ns}/{ce['name']}", namespace=ns, name=ce["name"], kind="cluster",
                                  labels=dict(ce.get("labels") or {}), ports=_ports_of(ce.get("ports")),
                                  pod_selector=ce.get("live_selector")))
    for i, ext in enumerate(spec.get("external_endpoints") or []):
        if ext.get("ip") is not None:
            try:
                av.ip(ext["ip"], "ip")
            except Invalid as e:
                raise e.at(f"external_endpoints[{i}].ip", str(meta_path)) from None
        endpoints.append(Endpoint(key=f"external/{ext['name']}", namespace=None, name=ext["name"],
                                  kind="external", ports=_ports_of(ext.get("ports")),
                                  ip=ext.get("ip"), address_service=ext.get("live_endpoints_of")))
    keys = [e.key for e in endpoints]
    for k in keys:
        if keys.count(k) > 1:
            raise ManifestError(f"two endpoints are named {k}", path=str(meta_path))

    steps = []
    seen_policies: dict[tuple, str] = {}
    for i, st in enumerate(spec.get("steps") or []):
        what = f"steps[{i}]"
        if any(s.name == st["name"] for s in steps) or st["name"] == BASELINE:
            raise ManifestError(f"{what}: duplicate or reserved step name {st['name']!r}", path=str(meta_path))
        spath = root / st["file"]
        before = dict(seen_policies)
        objs = _step_objects(spath, rs, spec.get("name", root.name), seen_policies, cni=None)
        variants = {}
        for cni, rel in (st.get("variants") or {}).items():
            vpath = root / rel
            # A variant stands in for its step: its names may repeat the plain
            # form's (and another variant's), not those of any other step.
            seen = dict(before)
            variants[cni] = StepVariant(vpath, _step_objects(vpath, rs, spec.get("name", root.name), seen, cni=cni))
            for key in seen.keys() - before.keys():
                seen_policies.setdefault(key, str(vpath))
        steps.append(PolicyStep(st["name"], spath, st.get("origin", "added"), objs, st.get("note", ""), variants))

    matrix_path = root / spec.get("matrix", "matrix.yaml")
    intended, host, blocked = _parse_matrix(load_documents_plain(matrix_path, "matrix"), str(matrix_path),
                                            endpoints, [s.name for s in steps])
    traffic = spec.get("traffic") or {}
    return Profile(name=spec.get("name", root.name), root=root, description=spec.get("description", ""),
                   namespaces=namespaces, namespace_objects=rs.namespace_objects,
                   workload_objects=rs.objects, endpoints=endpoints, steps=steps,
                   intended=intended, host_access=host, blocked=blocked,
                   unlisted=_unlisted(traffic.get("unlisted") or [], endpoints, intended, str(meta_path)),
                   traffic_beat_s=float(traffic.get("beat_seconds", 2.0)))


def _unlisted(entries: list, endpoints: list[Endpoint], intended: list[IntendedEdge], path: str) -> list[UnlistedEdge]:
    """profile.yaml's traffic.unlisted: each from one pod to a port its
    destination declares, and not an intended edge."""
    out = []
    wanted = {ie.edge for ie in intended}
    for i, entry in enumerate(entries):
        what = f"traffic.unlisted[{i}]"
        src = _match(entry["from"], endpoints, path, what)
        dst = _match(entry["to"], endpoints, path, what)
        if len(src) != 1 or len(dst) != 1 or not src[0].probe_source or not dst[0].is_pod:
            raise ManifestError(f"{what}: from and to each name one pod endpoint of the profile", path=path)
        protocol = entry.get("protocol", "TCP")
        port = next((p for p in dst[0].ports if (p.port == entry["port"] or p.name == entry["port"])
                     and p.protocol == protocol), None)
        if port is None:
            raise ManifestError(f"{what}: {dst[0].key} has no port {entry['port']!r}/{protocol}", path=path)
        edge = Edge(src[0].key, dst[0].key, port.port, protocol)
        if edge in wanted:
            raise ManifestError(f"{what}: {edge} is in the intended matrix, so it is not unlisted", path=path)
        out.append(UnlistedEdge(edge, str(entry.get("reason", ""))))
    return out


def _step_objects(spath: Path, rs: ResourceSet, profile_name: str, seen_policies: dict[tuple, str],
                  cni: str | None) -> tuple[dict, ...]:
    """The policies of a step file, checked; ``cni``: a variant for that CNI,
    which may hold what only that CNI reads (CiliumNetworkPolicies on cilium)."""
    kinds = POLICY_KINDS + (("CiliumNetworkPolicy",) if cni == "cilium" else ())
    objs = applied_documents(spath, f"{', '.join(kinds[:-1])} or {kinds[-1]}", _read(spath))
    for obj in objs:
        if obj["kind"] not in kinds:
            what = "a policy step" if cni is None else f"a {cni} variant of a step"
            names = [k.replace("Policy", "Policies") for k in kinds]
            raise ManifestError(f"{what} holds {', '.join(names[:-1])} or {names[-1]} only, not {obj['kind']}"
                                + (" (a CiliumNetworkPolicy belongs in a cilium variant)"
                                   if obj["kind"] == "CiliumNetworkPolicy" else ""),
                                path=str(spath), obj=obj_ref(obj))
        ns = obj["metadata"].get("namespace")
        if obj["kind"] == KCNP_KIND:
            pass  # cluster-scoped: its subject picks namespaces by label
        elif ns not in rs.namespaces:
            raise ManifestError(f"namespace {ns!r} does not exist in profile {profile_name}",
                                path=str(spath), obj=obj_ref(obj))
        key = (obj["kind"], ns, obj["metadata"]["name"])
        if key in seen_policies:
            raise ManifestError(f"duplicate {obj['kind']} (also in {seen_policies[key]})",
                                path=str(spath), obj=obj_ref(obj))
        seen_policies[key] = str(spath)
        if obj["kind"] == "CiliumNetworkPolicy":
            compile_policy(obj, str(spath))
        else:
            check_object(obj, str(spath))
    return tuple(objs)


def load_documents_plain(path: Path, kind: str) -> dict:
    """A single-document YAML file that is not a Kubernetes object (``kind``:
    profile or matrix), checked against its schema in cluster/policy/schemas."""
    docs = read_yaml(path, text=_read(path))
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ManifestError("expected one YAML mapping", path=str(path))
    schema.validate_file(kind, docs[0], str(path))
    return docs[0]
