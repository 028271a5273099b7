"""The engine's test universe and builders, shared by the engine's
semantic tests (tests/policy/engine/test_engine_*.py) and the conformance cases
(tests/support/conformance.py).

Modelled on the upstream Kubernetes e2e network policy suite
(test/e2e/network/netpol/network_policy.go) and on the truth tables of
cyclonus / policy-assistant (integration_test.go): the same universe of
namespaces x, y, z with pods a, b, c in each, every pod serving 80 and 81 on
TCP, UDP and SCTP under the names serve-<port>-<proto>.

Every truth-table test states "default allowed (or blocked) plus these
exceptions" over the full 9x9 table (self excluded) and asserts exact
equality (``check``, ``truth_table``); and for every engine built by a
truth-table test the fast bitset path (``allowed_matrix``) must agree with
``evaluate`` on every (source, destination, declared port)
(``assert_paths_agree``; ``assert_ranges_agree`` for ``port_ranges``).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

import pytest

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.matrix import source_ranges
from cluster.policy.engine.model import Endpoint, Port

# --------------------------------------------------------------------------
# The universe

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
KEYS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)
NS_NAME = "kubernetes.io/metadata.name"
PORTS = (80, 81)
CONTAINER_PORTS = tuple(Port(f"serve-{n}-{proto.lower()}", n, proto)
                        for proto in ("TCP", "UDP", "SCTP") for n in PORTS)
TCP_PORTS = tuple(p for p in CONTAINER_PORTS if p.protocol == "TCP")  # what the live conformance pods serve
ALLOWED, BLOCKED = True, False


def pod_ip(key: str) -> str:
    return f"10.42.0.{KEYS.index(key) + 1}"


def make_namespaces(extra: dict | None = None) -> dict:
    """x, y, z labelled ns=<name>; ``extra`` adds labels per namespace."""
    extra = extra or {}
    return {ns: {"ns": ns, **extra.get(ns, {})} for ns in NAMESPACES}


def make_pods(*, ips: bool | Mapping[str, str] = False, labels: dict | None = None,
              ports: dict | None = None) -> list[Endpoint]:
    """The nine pods. ``ips``: True for the addresses of ``pod_ip``, or an
    address per key; ``labels``/``ports`` replace a pod's labels/ports by key."""
    labels = labels or {}
    ports = ports or {}
    out = []
    for key in KEYS:
        ns, name = key.split("/")
        ip = (ips[key] if isinstance(ips, Mapping) else pod_ip(key)) if ips else None
        out.append(Endpoint(key=key, namespace=ns, name=name, labels=labels.get(key, {"pod": name}),
                            ports=ports.get(key, CONTAINER_PORTS), ip=ip))
    return out


PODS = {ep.key: ep for ep in make_pods()}
PODS_WITH_IPS = {ep.key: ep for ep in make_pods(ips=True)}


def external(name: str, ip: str) -> Endpoint:
    return Endpoint(key=f"external/{name}", namespace=None, name=name, kind="external", ip=ip,
                    ports=(Port(None, 80, "TCP"), Port(None, 443, "TCP")))


def pairs(srcs="*", dsts="*") -> frozenset:
    """(src, dst) keys matching the glob(s), self excluded."""
    srcs = [srcs] if isinstance(srcs, str) else list(srcs)
    dsts = [dsts] if isinstance(dsts, str) else list(dsts)
    return frozenset((s, d) for s in KEYS for d in KEYS if s != d
                     and any(fnmatchcase(s, p) for p in srcs) and any(fnmatchcase(d, p) for p in dsts))


# --------------------------------------------------------------------------
# Policy builders (plain dicts, as read from YAML)

ABSENT = object()


def raw_policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def netpol(ns: str, name: str, selector: dict | None = None, *, ingress=ABSENT, egress=ABSENT,
           types=ABSENT) -> dict:
    """Like upstream GenNetworkPolicyWithNameAndPodSelector + SetSpecIngressRules /
    SetSpecEgressRules: passing ``ingress``/``egress`` (even ``[]``) lists that
    direction in policyTypes, unless ``types`` is given."""
    spec: dict = {"podSelector": {} if selector is None else selector}
    listed = []
    if ingress is not ABSENT:
        spec["ingress"] = ingress
        listed.append("Ingress")
    if egress is not ABSENT:
        spec["egress"] = egress
        listed.append("Egress")
    spec["policyTypes"] = listed if types is ABSENT else types
    return raw_policy(ns, name, spec)


def labels(**kv) -> dict:
    return {"matchLabels": dict(kv)}


def ns_named(name: str) -> dict:
    return {"matchLabels": {NS_NAME: name}}


def req(key: str, op: str, *values: str) -> dict:
    r = {"key": key, "operator": op}
    if values:
        r["values"] = list(values)
    return r


def exprs(*reqs: dict) -> dict:
    return {"matchExpressions": list(reqs)}


def pod_peer(selector: dict) -> dict:
    return {"podSelector": selector}


def ns_peer(selector: dict) -> dict:
    return {"namespaceSelector": selector}


def ns_pod_peer(ns_selector: dict, pod_selector: dict) -> dict:
    return {"namespaceSelector": ns_selector, "podSelector": pod_selector}


def ip_peer(cidr: str, *excepts: str) -> dict:
    block = {"cidr": cidr}
    if excepts:
        block["except"] = list(excepts)
    return {"ipBlock": block}


def port(p, protocol: str | None = None, end: int | None = None) -> dict:
    out: dict = {}
    if p is not None:
        out["port"] = p
    if protocol is not None:
        out["protocol"] = protocol
    if end is not None:
        out["endPort"] = end
    return out


# ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1)

CNP_API = "policy.networking.k8s.io/v1beta1"


def cnp(name: str, tier: str, priority: int, subject: dict, *, ingress=ABSENT, egress=ABSENT,
        api: str = CNP_API) -> dict:
    """A ClusterNetworkPolicy; ``subject`` from ``ns_subject`` or ``pods_subject``."""
    spec: dict = {"tier": tier, "priority": priority, "subject": subject}
    if ingress is not ABSENT:
        spec["ingress"] = ingress
    if egress is not ABSENT:
        spec["egress"] = egress
    return {"apiVersion": api, "kind": "ClusterNetworkPolicy", "metadata": {"name": name}, "spec": spec}


def ns_subject(selector: dict) -> dict:
    return {"namespaces": selector}


def pods_subject(ns_selector: dict, pod_selector: dict) -> dict:
    return {"pods": {"namespaceSelector": ns_selector, "podSelector": pod_selector}}


def cnp_rule(action: str, peers: list, *protocols: dict, name: str | None = None, direction: str = "from") -> dict:
    """An ingress rule (``direction="to"``: an egress rule)."""
    rule: dict = {"action": action, direction: peers}
    if name:
        rule["name"] = name
    if protocols:
        rule["protocols"] = list(protocols)
    return rule


def to_rule(action: str, peers: list, *protocols: dict, name: str | None = None) -> dict:
    return cnp_rule(action, peers, *protocols, name=name, direction="to")


def namespaces_peer(selector: dict) -> dict:
    return {"namespaces": selector}


def pods_peer(ns_selector: dict, pod_selector: dict) -> dict:
    return {"pods": {"namespaceSelector": ns_selector, "podSelector": pod_selector}}


def networks_peer(*cidrs: str) -> dict:
    return {"networks": list(cidrs)}


def proto(protocol: str, number: int | None = None, end: int | None = None) -> dict:
    """``tcp``/``udp``/``sctp`` with a port number, or a range ``number``-``end``."""
    port = {"range": {"start": number, "end": end}} if end is not None else {"number": number}
    return {protocol.lower(): {"destinationPort": port}}


def named_port(name: str) -> dict:
    return {"destinationNamedPort": name}


# --------------------------------------------------------------------------
# Truth tables


def truth_table(default: bool, exceptions=frozenset()) -> dict[tuple[str, str], bool]:
    """The full 9x9 table (self excluded): ``default`` everywhere except the
    ``exceptions`` pairs, which have the other outcome."""
    exceptions = frozenset(exceptions)
    return {(s, d): (not default) if (s, d) in exceptions else default for s in KEYS for d in KEYS if s != d}


def render(table: dict) -> str:
    width = max(len(k) for k in KEYS)
    lines = [" " * width + " " + " ".join(k.rjust(width) for k in KEYS)]
    for s in KEYS:
        cells = []
        for d in KEYS:
            cells.append("-" if s == d else ("." if table[(s, d)] else "X"))
        lines.append(s.ljust(width) + " " + " ".join(c.rjust(width) for c in cells))
    return "\n".join(lines) + "\n(rows: source, columns: destination; '.' allowed, 'X' blocked)"


def assert_paths_agree(engine: Engine, endpoints) -> None:
    """allowed_matrix (bitsets) must agree with evaluate on every edge it reports."""
    endpoints = list(endpoints)
    matrix = engine.allowed_matrix(endpoints)
    want_keys = {(d, q) for d, dst in enumerate(endpoints) for q in range(len(dst.ports))}
    assert set(matrix) == want_keys, "allowed_matrix must report exactly every (destination, declared port)"
    bad = []
    for d, dst in enumerate(endpoints):
        for q, p in enumerate(dst.ports):
            bits = matrix[(d, q)]
            for s, src in enumerate(endpoints):
                fast = bool(bits >> s & 1)
                slow = engine.evaluate(src, dst, p.port, p.protocol).allowed
                if fast != slow:
                    bad.append(f"{src.key} -> {dst.key} {p.port}/{p.protocol}: "
                               f"allowed_matrix={'ALLOWED' if fast else 'BLOCKED'}, "
                               f"evaluate={'ALLOWED' if slow else 'BLOCKED'}")
    assert not bad, (f"allowed_matrix disagrees with evaluate on {len(bad)} edge(s):\n  "
                     + "\n  ".join(bad[:20]))


def _probe_ports(engine: Engine, endpoints) -> list[int]:
    """Ports where a verdict can change: every rule bound and its neighbours,
    every declared port, and the ends of the port space."""
    ports = {1, 2, 65534, 65535}
    for p in [*engine.policies, *engine.cluster_policies]:
        for rule in (p.ingress or ()) + (p.egress or ()):
            for pr in rule.ports or ():
                if isinstance(pr.port, int):
                    for n in (pr.port, pr.end_port or pr.port):
                        ports.update((n - 1, n, n + 1))
    for ep in endpoints:
        ports.update(x.port for x in ep.ports)
    return sorted(n for n in ports if 1 <= n <= 65535)


def assert_ranges_agree(engine: Engine, endpoints) -> None:
    """port_ranges must agree with evaluate on every pair, protocol and port
    where the verdict can change, and cover each protocol at most once."""
    endpoints = list(endpoints)
    got: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
    seen = set()
    for d, protocol, segments in engine.port_ranges(endpoints):
        assert (d, protocol) not in seen
        seen.add((d, protocol))
        assert segments == sorted(segments) and all(lo <= hi for lo, hi, _ in segments)
        assert all(a[1] < b[0] for a, b in zip(segments, segments[1:])), "segments overlap"
        for bits, ranges in source_ranges(segments):
            assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:])), "adjacent ranges not merged"
            for s in range(len(endpoints)):
                if bits >> s & 1:
                    assert (s, d, protocol) not in got, "a source in two groups"
                    got[(s, d, protocol)] = ranges
    bad = []
    ports = _probe_ports(engine, endpoints)
    for s, src in enumerate(endpoints):
        for d, dst in enumerate(endpoints):
            for protocol in ("TCP", "UDP", "SCTP"):
                spans = got.get((s, d, protocol), [])
                for n in ports:
                    fast = any(lo <= n <= hi for lo, hi in spans)
                    if fast != engine.evaluate(src, dst, n, protocol).allowed:
                        bad.append(f"{src.key} -> {dst.key} {n}/{protocol}: port_ranges says "
                                   f"{'allowed' if fast else 'blocked'} ({spans})")
    assert not bad, f"port_ranges disagrees with evaluate on {len(bad)} edge(s):\n  " + "\n  ".join(bad[:20])


def check(policies, port_no: int, protocol: str = "TCP", *, default: bool, exceptions=frozenset(),
          namespaces: dict | None = None, pods: list[Endpoint] | None = None) -> Engine:
    """Assert the exact 9x9 truth table: ``default`` everywhere except ``exceptions``."""
    namespaces = make_namespaces() if namespaces is None else namespaces
    pods = make_pods() if pods is None else pods
    assert [p.key for p in pods] == list(KEYS)
    engine = Engine(namespaces, policies)
    table = {(s.key, d.key): engine.evaluate(s, d, port_no, protocol).allowed
             for s in pods for d in pods if s is not d}
    got = frozenset(pr for pr, ok in table.items() if ok != default)
    expected = frozenset(exceptions)
    if got != expected:
        want = truth_table(default, expected)
        flip = "blocked" if default else "allowed"
        pytest.fail(
            f"truth table on {port_no}/{protocol} (default {'allowed' if default else 'blocked'}):\n"
            f"  expected {flip} but not: {sorted(expected - got)}\n"
            f"  {flip} but not expected: {sorted(got - expected)}\n"
            f"expected:\n{render(want)}\ngot:\n{render(table)}")
    assert_paths_agree(engine, pods)
    return engine


def verdict(engine: Engine, src: str, dst: str, port_no: int, protocol: str = "TCP", pods=PODS):
    return engine.evaluate(pods[src], pods[dst], port_no, protocol)
