"""Flow files read as users hand them over: Hubble's JSON (a real recording
from the Cilium lane), Calico's Felix flow logs and Goldmane's flows
(tests/fixtures/flows/README.md says where each shape comes from)."""

from pathlib import Path

import pytest

from cluster.errors import ManifestError
from cluster.policy.flows.formats import FlowFile
from cluster.policy.flows.model import Peer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows"


def read(name):
    ff = FlowFile(FIXTURES / name)
    return ff, list(ff)


def test_hubble_json_keeps_connections_and_counts_the_rest():
    ff, flows = read("hubble-observe.jsonl")
    assert ff.formats == {"hubble": 9}
    # The policy-verdict notice, the SYN-ACK reply, the reply packet are not connections.
    assert ff.skipped == {"policy-verdict notices (the same packet's trace or drop is counted)": 2,
                          "replies (the answer of a connection already counted)": 1,
                          "TCP packets after the SYN (the connection is counted once)": 1}
    drop = next(f for f in flows if f.verdict == "dropped" and f.protocol == "TCP")
    assert (str(drop.src), str(drop.dst), drop.port) == (
        "dashi-serving/titiler-b57f6c586-2g9lt", "dashi-catalog/stac-fastapi-fd779d8f4-fc9lx", 8080)
    assert drop.drop_reason == "policy_denied egress"
    # The pod's own labels, not Cilium's namespace, service-account or named-port labels.
    assert drop.src.label_map == {"app.kubernetes.io/component": "tiles", "app.kubernetes.io/name": "titiler",
                                  "app.kubernetes.io/part-of": "dashi", "dashi.io/s3-client": "true",
                                  "dashi.io/ui": "true"}
    kinds = {(f.src.kind, f.dst.kind) for f in flows}
    # The node that runs the API server: the node as a source, the API server as a destination.
    assert ("host-apiserver", "pod") in kinds and ("pod", "host-apiserver") in kinds
    icmp = next(f for f in flows if f.protocol == "ICMPv6")
    assert icmp.port is None and icmp.src.kind == "unknown"


def test_felix_flow_logs():
    ff, flows = read("calico-flows.log")
    assert ff.formats == {"calico (Felix flow logs)": 5}
    first = flows[0]
    assert (first.src.kind, first.src.namespace, first.src.name) == ("pod", "dashi-serving", "titiler-b57f6c586-*")
    assert first.src.label_map["app.kubernetes.io/name"] == "titiler"
    assert (first.port, first.protocol, first.verdict, first.count, first.time) == (8080, "TCP", "forwarded", 12,
                                                                                    1765137600.0)
    assert flows[2].protocol == "UDP" and flows[2].dst.label_map == {"pod-template-hash": "6fc9", "k8s-app": "kube-dns"}
    assert flows[3].protocol == "TCP" and flows[3].src.labels == ()  # proto "6"; labels left out
    assert flows[4].src == Peer("world") and flows[4].verdict == "dropped"


def test_goldmane_flows():
    ff, flows = read("goldmane-flows.jsonl")
    assert ff.formats == {"calico (Goldmane)": 2}
    assert [(f.src.namespace, f.dst.namespace, f.port, f.protocol, f.verdict, f.count) for f in flows] == [
        ("dashi-serving", "dashi-catalog", 8080, "TCP", "forwarded", 7),
        ("dashi-data", "dashi-catalog", 8080, "TCP", "forwarded", 3)]


@pytest.mark.parametrize("text, why", [
    ('{"flow": {}}\nnot json\n', "line 2: not JSON"),
    ('[1, 2]\n', "line 1: expected a JSON object, found list"),
    ('{"hello": "world"}\n', "line 1: neither a Hubble flow (hubble observe -o json) nor a Calico flow log"),
    ('{"source_namespace": "a", "action": "allow", "dest_port": "x"}\n', "line 1: a field has the wrong type"),
])
def test_bad_lines_name_the_file_and_the_line(tmp_path, text, why):
    f = tmp_path / "flows.json"
    f.write_text(text)
    with pytest.raises(ManifestError) as e:
        list(FlowFile(f))
    assert str(e.value).startswith(f"{f}: {why}")


def test_unreadable_and_binary_files(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        list(FlowFile(tmp_path / "missing.json"))
    f = tmp_path / "bin.json"
    f.write_bytes(b'{"flow": {}}\n\xff\xfe\n')
    with pytest.raises(ManifestError, match="not UTF-8"):
        list(FlowFile(f))
