"""ClusterNetworkPolicies the API server refuses, each with the one-line
message the engine gives (tests/policy/engine/test_cluster_policy_validation.py)
and whether the real API server refuses it too (tests/e2e/test_cnp_conformance_e2e.py,
where it is the oracle): a few checks are the engine's own (a namespace on a
cluster-scoped object; a selector's operator, which the CRD types as a string)."""

from __future__ import annotations

import copy

from support.engine_builders import cnp, cnp_rule, namespaces_peer, ns_named, ns_subject, proto, to_rule

GOOD = cnp("guard", "Admin", 10, ns_subject(ns_named("x")),
           ingress=[cnp_rule("Deny", [namespaces_peer(ns_named("y"))], proto("TCP", 80), name="deny-y")],
           egress=[to_rule("Accept", [{"networks": ["10.0.0.0/8"]}], proto("UDP", 53))])


def with_change(path: tuple, value):
    obj = copy.deepcopy(GOOD)
    node = obj
    for step in path[:-1]:
        node = node[step]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


PEERS = [namespaces_peer({})]
BAD = [
    (("apiVersion",), "policy.networking.k8s.io/v1alpha1",
     r"apiVersion 'policy.networking.k8s.io/v1alpha1' does not serve ClusterNetworkPolicy \(the CRD serves "
     r"policy.networking.k8s.io/v1alpha2 and policy.networking.k8s.io/v1beta1\)"),
    (("metadata", "namespace"), "x", "metadata.namespace 'x': a ClusterNetworkPolicy is cluster-scoped"),
    (("metadata", "name"), "Guard", "metadata.name 'Guard' must be a DNS subdomain"),
    (("spec", "tier"), "Middle", "spec.tier: must be Admin or Baseline, got 'Middle'"),
    (("spec", "priority"), 1001, "spec.priority: 1001 is out of range 0-1000"),
    (("spec", "subject"), KeyError, "spec: missing required field subject"),
    (("spec", "subject"), {"namespaces": {}, "pods": {"podSelector": {}}},
     "spec.subject: exactly one of namespaces, pods must be set, got namespaces, pods"),
    (("spec", "subject"), {}, "spec.subject: exactly one of namespaces, pods must be set, got none"),
    (("spec", "ingress"), [cnp_rule("Deny", PEERS)] * 26, "spec.ingress: must have at most 25 items, got 26"),
    (("spec", "ingress", 0, "from"), PEERS * 26, r"spec.ingress\[0\].from: must have at most 25 items, got 26"),
    (("spec", "ingress", 0, "from"), [], r"spec.ingress\[0\].from: must have at least 1 item\(s\), got 0"),
    (("spec", "ingress", 0, "from"), KeyError, r"spec.ingress\[0\]: missing required field from"),
    (("spec", "ingress", 0, "action"), "Allow", r"spec.ingress\[0\].action: must be Accept or Deny or Pass"),
    (("spec", "ingress", 0, "name"), "n" * 101, r"spec.ingress\[0\].name: 'n{101}' must be 0-100 characters long"),
    (("spec", "ingress", 0, "from", 0), {"networks": ["10.0.0.0/8"]},
     r"spec.ingress\[0\].from\[0\]: unknown field 'networks'"),
    (("spec", "ingress", 0, "from", 0), {},
     r"spec.ingress\[0\].from\[0\]: exactly one of namespaces, pods must be set, got none"),
    (("spec", "ingress", 0, "protocols"), [], r"spec.ingress\[0\].protocols: must have at least 1 item\(s\), got 0"),
    (("spec", "ingress", 0, "protocols", 0), {"tcp": {"destinationPort": {"number": 80}}, "udp": {}},
     r"spec.ingress\[0\].protocols\[0\]: exactly one of destinationNamedPort, sctp, tcp, udp must be set, "
     "got tcp, udp"),
    (("spec", "ingress", 0, "protocols", 0), {"tcp": {}},
     r"spec.ingress\[0\].protocols\[0\].tcp: at least one of destinationPort must be set"),
    (("spec", "ingress", 0, "protocols", 0, "tcp", "destinationPort"), {"number": 80, "range": {"start": 1, "end": 2}},
     r"destinationPort: exactly one of number, range must be set"),
    (("spec", "ingress", 0, "protocols", 0, "tcp", "destinationPort"), {"number": 0},
     r"spec.ingress\[0\].protocols\[0\].tcp.destinationPort.number: 0 is out of range 1-65535"),
    (("spec", "ingress", 0, "protocols", 0, "tcp", "destinationPort"), {"range": {"start": 90, "end": 80}},
     r"spec.ingress\[0\].protocols\[0\].tcp.destinationPort.range: Start port must be less than End port "
     r"\(start 90, end 80\)"),
    (("spec", "ingress", 0, "protocols", 0, "tcp", "destinationPort"), {"range": {"start": 80, "end": 80}},
     "Start port must be less than End port"),
    (("spec", "egress", 0, "to", 0, "networks"), ["10.1.2.3/8"],
     r"spec.egress\[0\].to\[0\].networks\[0\]: Invalid CIDR format provided: '10.1.2.3/8' has host bits set "
     r"\(the CRD wants the masked form, 10.0.0.0/8\)"),
    (("spec", "egress", 0, "to", 0, "networks"), ["10.0.0.1"], "has no prefix length"),
    (("spec", "egress", 0, "to", 0, "networks"), ["nope/8"], "'nope/8' is not a CIDR"),
    (("spec", "egress", 0, "to", 0, "networks"), ["10.0.0.0/8", "10.0.0.0/8"],
     r"spec.egress\[0\].to\[0\].networks: duplicate items"),
    (("spec", "egress", 0, "to", 0, "networks"), ["10.0.0.0/8"] * 26, "must have at most 25 items, got 26"),
    (("spec", "egress", 0, "protocols"), [{"destinationNamedPort": "dns"}],
     r"spec.egress\[0\]: networks/nodes/domainNames peer cannot be set with namedPorts"),
    (("spec", "egress", 0, "to", 0), {"domainNames": ["-bad-.example"]}, r"domainNames\[0\]: '-bad-.example' does not match"),
    (("spec", "egress", 0, "to", 0), {"nodes": {}, "networks": ["10.0.0.0/8"]},
     "exactly one of domainNames, namespaces, networks, nodes, pods must be set, got nodes, networks"),
    (("spec", "extra"), 1, "spec: unknown field 'extra'"),
    (("spec", "ingress", 0, "from", 0, "namespaces"), {"matchExpressions": [{"key": "a", "operator": "Is"}]},
     r"spec.ingress\[0\].from\[0\].namespaces.matchExpressions\[0\]"),
]

# The checks only the engine makes (the API server accepts these).
ENGINE_ONLY = ("metadata.namespace 'x'", "namespaces.matchExpressions")
