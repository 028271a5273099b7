"""A pure NetworkPolicy (networking.k8s.io/v1) evaluator.

It imports no client: it reads policies as plain dicts (as in YAML) and
decides, for a source, a destination, a port and a protocol, whether the
traffic is allowed, naming the policies and rules that decided it.

The semantics, case by case (the Kubernetes API reference and the upstream
e2e network policy tests are the reference):

* A pod is isolated for a direction when at least one policy in its
  namespace selects it (``spec.podSelector``) and lists that direction in
  its policy types. Unisolated directions allow everything.
* ``policyTypes`` absent: defaulted exactly as the API server does:
  ``[Ingress]``, plus ``Egress`` when ``spec.egress`` has at least one rule
  (an empty ``egress: []`` adds nothing).
* Policies add up: traffic is allowed in a direction if any rule of any
  selecting policy allows it. Traffic is allowed end to end only if the
  source's egress AND the destination's ingress allow it.
* Rules: an absent or empty rule list allows nothing; a rule with ``from`` /
  ``to`` absent or empty matches every peer, including addresses outside the
  cluster; ``ports`` absent or empty matches every port and protocol.
* Peers: ``podSelector`` alone picks pods in the policy's own namespace;
  ``namespaceSelector`` alone picks every pod in the matching namespaces;
  both in one peer means AND (pods matching in namespaces matching); two
  peers mean OR. A nil selector is "not set"; an empty selector ``{}``
  matches everything. Every namespace carries ``kubernetes.io/metadata.name``.
  ``ipBlock`` matches an address in ``cidr`` and in none of ``except``; it
  applies to pods only when their IP is known (the API leaves ipBlock-vs-pod
  behaviour to the plugin, and offline we rarely know pod IPs).
* Selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists,
  DoesNotExist), ANDed. NotIn and DoesNotExist match a pod without the key.
* Ports: protocol defaults to TCP; a numeric port, optionally a range up to
  ``endPort``; a named port resolves on the destination pod to a container
  port with that name AND the rule's protocol (a name whose container port
  has another protocol opens nothing); a rule entry with protocol only
  matches every port of that protocol.
* The node ("host"): traffic from the node to its local pods (kubelet
  probes, ``kubectl port-forward``, which enters through the pod's own
  loopback) is always allowed; NetworkPolicy does not apply to it.

A subset of Cilium's CiliumNetworkPolicy (cilium.io/v2) compiles into the
same model (``cluster.policy.cilium``): egress to the ``kube-apiserver``
entity, which is the external endpoint found as the backends of the
default/kubernetes Service (``Endpoint.is_kube_apiserver``). Cilium adds up
the allows of its own policies and of NetworkPolicies alike, so they are
simply more policies here.

Invalid input raises ``ManifestError`` naming the policy; nothing panics.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cluster.errors import ManifestError
from cluster.policy import apivalidation

PROTOCOLS = ("TCP", "UDP", "SCTP")
NS_NAME_LABEL = "kubernetes.io/metadata.name"
KUBE_API_SERVICE = "default/kubernetes"
KUBE_APISERVER_ENTITY = "kube-apiserver"


# --------------------------------------------------------------------------
# Peers the engine reasons about (a small, client-free view of an endpoint)


@dataclass(frozen=True)
class Port:
    name: str | None
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        label = f"{self.port}/{self.protocol}"
        return f"{self.name} ({label})" if self.name else label


@dataclass(frozen=True)
class Endpoint:
    """Something traffic can come from or go to.

    kind: "workload" (pods of a Deployment/StatefulSet/... or a Pod),
    "debug" (an unlabelled debug pod), "cluster" (pods the cluster provides,
    e.g. DNS), "external" (an address outside the pod network), "host" (the
    node itself).
    """

    key: str
    namespace: str | None
    name: str
    kind: str = "workload"
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    replicas: int = 1
    ip: str | None = None
    # How the live layer finds it on a cluster: the label selector of its
    # pods, or (external endpoints) the Service whose EndpointSlice holds its
    # address, as "namespace/name".
    pod_selector: str | None = None
    address_service: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.kind in ("workload", "debug", "cluster")

    @property
    def probe_source(self) -> bool:
        return self.kind in ("workload", "debug")

    @property
    def is_kube_apiserver(self) -> bool:
        """Cilium's entity kube-apiserver: the backends of Service
        default/kubernetes (pkg/ipcache/cell/apiserver_watcher.go)."""
        return self.kind == "external" and self.address_service == KUBE_API_SERVICE

    def __hash__(self) -> int:  # labels is a dict; the key identifies an endpoint
        return hash(self.key)


@dataclass(frozen=True)
class Edge:
    """Traffic from one endpoint to a port of another, by endpoint key."""

    src: str
    dst: str
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.protocol}"


HOST = Endpoint(key="host/node", namespace=None, name="node", kind="host")


# --------------------------------------------------------------------------
# Compiled policies


@dataclass(frozen=True)
class Selector:
    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, frozenset[str]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In":
                if not present or labels[key] not in values:
                    return False
            elif op == "NotIn":
                if present and labels[key] in values:
                    return False
            elif op == "Exists":
                if not present:
                    return False
            elif present:  # DoesNotExist
                return False
        return True

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for key, op, values in self.expressions:
            if op in ("In", "NotIn"):
                parts.append(f"{key} {op.lower()} ({','.join(sorted(values))})")
            else:
                parts.append(key if op == "Exists" else f"!{key}")
        return "{" + ", ".join(parts) + "}" if parts else "{} (all)"


@dataclass(frozen=True)
class Peer:
    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    excepts: tuple = ()
    entity: str | None = None  # a Cilium entity (only kube-apiserver is modelled)

    @property
    def by_address(self) -> bool:
        """Matched endpoint by endpoint (an address or an entity), not by selectors."""
        return self.cidr is not None or self.entity is not None

    def __str__(self) -> str:
        if self.entity is not None:
            return f"entity {self.entity}"
        if self.cidr is not None:
            ex = f" except {', '.join(map(str, self.excepts))}" if self.excepts else ""
            return f"ipBlock {self.cidr}{ex}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces {self.namespace_selector}")
        if self.pod_selector is not None:
            parts.append(f"pods {self.pod_selector}")
        return " and ".join(parts)


@dataclass(frozen=True)
class PortRule:
    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def matches(self, dst: Endpoint, port: int, protocol: str) -> bool:
        if protocol != self.protocol:
            return False
        if self.port is None:
            return True
        if isinstance(self.port, int):
            if self.end_port is not None:
                return self.port <= port <= self.end_port
            return port == self.port
        # Named: resolved on the destination pod, name AND protocol.
        return any(p.name == self.port and p.protocol == protocol and p.port == port
                   for p in dst.ports)

    def __str__(self) -> str:
        if self.port is None:
            return f"any/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Rule:
    index: int
    peers: tuple[Peer, ...] | None  # None: every peer
    ports: tuple[PortRule, ...] | None  # None: every port

    def __str__(self) -> str:
        peers = "any peer" if self.peers is None else " or ".join(map(str, self.peers))
        ports = "any port" if self.ports is None else ", ".join(map(str, self.ports))
        return f"{peers} on {ports}"


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...] | None  # None: not an Ingress policy
    egress: tuple[Rule, ...] | None  # None: not an Egress policy
    source: str = ""  # file the policy came from, for messages
    kind: str = "NetworkPolicy"

    @property
    def ref(self) -> str:
        ref = f"{self.namespace}/{self.name}"
        return ref if self.kind == "NetworkPolicy" else f"{self.kind} {ref}"


def _where(policy: Mapping, source: str) -> tuple[str, str]:
    meta = policy.get("metadata") or {}
    return source, f"NetworkPolicy {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def parse_selector(data, path: str, obj: str, what: str) -> Selector:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
    labels = data.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise ManifestError(f"{what}.matchLabels must be a mapping", path=path, obj=obj)
    if not isinstance(data.get("matchExpressions") or [], list):
        raise ManifestError(f"{what}.matchExpressions must be a list", path=path, obj=obj)
    apivalidation.selector(data, what, path, obj)
    exprs = []
    for i, expr in enumerate(data.get("matchExpressions") or []):
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise ManifestError(f"{what}.matchExpressions[{i}] needs key and operator", path=path, obj=obj)
        op = expr["operator"]
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise ManifestError(f"{what}.matchExpressions[{i}].values must be a list", path=path, obj=obj)
        if op in ("In", "NotIn"):
            if not values:
                raise ManifestError(f"{what}.matchExpressions[{i}]: operator {op} needs values",
                                    path=path, obj=obj)
        elif op in ("Exists", "DoesNotExist"):
            if values:
                raise ManifestError(f"{what}.matchExpressions[{i}]: operator {op} takes no values",
                                    path=path, obj=obj)
        else:
            raise ManifestError(
                f"{what}.matchExpressions[{i}]: invalid operator {op!r} "
                "(In, NotIn, Exists, DoesNotExist)", path=path, obj=obj)
        exprs.append((str(expr["key"]), op, frozenset(str(v) for v in values)))
    return Selector(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(exprs))


def _parse_peer(data, path, obj, what) -> Peer:
    if isinstance(data, Mapping):
        # A null field is an unset one (a nil pointer in the API types).
        data = {k: v for k, v in data.items() if v is not None}
    if not isinstance(data, Mapping) or not data:
        raise ManifestError(f"{what}: a peer needs podSelector, namespaceSelector or ipBlock",
                            path=path, obj=obj)
    unknown = set(data) - {"podSelector", "namespaceSelector", "ipBlock"}
    if unknown:
        raise ManifestError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}", path=path, obj=obj)
    if "ipBlock" in data:
        if len(data) > 1:
            raise ManifestError(f"{what}: ipBlock cannot be combined with selectors", path=path, obj=obj)
        block = data["ipBlock"] or {}
        if not isinstance(block, Mapping) or not isinstance(block.get("except") or [], list):
            raise ManifestError(f"{what}.ipBlock must be a mapping with cidr and a list except",
                                path=path, obj=obj)
        try:
            cidr = apivalidation.cidr(block.get("cidr"), "cidr")
            excepts = tuple(apivalidation.cidr(e, "except") for e in block.get("except") or [])
        except apivalidation.Invalid as e:
            raise e.at(f"{what}.ipBlock", path, obj) from None
        for ex in excepts:
            # The API requires a strict subset (validation of IPBlock.except).
            if ex.version != cidr.version or not ex.subnet_of(cidr) or ex == cidr:
                raise ManifestError(f"{what}: ipBlock except {ex} is not inside {cidr}", path=path, obj=obj)
        return Peer(cidr=cidr, excepts=excepts)
    pod = parse_selector(data["podSelector"], path, obj, f"{what}.podSelector") \
        if "podSelector" in data else None
    ns = parse_selector(data["namespaceSelector"], path, obj, f"{what}.namespaceSelector") \
        if "namespaceSelector" in data else None
    return Peer(pod_selector=pod, namespace_selector=ns)


def _parse_port(data, path, obj, what) -> PortRule:
    if not isinstance(data, Mapping):
        raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
    protocol = data.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise ManifestError(f"{what}: invalid protocol {protocol!r} (TCP, UDP, SCTP)", path=path, obj=obj)
    port = data.get("port")
    end = data.get("endPort")
    if isinstance(port, bool):
        raise ManifestError(f"{what}: invalid port {port!r}", path=path, obj=obj)
    if isinstance(port, int):
        if not 1 <= port <= 65535:
            raise ManifestError(f"{what}: port {port} out of range 1-65535", path=path, obj=obj)
    elif isinstance(port, str):
        try:
            apivalidation.port_name(port)
        except apivalidation.Invalid as e:
            raise e.at(f"{what}.port", path, obj) from None
    elif port is not None:
        raise ManifestError(f"{what}: invalid port {port!r}", path=path, obj=obj)
    if end is not None:
        if not isinstance(port, int):
            raise ManifestError(f"{what}: endPort needs a numeric port", path=path, obj=obj)
        if not isinstance(end, int) or isinstance(end, bool) or end < port or end > 65535:
            raise ManifestError(f"{what}: endPort {end!r} must be a number from port ({port}) to 65535",
                                path=path, obj=obj)
    return PortRule(protocol=protocol, port=port, end_port=end)


def _parse_rules(rules, peer_key, path, obj, direction) -> tuple[Rule, ...]:
    if not isinstance(rules, list):
        raise ManifestError(f"spec.{direction} must be a list", path=path, obj=obj)
    out = []
    for i, rule in enumerate(rules):
        what = f"spec.{direction}[{i}]"
        if rule is None:
            rule = {}
        if not isinstance(rule, Mapping):
            raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
        unknown = set(rule) - {peer_key, "ports"}
        if unknown:
            raise ManifestError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}", path=path, obj=obj)
        peers_data = rule.get(peer_key)
        peers = None
        if peers_data:
            if not isinstance(peers_data, list):
                raise ManifestError(f"{what}.{peer_key} must be a list", path=path, obj=obj)
            peers = tuple(_parse_peer(p, path, obj, f"{what}.{peer_key}[{j}]") for j, p in enumerate(peers_data))
        ports_data = rule.get("ports")
        ports = None
        if ports_data:
            if not isinstance(ports_data, list):
                raise ManifestError(f"{what}.ports must be a list", path=path, obj=obj)
            ports = tuple(_parse_port(p, path, obj, f"{what}.ports[{j}]") for j, p in enumerate(ports_data))
        out.append(Rule(index=i + 1, peers=peers, ports=ports))
    return tuple(out)


def compile_policy(policy: Mapping, source: str = "") -> Policy:
    """Validate one NetworkPolicy (or the CiliumNetworkPolicy subset of
    ``cluster.policy.cilium``) dict and compile it. Raises ManifestError."""
    if isinstance(policy, Mapping) and policy.get("kind") == "CiliumNetworkPolicy":
        from cluster.policy.cilium import compile_cnp  # it builds on this module

        return compile_cnp(policy, source)
    path, obj = _where(policy, source)
    if policy.get("kind") != "NetworkPolicy":
        raise ManifestError(f"expected kind NetworkPolicy, got {policy.get('kind')!r}", path=path, obj=obj)
    meta = policy.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        raise ManifestError("metadata.name and metadata.namespace are required", path=path, obj=obj)
    spec = policy.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ManifestError("spec must be a mapping", path=path, obj=obj)
    types = spec.get("policyTypes")
    if not types:
        # The API server's defaulting (pkg/apis/networking/v1/defaults.go).
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise ManifestError(f"invalid policyType {t!r} (Ingress, Egress)", path=path, obj=obj)
    ingress = _parse_rules(spec.get("ingress") or [], "from", path, obj, "ingress") if "Ingress" in types else None
    egress = _parse_rules(spec.get("egress") or [], "to", path, obj, "egress") if "Egress" in types else None
    return Policy(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        pod_selector=parse_selector(spec.get("podSelector"), path, obj, "spec.podSelector"),
        ingress=ingress,
        egress=egress,
        source=source,
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

    def _ns_labels(self, namespace: str | None) -> Mapping[str, str]:
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
        elif not peer.namespace_selector.matches(self._ns_labels(ep.namespace)):
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

    def _bitsets(self, endpoints: Sequence[Endpoint]) -> "_Bitsets":
        return _Bitsets(self, endpoints)

    def allowed_matrix(self, endpoints: Sequence[Endpoint]):
        """Every (src, dst, dst port) among ``endpoints`` as bitsets.

        Returns {(dst_index, port_index): int bitset of allowed source indices}.
        Instead of evaluating n*n*ports pairs one by one, each rule's peer set
        and each policy's selected set is computed once as a bitset over the
        endpoints; a destination port then costs one pass over the rules that
        can reach it. The cost grows with pods x ports x (rules touching a
        pod), and with the bit-width (pods) of the integer operations.
        """
        b = self._bitsets(endpoints)
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

    def port_ranges(self, endpoints: Sequence[Endpoint]):
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
        b = self._bitsets(endpoints)
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

MAX_PORT = 65535


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

    def __init__(self, engine: Engine, endpoints: Sequence[Endpoint]):
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
                if sel.matches(self.engine._ns_labels(ns)):
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


def engine_for(profile, policies: Iterable[Mapping]) -> Engine:
    """An engine over ``policies`` in the profile's namespaces, predicting
    the dataplane of the profile's CNI (``Profile.for_cni``; DATAPLANES)."""
    cni = getattr(profile, "cni", None)
    return Engine(profile.namespaces, policies, dataplane=cni if cni in DATAPLANES else None)


def predict(profile, policies: Iterable[Mapping] | None = None,
            endpoints: Sequence[Endpoint] | None = None) -> dict[Edge, Verdict]:
    """The engine's verdict for every edge of a profile's matrix.

    ``policies`` defaults to all the profile's steps; ``endpoints`` replaces
    the profile's endpoints (e.g. with live pod and API server addresses,
    which ipBlock rules depend on). The profile's CNI (``Profile.for_cni``)
    is the dataplane whose departures from the API apply (``DATAPLANES``).
    """
    if policies is None:
        policies = profile.policies_through(len(profile.steps))
    eps = list(endpoints) if endpoints is not None else profile.endpoints
    by_key = {ep.key: ep for ep in eps}
    engine = engine_for(profile, policies)
    edges = profile.edges() if endpoints is None else profile.with_endpoints(eps).edges()
    return {e: engine.evaluate(by_key[e.src], by_key[e.dst], e.port, e.protocol) for e in edges}


class Predictions(Mapping):
    """The engine's verdict for every edge of a matrix, as a mapping
    Edge -> Verdict in the matrix's order.

    Whether each edge is allowed (``allowed(edge)``) comes from the bitset
    matrix, one pass per destination port; the full Verdict, which names
    the policies and rules on each side, is worked out when an edge's is
    asked for, once. A check that explains only the edges that differ from
    the intent then costs a pass per port, not an evaluation per edge."""

    def __init__(self, engine: Engine, endpoints: Sequence[Endpoint], edges: Iterable[Edge]):
        self._engine = engine
        self._by_key = {ep.key: ep for ep in endpoints}
        index = {ep.key: i for i, ep in enumerate(endpoints)}
        matrix = engine.allowed_matrix(endpoints)
        column: dict[tuple[int, int, str], int] = {}
        for d, ep in enumerate(endpoints):
            for q, p in enumerate(ep.ports):
                # Two container ports may share a number and protocol (different
                # names): the first decides, as the API server's port lookup does.
                column.setdefault((d, p.port, p.protocol), q)
        self._allowed: dict[Edge, bool] = {}
        for e in edges:
            d = index[e.dst]
            self._allowed[e] = bool(matrix[(d, column[(d, e.port, e.protocol)])] >> index[e.src] & 1)
        self._verdicts: dict[Edge, Verdict] = {}

    def allowed(self, edge: Edge) -> bool:
        return self._allowed[edge]

    def __getitem__(self, edge: Edge) -> Verdict:
        v = self._verdicts.get(edge)
        if v is None:
            self._allowed[edge]  # noqa: B018  (an edge outside the matrix is a KeyError, as in a dict)
            v = self._verdicts[edge] = self._engine.evaluate(self._by_key[edge.src], self._by_key[edge.dst],
                                                             edge.port, edge.protocol)
        return v

    def __iter__(self):
        return iter(self._allowed)

    def __len__(self) -> int:
        return len(self._allowed)

    def __contains__(self, edge) -> bool:
        return edge in self._allowed


def predict_matrix(profile, policies: Iterable[Mapping]) -> Predictions:
    """``predict`` over the profile's own endpoints, as a ``Predictions``:
    the allowed bit of every edge at once, each Verdict when asked for."""
    return Predictions(engine_for(profile, policies), profile.endpoints, profile.edges())
