"""The shared label selectors (cluster.selectors): one parser, one matcher,
one renderer, whichever layer asks."""

import pytest

from cluster import selectors
from cluster.errors import Invalid

LABELS = {"app": "web", "tier": "front"}


def expr(key, op, *values):
    return {"key": key, "operator": op, **({"values": list(values)} if values else {})}


@pytest.mark.parametrize("data, match", [
    (None, True), ({}, True),
    ({"matchLabels": {"app": "web"}}, True), ({"matchLabels": {"app": "db"}}, False),
    ({"matchExpressions": [expr("app", "In", "web", "db")]}, True),
    ({"matchExpressions": [expr("missing", "In", "x")]}, False),
    ({"matchExpressions": [expr("app", "NotIn", "web")]}, False),
    ({"matchExpressions": [expr("missing", "NotIn", "x")]}, True),  # without the key: NotIn matches
    ({"matchExpressions": [expr("tier", "Exists")]}, True), ({"matchExpressions": [expr("missing", "Exists")]}, False),
    ({"matchExpressions": [expr("tier", "DoesNotExist")]}, False),
    ({"matchExpressions": [expr("missing", "DoesNotExist")]}, True),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [expr("tier", "In", "back")]}, False),  # ANDed
])
def test_matching(data, match):
    assert selectors.parse(data).matches(LABELS) is match


@pytest.mark.parametrize("data, message", [
    ("app=web", "spec.podSelector must be a mapping"),
    ({"matchLabels": ["app"]}, "spec.podSelector.matchLabels must be a mapping"),
    ({"matchExpressions": {"key": "app"}}, "spec.podSelector.matchExpressions must be a list"),
    ({"matchLabels": {"app": 1}}, "spec.podSelector.matchLabels['app']: value 1 must be a string (quote it in YAML)"),
    ({"matchExpressions": [{"key": "app"}]}, "spec.podSelector.matchExpressions[0] needs key and operator"),
    ({"matchExpressions": [expr("app", "In")]}, "spec.podSelector.matchExpressions[0]: operator In needs values"),
    ({"matchExpressions": [expr("app", "Exists", "x")]},
     "spec.podSelector.matchExpressions[0]: operator Exists takes no values"),
    ({"matchExpressions": [expr("app", "Like", "x")]},
     "spec.podSelector.matchExpressions[0]: invalid operator 'Like' (In, NotIn, Exists, DoesNotExist)"),
    ({"matchExpressions": [expr("/app", "Exists")]},
     "spec.podSelector.matchExpressions[0]: key '/app': the prefix before '/' is empty"),
])
def test_invalid_selectors_say_which_field(data, message):
    with pytest.raises(Invalid) as err:
        selectors.parse(data, "spec.podSelector")
    assert str(err.value) == message


def test_the_string_form_means_what_the_structure_means():
    text = "app=web,tier!=back,zone in (a, b),env notin (prod),team,!legacy"
    structure = {"matchLabels": {"app": "web"}, "matchExpressions": [
        expr("tier", "NotIn", "back"), expr("zone", "In", "a", "b"), expr("env", "NotIn", "prod"),
        expr("team", "Exists"), expr("legacy", "DoesNotExist")]}
    parsed, text_form = selectors.parse(structure), selectors.parse_text(text)
    cases = [{}, {"app": "web"}, {"app": "web", "team": "t"}, {"app": "web", "team": "t", "zone": "a"},
             {"app": "web", "team": "t", "zone": "b", "tier": "back"}, {"app": "web", "team": "t", "zone": "a", "legacy": ""},
             {"app": "web", "team": "t", "zone": "a", "env": "dev"}, {"app": "web", "team": "t", "zone": "a", "env": "prod"}]
    assert [text_form.matches(c) for c in cases] == [parsed.matches(c) for c in cases]
    assert [parsed.matches(c) for c in cases] == [False, False, False, True, False, False, True, False]
    with pytest.raises(Invalid, match="cannot read '!app=web'"):
        selectors.parse_text("!app=web")


def test_rendering_and_display_write_each_requirement_alike():
    data = {"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [expr("z", "NotIn", "y", "x"), expr("e", "DoesNotExist"), expr("f", "Exists")]}
    assert selectors.render(data) == "a=1,b=2,z notin (x,y),!e,f"
    assert str(selectors.parse(data)) == "{a=1, b=2, z notin (x,y), !e, f}"
    assert selectors.render(None) is None and selectors.render({}) is None
    assert str(selectors.parse({})) == "{} (all)"


def test_equality_text_round_trips():
    labels = {"k8s-app": "kube-dns", "a": "b"}
    assert selectors.equality_text(labels) == "a=b,k8s-app=kube-dns"
    assert selectors.parse_equality(selectors.equality_text(labels)) == labels
    assert selectors.equality_text({}) is None and selectors.parse_equality(None) == {}
    assert selectors.match_labels(labels) == {"matchLabels": labels}
    with pytest.raises(Invalid, match="'a!=b' is not key=value"):
        selectors.parse_equality("a!=b")
