"""ClusterNetworkPolicy (v1beta1 and v1alpha2) with NetworkPolicy, as truth
tables over the x/y/z universe ("default plus exceptions", both paths held
to each other by ``check``), and the verdicts that name the deciding tier,
policy, priority and rule."""

from __future__ import annotations

import pytest
from support.engine_builders import (
    ALLOWED,
    CONTAINER_PORTS,
    PODS,
    PODS_WITH_IPS,
    assert_paths_agree,
    assert_ranges_agree,
    check,
    cnp,
    cnp_rule,
    external,
    labels,
    make_namespaces,
    make_pods,
    named_port,
    namespaces_peer,
    netpol,
    networks_peer,
    ns_named,
    ns_subject,
    pairs,
    pod_peer,
    pods_peer,
    pods_subject,
    proto,
    to_rule,
    verdict,
)

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import HOST, Port

X = ns_named("x")
Y = ns_named("y")


def admin(name, priority, subject, **rules):
    return cnp(name, "Admin", priority, subject, **rules)


def baseline(name, priority, subject, **rules):
    return cnp(name, "Baseline", priority, subject, **rules)


def test_admin_deny_beats_a_networkpolicy_that_allows():
    policies = [netpol("x", "allow-all", {}, ingress=[{}]),
                admin("guard", 10, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)], name="no-y")])]
    e = check(policies, 80, default=ALLOWED, exceptions=pairs("y/*", "x/*"))
    v = verdict(e, "y/a", "x/b", 80)
    assert v.ingress.line("y/a", 80, "TCP") == \
        "ingress of x/b: DENIED by ClusterNetworkPolicy guard (Admin, priority 10) rule 1 'no-y'"
    assert (v.ingress.tier, v.ingress.selecting) == ("Admin", ("ClusterNetworkPolicy guard",))


def test_admin_accept_beats_a_networkpolicy_that_denies_but_not_the_other_side():
    policies = [netpol("x", "deny-in", {}, ingress=[]), netpol("y", "deny-out", labels(pod="b"), egress=[]),
                admin("open", 5, ns_subject(X), ingress=[cnp_rule("Accept", [namespaces_peer(Y)])])]
    # y -> x is accepted at x's ingress, except from y/b, whose own egress is denied.
    check(policies, 80, default=ALLOWED,
          exceptions=pairs(["x/*", "z/*"], "x/*") | pairs("y/b", "*"))


def test_pass_hands_the_direction_to_the_networkpolicy_tier_then_the_baseline():
    np_x = netpol("x", "from-y-only", labels(pod="a"), ingress=[{"from": [{"namespaceSelector": Y}]}])
    guard = admin("pass-y", 5, ns_subject(X), ingress=[cnp_rule("Pass", [namespaces_peer(Y)]),
                                                      cnp_rule("Deny", [namespaces_peer({})])])
    base = baseline("base", 1, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)], proto("TCP", 80))])
    # x/a: y passes to its NetworkPolicy (allowed); x/b, x/c: y passes, no
    # NetworkPolicy, the Baseline denies 80 and 81 stays the default allow.
    e80 = check([np_x, guard, base], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/*") |
                pairs("y/*", ["x/b", "x/c"]))
    check([np_x, guard, base], 81, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/*"))
    line = verdict(e80, "y/a", "x/a", 80).ingress.line("y/a", 80, "TCP")
    assert line == ("ingress of x/a: passed on by ClusterNetworkPolicy pass-y (Admin, priority 5) rule 1; "
                    "then allowed by x/from-y-only ingress rule 1")


def test_a_pod_a_networkpolicy_selects_is_decided_there_not_by_the_baseline():
    np_x = netpol("x", "from-x", labels(pod="a"), ingress=[{"from": [pod_peer({})]}])
    base = baseline("base", 10, ns_subject(X), ingress=[cnp_rule("Accept", [namespaces_peer(Y)]),
                                                        cnp_rule("Deny", [namespaces_peer({})])])
    api = check([np_x, base], 80, default=ALLOWED,
                exceptions=pairs(["y/*", "z/*"], "x/a") | pairs(["z/*", "x/a", "x/c"], "x/b")
                | pairs(["z/*", "x/a", "x/b"], "x/c"))
    assert api.evaluate(PODS["y/a"], PODS["x/b"], 80).ingress.decided_by.startswith("ClusterNetworkPolicy base")
    # Cilium v1.20.2 lets the Baseline Accept open what x/a's NetworkPolicy leaves closed.
    cilium = Engine(make_namespaces(), [np_x, base], dataplane="cilium")
    assert cilium.evaluate(PODS["y/a"], PODS["x/a"], 80).allowed
    assert not cilium.evaluate(PODS["z/a"], PODS["x/a"], 80).allowed
    assert "Cilium" in cilium.evaluate(PODS["y/a"], PODS["x/a"], 80).ingress.decided_by
    assert_paths_agree(cilium, make_pods())


def test_an_egress_accept_leaves_the_destinations_ingress_to_be_decided():
    policies = [admin("out", 1, ns_subject(X), egress=[to_rule("Accept", [namespaces_peer(Y)])]),
                netpol("y", "deny-in", labels(pod="a"), ingress=[])]
    e = check(policies, 80, default=ALLOWED, exceptions=pairs("*", "y/a"))
    v = verdict(e, "x/a", "y/a", 80)
    assert v.egress.allowed and v.egress.decided_by and not v.ingress.allowed


@pytest.mark.parametrize("first", ["deny", "accept"])
def test_lower_priority_first_then_rule_order(first):
    deny = admin("deny-y", 10 if first == "deny" else 20, ns_subject(X),
                 ingress=[cnp_rule("Deny", [namespaces_peer(Y)])])
    accept = admin("accept-y", 20 if first == "deny" else 10, ns_subject(X),
                   ingress=[cnp_rule("Accept", [namespaces_peer(Y)])])
    base_deny = baseline("deny-all", 1, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer({})])])
    want = pairs(["x/*", "z/*"], "x/*") | (pairs("y/*", "x/*") if first == "deny" else frozenset())
    check([deny, accept, base_deny], 80, default=ALLOWED, exceptions=want)
    one = admin("one", 10, ns_subject(X), ingress=[cnp_rule(a, [namespaces_peer(Y)]) for a in
                                                   (("Deny", "Accept") if first == "deny" else ("Accept", "Deny"))])
    check([one, base_deny], 80, default=ALLOWED, exceptions=want)


def test_same_priority_ties_follow_cilium_and_are_flagged():
    """Undefined by the API: Cilium gives rule i priority + i/100, so rule 1
    of every tied policy comes first, and at one level Deny, then Accept."""
    a = admin("a-accept", 7, ns_subject(X), ingress=[cnp_rule("Accept", [namespaces_peer(Y)])])
    b = admin("b-deny", 7, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer({"matchLabels": {"none": "x"}})]),
                                                   cnp_rule("Deny", [namespaces_peer(Y)])])
    c = admin("c-deny", 7, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)])])
    e = check([a, b], 80, default=ALLOWED)  # a's rule 1 comes before b's rule 2
    v = verdict(e, "y/a", "x/a", 80).ingress
    assert v.decided_by.startswith("ClusterNetworkPolicy a-accept") and v.tied == ("ClusterNetworkPolicy b-deny (Deny)",)
    assert v.undefined and "the API leaves their order undefined" in v.line("y/a", 80, "TCP")
    e = check([a, c], 80, default=ALLOWED, exceptions=pairs("y/*", "x/*"))  # one level: Deny first
    assert "c-deny" in verdict(e, "y/a", "x/a", 80).ingress.decided_by
    found = e.overlaps(make_pods())
    assert len(found) == 1 and "a-accept" in found[0] and "Deny vs Accept" in found[0]
    same = admin("d-deny", 7, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)])])
    assert "both Deny" in Engine(make_namespaces(), [c, same]).overlaps(make_pods())[0]
    assert not verdict(Engine(make_namespaces(), [c, same]), "y/a", "x/a", 80).ingress.undefined


def test_disjoint_same_priority_policies_do_not_overlap():
    a = admin("x-from-y", 7, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)], proto("TCP", 80))])
    b = admin("x-from-z", 7, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(ns_named("z"))])])
    c = admin("y-from-x", 7, ns_subject(Y), ingress=[cnp_rule("Deny", [namespaces_peer(X)])])
    assert Engine(make_namespaces(), [a, b, c]).overlaps(make_pods()) == []


def test_pods_subject_and_peers_with_expressions():
    subject = pods_subject({"matchExpressions": [{"key": "ns", "operator": "In", "values": ["x", "y"]}]},
                           {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]})
    peer = pods_peer({"matchExpressions": [{"key": "ns", "operator": "Exists"}]}, labels(pod="c"))
    check([admin("c-not-in", 1, subject, ingress=[cnp_rule("Deny", [peer])])], 80, default=ALLOWED,
          exceptions=pairs("*/c", ["x/a", "x/b", "y/a", "y/b"]))


def test_protocols_numbers_ranges_and_named_ports():
    p = admin("ports", 1, ns_subject(X), ingress=[
        cnp_rule("Deny", [namespaces_peer(Y)], proto("TCP", 80), proto("UDP", 81, 90), named_port("serve-81-sctp"))])
    blocked = pairs("y/*", "x/*")
    check([p], 80, "TCP", default=ALLOWED, exceptions=blocked)
    check([p], 81, "TCP", default=ALLOWED)
    check([p], 81, "UDP", default=ALLOWED, exceptions=blocked)
    check([p], 80, "UDP", default=ALLOWED)
    check([p], 81, "SCTP", default=ALLOWED, exceptions=blocked)
    check([p], 80, "SCTP", default=ALLOWED)
    assert_ranges_agree(Engine(make_namespaces(), [p]), make_pods())


def test_networks_match_pod_addresses_and_outside_endpoints_and_cilium_departs():
    out = external("outside", "198.51.100.7")
    api_server = external("api", "192.0.2.10")
    api_server = api_server.__class__(**{**api_server.__dict__, "address_service": "default/kubernetes"})
    pods = list(PODS_WITH_IPS.values())
    p = admin("no-world", 1, ns_subject(X), egress=[to_rule("Accept", [networks_peer("10.42.0.4/32")]),
                                                    to_rule("Deny", [networks_peer("0.0.0.0/0")])])
    e = check([p], 80, default=ALLOWED, exceptions=pairs("x/*", "*") - pairs("x/*", "y/a"), pods=pods)
    assert not e.evaluate(pods[0], out, 80).allowed and not e.evaluate(pods[0], api_server, 443).allowed
    check([p], 80, default=ALLOWED, pods=make_pods())  # addresses unknown: no pod matches
    cilium = Engine(make_namespaces(), [p], dataplane="cilium")
    assert cilium.evaluate(pods[0], pods[5], 80).allowed  # no pod is in a CIDR on Cilium
    assert not cilium.evaluate(pods[0], out, 80).allowed
    assert cilium.evaluate(pods[0], api_server, 443).allowed  # a /0 is Cilium's world: not the API server
    halves = admin("halves", 1, ns_subject(X), egress=[to_rule("Deny", [networks_peer("0.0.0.0/1", "128.0.0.0/1")])])
    assert not Engine(make_namespaces(), [halves], dataplane="cilium").evaluate(pods[0], api_server, 443).allowed
    assert_paths_agree(cilium, pods + [out, api_server])


def test_nodes_and_domain_names_are_read_reported_and_match_nothing():
    p = admin("mixed", 1, ns_subject(X), egress=[
        to_rule("Deny", [namespaces_peer(Y)], name="no-y"),
        to_rule("Accept", [{"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}], proto("TCP", 6443)),
        to_rule("Accept", [{"domainNames": ["example.com", "*.example.org"]}], name="web")])
    api = Engine(make_namespaces(), [p])
    assert [n.split(":")[0] for n in api.notes] == ["ClusterNetworkPolicy mixed egress rule 2",
                                                    "ClusterNetworkPolicy mixed egress rule 3 'web'"]
    assert all("not modelled" in n for n in api.notes)
    check([p], 80, default=ALLOWED, exceptions=pairs("x/*", "y/*"))
    cilium = Engine(make_namespaces(), [p], dataplane="cilium")
    assert cilium.cluster_policies == [] and "refused whole by Cilium" in cilium.notes[0]
    assert "node selector labels are disabled" in cilium.notes[0] and "L7 proxy is disabled" in cilium.notes[0]
    assert cilium.evaluate(PODS["x/a"], PODS["y/a"], 80).allowed


def test_the_node_reaches_its_pods_whatever_the_admin_tier_says():
    p = admin("deny-all", 1, ns_subject({}), ingress=[cnp_rule("Deny", [namespaces_peer({})])])
    e = Engine(make_namespaces(), [p])
    assert all(e.evaluate(HOST, ep, 80).allowed for ep in PODS.values())
    assert_paths_agree(e, [HOST, *PODS.values()])


def test_v1alpha2_and_v1beta1_mean_the_same():
    rules = {"ingress": [cnp_rule("Deny", [namespaces_peer(Y)])]}
    beta = admin("p", 1, ns_subject(X), **rules)
    alpha = cnp("p", "Admin", 1, ns_subject(X), api="policy.networking.k8s.io/v1alpha2", **rules)
    for port in (80, 81):
        assert check([beta], port, default=ALLOWED, exceptions=pairs("y/*", "x/*")).policies == \
            check([alpha], port, default=ALLOWED, exceptions=pairs("y/*", "x/*")).policies


def test_rules_without_protocols_match_every_port_and_protocol():
    e = Engine(make_namespaces(), [admin("all", 1, ns_subject(X), ingress=[cnp_rule("Deny", [namespaces_peer(Y)])])])
    assert not any(e.evaluate(PODS["y/a"], PODS["x/a"], p.port, p.protocol).allowed for p in CONTAINER_PORTS)
    assert_ranges_agree(e, [*make_pods(), *[make_pods(ports={"x/a": (Port(None, 9999, "UDP"),)})[0]]][:9])


# Cilium v1.20.2 pkg/labelsfilter/filter_test.go TestDefaultFilterLabels: the
# k8s-source labels the default prefixes keep in an identity, and those they
# leave out (an include matching more of the key than the ignore wins).
IDENTITY_KEPT = ("io.kubernetes.pod.namespace", "app.kubernetes.io", "ioXkubernetes", "ignore", "ignorE",
                 "io.cilium.k8s.policy.cluster", "io.cilium.k8s.policy.serviceaccount", "id.lizards",
                 "id.lizards.k8s")
IDENTITY_LEFT_OUT = ("io.kubernetes.container.hash", "io.kubernetes.pod.name", "kubernetes.io.foo",
                     "beta.kubernetes.io.foo", "annotation.kubectl.kubernetes.io", "annotation.hello",
                     "io.kubernetes.pod.uid", "annotation.kubernetes.io/config.seen", "controller-revision-hash",
                     "statefulset.kubernetes.io/pod-name", "batch.kubernetes.io/job-completion-index",
                     "apps.kubernetes.io/pod-index", "topology.kubernetes.io/zone", "pod-template-hash")


def test_cilium_identity_labels_are_upstreams_default_filter():
    from cluster.policy.engine.cilium import identity_labels, in_identity

    assert [k for k in IDENTITY_KEPT if not in_identity(k)] == []
    assert [k for k in IDENTITY_LEFT_OUT if in_identity(k)] == []
    assert identity_labels({"app": "web", "pod-template-hash": "h1"}) == {"app": "web"}


def test_on_cilium_a_selector_on_a_label_identities_leave_out_matches_no_pod():
    pods = make_pods(labels={k: {"pod": k.split("/")[1], "statefulset.kubernetes.io/pod-name": k.replace("/", "-")}
                             for k in PODS})
    by_pod_name = labels(**{"statefulset.kubernetes.io/pod-name": "y-a"})
    policies = [admin("deny-y-a", 1, ns_subject(X), egress=[to_rule("Deny", [pods_peer({}, by_pod_name)])]),
                netpol("y", "only-b", by_pod_name, ingress=[])]
    check(policies, 80, default=ALLOWED, exceptions=pairs("*", "y/a"), pods=pods)
    cilium = Engine(make_namespaces(), policies, dataplane="cilium")
    assert all(cilium.evaluate(s, d, 80).allowed for s in pods for d in pods if s is not d)
    assert_paths_agree(cilium, pods)
    assert [n.split(":")[0] for n in cilium.notes] == ["y/only-b", "ClusterNetworkPolicy deny-y-a"]
    assert all("statefulset.kubernetes.io/pod-name, a label Cilium leaves out" in n for n in cilium.notes)
    assert Engine(make_namespaces(), policies).notes == []


def test_on_cilium_a_namespaces_peer_of_notin_only_matches_everything():
    not_y = {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}
    p = admin("deny-not-y", 1, ns_subject(X), egress=[to_rule("Deny", [namespaces_peer(not_y)], name="not-y")])
    check([p], 80, default=ALLOWED, exceptions=pairs("x/*", ["x/*", "z/*"]))
    cilium = Engine(make_namespaces(), [p], dataplane="cilium")
    out = external("outside", "198.51.100.7")
    assert not any(cilium.evaluate(PODS["x/a"], d, 80).allowed for d in [PODS["y/a"], PODS["z/b"], out])
    assert cilium.notes == ["ClusterNetworkPolicy deny-not-y egress rule 1 'not-y': a namespaces peer of NotIn / "
                            "DoesNotExist only, which Cilium matches with every pod and address: predicted so"]
    # With an In, Exists or matchLabels beside it the peer needs namespace labels: no departure.
    both = {"matchExpressions": [*not_y["matchExpressions"], {"key": "ns", "operator": "Exists"}]}
    q = admin("deny-not-y", 1, ns_subject(X), egress=[to_rule("Deny", [namespaces_peer(both)])])
    assert Engine(make_namespaces(), [q], dataplane="cilium").evaluate(PODS["x/a"], PODS["y/a"], 80).allowed
    assert_paths_agree(cilium, list(PODS.values()) + [out])
