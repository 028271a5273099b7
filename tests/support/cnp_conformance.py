"""The ClusterNetworkPolicy conformance cases: the scenarios of
sigs.k8s.io/network-policy-api v0.3.1's conformance suite
(conformance/tests/*.go over the manifests of conformance/base/, copied
unchanged into tests/fixtures/network-policy-api/) on its own universe,
plus the semantics the suite leaves out (NetworkPolicy and Baseline
together, an egress Accept against the destination's NetworkPolicy,
namespace expressions, unmodelled peers, a same-priority tie).

The universe is upstream's (conformance/base/manifests.yaml), lighter: the
namespaces network-policy-conformance-{gryffindor,slytherin,hufflepuff,
ravenclaw} labelled conformance-house=<house>, two pods in each
(harry-potter-0/1, draco-malfoy-0/1, cedric-diggory-0/1, luna-lovegood-0/1)
labelled conformance-house=<house> and statefulset.kubernetes.io/pod-name=
<pod> as their StatefulSets label them, serving TCP 80 (named web), TCP 8080
and UDP 5353 (named mdns). Upstream's UDP 53 (named dns) and SCTP 9003/9005
are left out: a probe of UDP 53 is a DNS query (cluster.live.observe.probe),
and the test lanes carry no SCTP. Labels upstream sets during a sub-test
are set once: cedric-diggory-0 conformance-role=blocked, luna-lovegood-0
conformance-role=restricted; and harry-potter-0 conformance-role=guarded,
our own, for the cases that select it alone (Cilium leaves the pod-name
label out of pod identities, so a selector on it selects nothing there).

Each case is the state upstream's sub-test reaches (its base manifests and
the mutations made so far), with its whole truth table written as "allowed
everywhere except these (sources, destinations, ports)" and the upstream
PokeServer assertions it reproduces on the probed ports (``pokes``), which
the table must contain. ``tests/policy/engine/test_cnp_conformance_cases.py``
holds the engine to every table offline; ``tests/e2e/test_cnp_conformance_e2e.py``
applies every case on the cilium lane and compares the 8 x 8 matrix on the
three ports with the engine's prediction for that dataplane.

Shorthand in tables and pokes: G, S, H, R are a house's two pods, G0 / G1
one of them, ``*`` every pod; ports "80 8080 5353/udp" (TCP unless said),
``*`` all three.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Endpoint, Port

HOUSES = {"G": ("gryffindor", "harry-potter"), "S": ("slytherin", "draco-malfoy"),
          "H": ("hufflepuff", "cedric-diggory"), "R": ("ravenclaw", "luna-lovegood")}
PREFIX = "network-policy-conformance-"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "network-policy-api"
HOUSE_LABEL = "conformance-house"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# conformance-role, as upstream's sub-tests set it (G0's is ours: see above)
ROLES = {"H0": "blocked", "R0": "restricted", "G0": "guarded"}
CONTAINER_PORTS = (Port("web", 80, "TCP"), Port(None, 8080, "TCP"), Port("mdns", 5353, "UDP"))
PROBED = tuple((p.port, p.protocol) for p in CONTAINER_PORTS)


def _short_keys() -> dict[str, str]:
    return {f"{h}{i}": f"{PREFIX}{house}/{pod}-{i}" for h, (house, pod) in HOUSES.items() for i in (0, 1)}


SHORT = _short_keys()
KEYS = tuple(SHORT.values())
NAMESPACES = tuple(PREFIX + house for house, _ in HOUSES.values())


def namespaces() -> dict[str, dict[str, str]]:
    return {PREFIX + house: {HOUSE_LABEL: house} for house, _ in HOUSES.values()}


def pod_labels(short: str) -> dict[str, str]:
    house, pod = HOUSES[short[0]]
    out = {HOUSE_LABEL: house, POD_NAME_LABEL: f"{pod}-{short[1]}"}
    if short in ROLES:
        out["conformance-role"] = ROLES[short]
    return out


def endpoints(ips: Mapping[str, str]) -> list[Endpoint]:
    """The eight pods as the engine sees them, at the given addresses."""
    out = []
    for short, key in SHORT.items():
        ns, name = key.split("/")
        out.append(Endpoint(key=key, namespace=ns, name=name, labels=pod_labels(short), ports=CONTAINER_PORTS,
                            ip=ips.get(key)))
    return out


def pods(spec: str) -> list[str]:
    """Keys of "G S0", "*"."""
    out: list[str] = []
    for part in spec.split():
        out += list(KEYS) if part == "*" else [k for s, k in SHORT.items() if s == part or s[0] == part]
    return out


def ports(spec: str) -> list[tuple[int, str]]:
    if spec == "*":
        return list(PROBED)
    out = []
    for part in spec.split():
        number, _, protocol = part.partition("/")
        out.append((int(number), (protocol or "TCP").upper()))
    return out


# --------------------------------------------------------------------------
# Mutations, as upstream's sub-tests make them (kubernetes.PatchClusterNetworkPolicy)


def _named(objs: list[dict], name: str) -> dict:
    return next(o for o in objs if o["metadata"]["name"] == name)


def swap(name: str, direction: str, i: int, j: int) -> Callable[[list[dict]], None]:
    def go(objs):
        rules = _named(objs, name)["spec"][direction]
        rules[i], rules[j] = rules[j], rules[i]
    return go


def set_field(name: str, path: tuple, value) -> Callable[[list[dict]], None]:
    def go(objs):
        node = _named(objs, name)
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return go


def drop(kind: str, name: str) -> Callable[[list[dict]], None]:
    def go(objs):
        objs[:] = [o for o in objs if (o["kind"], o["metadata"]["name"]) != (kind, name)]
    return go


def as_v1alpha2(objs: list[dict]) -> None:
    """Served through v1alpha2, as Cilium v1.20.2 watches it (same schema)."""
    for o in objs:
        if o["kind"] == "ClusterNetworkPolicy":
            o["apiVersion"] = "policy.networking.k8s.io/v1alpha2"


@lru_cache(maxsize=None)
def _fixture(rel: str) -> tuple[dict, ...]:
    return tuple(d for d in yaml.safe_load_all((FIXTURES / rel).read_text()) if d)


def cnp(name: str, tier: str, priority: int, subject: dict, **rules) -> dict:
    return {"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": {"tier": tier, "priority": priority, "subject": subject, **rules}}


def house(h: str) -> dict:
    return {"matchLabels": {HOUSE_LABEL: HOUSES[h][0]}}


def netpol(house_short: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": PREFIX + HOUSES[house_short][0]}, "spec": spec}


# --------------------------------------------------------------------------
# Cases


@dataclass(frozen=True)
class CnpCase:
    id: str
    upstream: str  # the upstream test and sub-test it follows, or what it adds
    manifests: tuple[str, ...] = ()  # fixture files, relative to FIXTURES
    mutations: tuple[Callable[[list[dict]], None], ...] = ()
    extra: tuple[dict, ...] = ()
    blocked: tuple[tuple[str, str, str], ...] = ()  # (sources, destinations, ports): the API's table
    pokes: tuple[tuple[str, str, str, bool], ...] = ()  # upstream's assertions: (client, server, port, allowed)
    note: str = ""
    departs: tuple[tuple[str, str, str], ...] = field(default=())  # where Cilium's table differs, flipped

    def policies(self) -> list[dict]:
        objs = [copy.deepcopy(o) for rel in self.manifests for o in _fixture(rel)] + copy.deepcopy(list(self.extra))
        for m in self.mutations:
            m(objs)
        return objs


def _table(blocked) -> dict[tuple[str, str, int, str], bool]:
    out = {(s, d, n, p): True for s in KEYS for d in KEYS if s != d for n, p in PROBED}
    for srcs, dsts, spec in blocked:
        for s in pods(srcs):
            for d in pods(dsts):
                for n, p in ports(spec):
                    if s != d:
                        out[(s, d, n, p)] = False
    return out


def expected_table(case: CnpCase, dataplane: str | None = None) -> dict[tuple[str, str, int, str], bool]:
    """The case's table as the API has it (``dataplane`` "cilium": with the
    edges ``departs`` names flipped, as the lane measured them)."""
    table = _table(case.blocked)
    if dataplane == "cilium":
        for srcs, dsts, spec in case.departs:
            for s in pods(srcs):
                for d in pods(dsts):
                    for n, p in ports(spec):
                        if s != d:
                            table[(s, d, n, p)] = not table[(s, d, n, p)]
    return table


def predicted_table(case: CnpCase, ips: Mapping[str, str], dataplane: str | None = None,
                    ) -> dict[tuple[str, str, int, str], bool]:
    eps = endpoints(ips)
    engine = Engine(namespaces(), case.policies(), dataplane=dataplane)
    return {(s.key, d.key, n, p): engine.evaluate(s, d, n, p).allowed
            for s in eps for d in eps if s is not d for n, p in PROBED}


ALL = "*"
G_INGRESS_TCP = "admin_tier/standard-ingress-tcp-rules.yaml"
G_EGRESS_TCP = "admin_tier/standard-egress-tcp-rules.yaml"
H_INGRESS_UDP = "admin_tier/standard-ingress-udp-rules.yaml"
H_EGRESS_UDP = "admin_tier/standard-egress-udp-rules.yaml"
INTEGRATION = "api_integration/standard-anp-np-banp.yaml"
POD_SELECTORS = (("G", "R1", ALL), ("G", "R0", "8080 5353/udp"), ("S1", "G", ALL), ("H0", "G", ALL), ("R0", "S", ALL))
# Cilium selects pods by identity labels, which leave statefulset.kubernetes.io/pod-name
# out (pkg/labelsfilter): the Accepts for luna-lovegood-0 and draco-malfoy-0 select no
# pod, so the Denies after them decide.
POD_SELECTORS_ON_CILIUM = (("G", "R0", "80"), ("S0", "G", ALL))
POD_SELECTOR_NOTE = ("Cilium: statefulset.kubernetes.io/pod-name is not part of a pod's identity, so the "
                     "Accepts selecting by it match nothing and the Denies after them decide")
POD_SELECTOR_POKES = (("G0", "R0", "8080", False), ("G0", "R0", "80", True), ("G1", "R1", "80", False),
                      ("S1", "G1", "80", False), ("S0", "G0", "80", True), ("H0", "G0", "80", False),
                      ("H1", "G0", "80", True), ("S0", "R1", "80", True), ("R0", "S0", "80", False),
                      ("R1", "S0", "80", True))

CASES: tuple[CnpCase, ...] = (
    # ---- Admin tier (conformance/tests/admin-network-policy-standard-*.go)
    CnpCase("admin-ingress-tcp", "CNPAdminTierIngressTCP: 'allow-ingress' for TCP, rule ordering respected; "
            "at the specified port; egress not affected", (G_INGRESS_TCP,),
            blocked=(("S", "G", "80"), ("H", "G", "8080 5353/udp")),
            pokes=(("R0", "G0", "80", True), ("R1", "G0", "8080", True), ("H0", "G1", "80", True),
                   ("H1", "G1", "8080", False), ("G0", "R0", "80", True), ("G1", "S0", "80", True))),
    CnpCase("admin-ingress-tcp-deny-first", "CNPAdminTierIngressTCP: 'deny-ingress' for TCP, rule ordering "
            "respected (rules 1 and 2 swapped); at the specified port", (G_INGRESS_TCP,),
            (swap("ingress-tcp", "ingress", 0, 1),),
            blocked=(("R", "G", ALL), ("S", "G", "80"), ("H", "G", "8080 5353/udp")),
            pokes=(("R0", "G1", "80", False), ("R1", "G1", "8080", False), ("S0", "G0", "80", False),
                   ("S1", "G0", "8080", True))),
    CnpCase("admin-ingress-tcp-pass", "CNPAdminTierIngressTCP: 'pass-ingress' for TCP, rule ordering respected; "
            "at the specified port (the sub-tests' swaps, cumulated)", (G_INGRESS_TCP,),
            (swap("ingress-tcp", "ingress", 0, 1), swap("ingress-tcp", "ingress", 0, 2),
             swap("ingress-tcp", "ingress", 3, 4)),
            blocked=(("H", "G", "8080 5353/udp"),),
            pokes=(("R0", "G0", "80", True), ("R1", "G0", "8080", True), ("S0", "G0", "80", True),
                   ("S1", "G0", "8080", True))),
    CnpCase("admin-egress-tcp", "CNPAdminTierEgressTCP: 'allow-egress' for TCP, rule ordering respected; at the "
            "specified port; ingress not affected; 'deny-egress' at the specified port", (G_EGRESS_TCP,),
            blocked=(("G", "S", "80"), ("G", "H", "80 5353/udp")),
            pokes=(("G0", "R0", "80", True), ("G1", "R0", "8080", True), ("G0", "H1", "8080", True),
                   ("G1", "H1", "80", False), ("R0", "G0", "80", True), ("S0", "G1", "80", True),
                   ("G0", "S0", "80", False), ("G1", "S0", "8080", True))),
    CnpCase("admin-ingress-udp", "CNPAdminTierIngressUDP: 'allow-ingress' for UDP at the specified port; "
            "'deny-ingress' at the specified port (served through v1alpha2)", (H_INGRESS_UDP,), (as_v1alpha2,),
            blocked=(("S", "H", "5353/udp"), ("G", "H", ALL)),
            pokes=(("R1", "H0", "5353/udp", True), ("G1", "H1", "5353/udp", False),
                   ("S0", "H0", "5353/udp", False))),
    CnpCase("admin-named-port-ingress", "CNPAdminTierIngressNamedPort: 'allow-ingress' for a named port (rule 6 "
            "rewritten to destinationNamedPort; upstream's dns is UDP 53, here mdns, UDP 5353)", (H_INGRESS_UDP,),
            (set_field("ingress-udp", ("spec", "ingress", 5, "protocols"), [{"destinationNamedPort": "mdns"}]),),
            blocked=(("S", "H", "5353/udp"), ("G", "H", "80 8080")),
            pokes=(("G0", "H1", "5353/udp", True), ("G1", "H1", "8080", False))),
    CnpCase("admin-named-port-egress", "CNPAdminTierEgressNamedPort: 'allow-egress' for a named port (rule 6 "
            "rewritten to destinationNamedPort web, TCP 80)", (G_EGRESS_TCP,),
            (set_field("egress-tcp", ("spec", "egress", 5, "protocols"), [{"destinationNamedPort": "web"}]),),
            blocked=(("G", "S", "80"), ("G", "H", "8080 5353/udp")),
            pokes=(("G0", "H1", "80", True), ("G1", "H1", "8080", False))),
    CnpCase("admin-egress-udp-pass", "CNPAdminTierEgressUDP: 'pass-egress' for UDP, rule ordering respected; at the "
            "specified port (the sub-tests' swaps, cumulated)", (H_EGRESS_UDP,),
            (swap("egress-udp", "egress", 0, 1), swap("egress-udp", "egress", 0, 2), swap("egress-udp", "egress", 3, 4)),
            blocked=(("H", "G", ALL),),
            pokes=(("H0", "R1", "5353/udp", True), ("H0", "S0", "5353/udp", True))),
    CnpCase("admin-gress", "CNPAdminTierGress: 'allow-gress' across protocols; at the specified ports; "
            "'deny-gress' at the specified ports", ("admin_tier/standard-gress-rules-combined.yaml",),
            blocked=(("G", "S", "80"), ("S", "G", "80"), ("G", "H", "80"), ("H", "G", "8080")),
            pokes=(("G0", "R0", "80", True), ("R0", "G0", "80", True), ("G0", "H1", "8080", True),
                   ("G1", "H1", "80", False), ("G0", "H1", "5353/udp", True), ("H0", "G1", "80", True),
                   ("H1", "G1", "8080", False), ("H0", "G1", "5353/udp", True), ("G0", "S0", "80", False),
                   ("G1", "S0", "8080", True), ("G1", "S0", "5353/udp", True), ("S0", "G0", "80", False),
                   ("S1", "G0", "8080", True), ("S1", "G0", "5353/udp", True))),
    CnpCase("admin-port-range", "CNPAdminTierPortRange: egress and ingress port range rules across protocols",
            ("admin_tier/standard-port-range-rules-combined.yaml",),
            blocked=(("G", "R", "5353/udp"), ("R", "G", "5353/udp"), ("G", "H", "80 8080"), ("H", "G", "80 8080"),
                     ("G", "S", ALL), ("S", "G", ALL), ("G", "G", ALL)),
            pokes=(("G0", "R0", "80", True), ("G0", "R0", "8080", True), ("G0", "H0", "5353/udp", True),
                   ("G1", "H0", "80", False), ("G1", "S0", "80", False), ("R0", "G0", "80", True),
                   ("R0", "G0", "8080", True), ("H0", "G0", "5353/udp", True), ("H1", "G0", "80", False),
                   ("S1", "G0", "80", False))),
    CnpCase("admin-priority", "CNPAdminTierPriorityField: Deny slytherin to and from gryffindor, respecting the "
            "admin policy of priority 50 over the Pass at 60", ("admin_tier/standard-priority-field.yaml",),
            blocked=(("S", "G", ALL), ("G", "S", ALL)),
            pokes=(("S0", "G0", "80", False), ("S1", "G0", "8080", False), ("G0", "S0", "80", False),
                   ("G1", "S0", "8080", False))),
    CnpCase("admin-priority-updated", "CNPAdminTierPriorityField: the Pass policy's priority updated to 40, "
            "passing both directions to the Baseline Accept", ("admin_tier/standard-priority-field.yaml",),
            (set_field("old-priority-60-new-priority-40-example", ("spec", "priority"), 40),),
            pokes=(("S0", "G0", "80", True), ("S1", "G0", "8080", True), ("G0", "S0", "80", True),
                   ("G1", "S0", "8080", True))),
    CnpCase("admin-same-priority", "CNPAdminTierSamePriority: three policies of one priority deny in both "
            "directions, none applied to another's subject, none to unmatched traffic",
            ("admin_tier/standard-same-priority.yaml",),
            blocked=(("S", "G", "80"), ("G", "S", "80"), ("H", "G", "80"), ("G", "H", "80"), ("S", "H", "8080"),
                     ("H", "S", "8080")),
            pokes=(("S0", "G0", "80", False), ("G0", "S0", "80", False), ("H0", "G0", "80", False),
                   ("G1", "H0", "80", False), ("S1", "H0", "8080", False), ("H1", "S0", "8080", False),
                   ("S0", "G0", "8080", True), ("G0", "S0", "8080", True), ("S1", "H0", "80", True),
                   ("H0", "S0", "80", True), ("R0", "G0", "80", True), ("G1", "R0", "80", True))),
    CnpCase("admin-pod-selectors", "CNPAdminTierPodSelector: pod selectors in egress peers, ingress peers and "
            "the subject", ("admin_tier/standard-pod-selector-rules.yaml",),
            blocked=POD_SELECTORS, pokes=POD_SELECTOR_POKES, departs=POD_SELECTORS_ON_CILIUM,
            note=POD_SELECTOR_NOTE),
    CnpCase("admin-np-baseline", "CNPAdminTierIntegration: Deny traffic from and to slytherin respecting the "
            "admin policy over the NetworkPolicy and the Baseline", (INTEGRATION,),
            blocked=(("G", ALL, ALL), (ALL, "G", ALL)),
            pokes=(("S0", "G0", "80", False), ("S1", "G0", "8080", False), ("G0", "S0", "80", False),
                   ("G1", "S0", "8080", False))),
    CnpCase("admin-pass-to-networkpolicy", "CNPAdminTierIntegration: 'pass-ingress' and 'pass-egress' respect the "
            "NetworkPolicy's match", (INTEGRATION,),
            (set_field("pass-example", ("spec", "ingress", 0, "action"), "Pass"),
             set_field("pass-example", ("spec", "egress", 0, "action"), "Pass")),
            blocked=(("G", "G H R", ALL), ("G H R", "G", ALL)),
            pokes=(("S0", "G0", "80", True), ("S1", "G0", "8080", True), ("G0", "S0", "80", True),
                   ("G1", "S0", "8080", True))),
    CnpCase("admin-pass-to-baseline", "CNPAdminTierIntegration: 'pass-ingress' and 'pass-egress' respect the "
            "Baseline's match once the NetworkPolicy is deleted", (INTEGRATION,),
            (set_field("pass-example", ("spec", "ingress", 0, "action"), "Pass"),
             set_field("pass-example", ("spec", "egress", 0, "action"), "Pass"),
             drop("NetworkPolicy", "allow-gress-from-to-slytherin-to-gryffindor")),
            blocked=(("S", "G", ALL), ("G", "S", ALL)),
            pokes=(("S0", "G0", "80", False), ("S1", "G0", "8080", False), ("G0", "S0", "80", False),
                   ("G1", "S0", "8080", False))),
    CnpCase("admin-networks-deny", "CNPAdminTierEgressInlineCIDRPeers: 'deny-egress' for a networks peer "
            "(0.0.0.0/0 and ::/0, which the API says hold every pod address)",
            ("admin_tier/standard-egress-inline-cidr-rules.yaml",),
            blocked=(("G", "G H R", ALL),),
            pokes=(("G1", "R0", "80", False), ("G1", "H0", "80", False), ("G1", "S0", "80", True)),
            departs=(("G", "G H R", ALL),),
            note="Cilium: a CIDR selects no pod (policy-cidr-match-mode without pods), so the Deny stops nothing"),
    # ---- Baseline tier (conformance/tests/baseline-admin-network-policy-standard-*.go)
    CnpCase("baseline-ingress-tcp", "CNPBaselineTierIngressTCP: 'allow-ingress' for TCP, rule ordering respected; "
            "at the specified port; egress not affected; 'deny-ingress' at the specified port",
            ("baseline_tier/standard-ingress-tcp-rules.yaml",),
            blocked=(("S", "G", "80"), ("H", "G", "8080 5353/udp")),
            pokes=(("R0", "G0", "80", True), ("R1", "G0", "8080", True), ("H0", "G1", "80", True),
                   ("H1", "G1", "8080", False), ("G0", "R0", "80", True), ("G1", "S0", "80", True),
                   ("S0", "G0", "80", False), ("S1", "G0", "8080", True))),
    CnpCase("baseline-egress-udp", "CNPBaselineTierEgressUDP: 'allow-egress' for UDP, rule ordering respected; at "
            "the specified port; 'deny-egress' at the specified port (served through v1alpha2)",
            ("baseline_tier/standard-egress-udp-rules.yaml",), (as_v1alpha2,),
            blocked=(("H", "S", "5353/udp"), ("H", "G", ALL)),
            pokes=(("H1", "R0", "5353/udp", True), ("H1", "G1", "5353/udp", False),
                   ("H0", "S0", "5353/udp", False))),
    CnpCase("baseline-pod-selectors", "CNPBaselineTierPodSelector: pod selectors in egress peers, ingress peers "
            "and the subject", ("baseline_tier/standard-pod-selector-rules.yaml",),
            blocked=POD_SELECTORS, pokes=POD_SELECTOR_POKES, departs=POD_SELECTORS_ON_CILIUM,
            note=POD_SELECTOR_NOTE),
    # ---- What the suite leaves out
    CnpCase("np-then-baseline", "a NetworkPolicy selects harry-potter-0 for ingress: it decides there, the "
            "Baseline (Accept ravenclaw, Deny the rest) decides for harry-potter-1",
            extra=(netpol("G", "g0-from-gryffindor", {"podSelector": {"matchLabels": {"conformance-role": "guarded"}},
                                                      "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}),
                   cnp("baseline-gryffindor", "Baseline", 10, {"namespaces": house("G")},
                       ingress=[{"name": "accept-ravenclaw", "action": "Accept", "from": [{"namespaces": house("R")}]},
                                {"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}])),
            blocked=(("S H R", "G0", ALL), ("S H G0", "G1", ALL)),
            departs=(("R", "G0", ALL),),
            note="Cilium: the Baseline Accept also opens what harry-potter-0's NetworkPolicy leaves closed"),
    CnpCase("egress-accept-ingress-networkpolicy", "an Admin egress Accept to ravenclaw leaves ravenclaw's ingress "
            "to its NetworkPolicy (deny all)",
            extra=(cnp("gryffindor-to-ravenclaw", "Admin", 5, {"namespaces": house("G")},
                       egress=[{"name": "accept-ravenclaw", "action": "Accept", "to": [{"namespaces": house("R")}]}]),
                   netpol("R", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})),
            blocked=((ALL, "R", ALL),)),
    CnpCase("namespace-expressions", "matchExpressions in subjects and peers: In / NotIn over namespaces, "
            "DoesNotExist / In over pods",
            extra=(cnp("gryffindor-hufflepuff-8080", "Admin", 5,
                       {"namespaces": {"matchExpressions": [{"key": HOUSE_LABEL, "operator": "In",
                                                             "values": ["gryffindor", "hufflepuff"]}]}},
                       ingress=[{"action": "Deny", "from": [{"namespaces": {"matchExpressions": [
                           {"key": HOUSE_LABEL, "operator": "NotIn", "values": ["gryffindor", "hufflepuff"]}]}}],
                                 "protocols": [{"tcp": {"destinationPort": {"number": 8080}}}]}]),
                   cnp("ravenclaw-without-role", "Baseline", 5,
                       {"pods": {"namespaceSelector": house("R"), "podSelector": {"matchExpressions": [
                           {"key": "conformance-role", "operator": "DoesNotExist"}]}}},
                       egress=[{"action": "Deny", "to": [{"pods": {
                           "namespaceSelector": {"matchExpressions": [{"key": HOUSE_LABEL, "operator": "Exists"}]},
                           "podSelector": {"matchExpressions": [{"key": HOUSE_LABEL, "operator": "In",
                                                                 "values": ["slytherin"]}]}}}],
                                "protocols": [{"udp": {"destinationPort": {"number": 5353}}}]}])),
            blocked=(("S R", "G H", "8080"), ("R1", "S", "5353/udp")), departs=(("G H", "G H", "8080"),),
            note="Cilium: a namespaces peer of NotIn only matches every pod (the cluster's aggregate identity "
                 "has no namespace labels), so the Deny stops gryffindor and hufflepuff too"),
    CnpCase("nodes-peer", "an Admin policy with a nodes peer (experimental): its Deny to slytherin applies",
            extra=(cnp("gryffindor-nodes", "Admin", 5, {"namespaces": house("G")},
                       egress=[{"name": "deny-slytherin", "action": "Deny", "to": [{"namespaces": house("S")}]},
                               {"name": "accept-nodes", "action": "Accept", "to": [{"nodes": {}}],
                                "protocols": [{"tcp": {"destinationPort": {"number": 6443}}}]}]),),
            blocked=(("G", "S", ALL),), departs=(("G", "S", ALL),),
            note="Cilium refuses the whole policy (node selector labels are off): none of its rules apply"),
    CnpCase("domain-names-peer", "an Admin policy with a domainNames peer (experimental): its Deny to slytherin "
            "applies", extra=(cnp("gryffindor-domains", "Admin", 5, {"namespaces": house("G")},
                                  egress=[{"name": "deny-slytherin", "action": "Deny",
                                           "to": [{"namespaces": house("S")}]},
                                          {"name": "accept-example", "action": "Accept",
                                           "to": [{"domainNames": ["example.com"]}]}]),),
            blocked=(("G", "S", ALL),), departs=(("G", "S", ALL),),
            note="Cilium refuses the whole policy (its L7 proxy is off): none of its rules apply"),
    CnpCase("same-priority-tie", "two Admin policies of one priority, Accept and Deny for the same traffic: "
            "undefined by the API; Cilium applies the Deny, and so does the engine",
            extra=(cnp("tie-accept", "Admin", 20, {"namespaces": house("G")},
                       ingress=[{"action": "Accept", "from": [{"namespaces": house("R")}]}]),
                   cnp("tie-deny", "Admin", 20, {"namespaces": house("G")},
                       ingress=[{"action": "Deny", "from": [{"namespaces": house("R")}]}])),
            blocked=(("R", "G", ALL),)),
)

# The dataplane each test lane runs, as the engine names it (DATAPLANES); the
# kube-router lane does not enforce ClusterNetworkPolicy.
LANE_DATAPLANES = {"cilium": "cilium"}
