"""The snapshot store and the step record: atomic, checksummed, refused when damaged."""

from __future__ import annotations

import os

import pytest
import yaml

from cluster.errors import SnapshotError, StateError
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.live.record.snapshots import SnapshotStore, steps_held
from cluster.live.record.policies import canonical_spec, clean_policy, is_ours, mark_ours, same_policy
from cluster.live.record.identity import ClusterIdentity, ClusterState
from cluster.live.record.steprecord import InProgress, Phase, RecordStore, StepEntry, StepRecord
from cluster.live.record.files import atomic_write, context_slug

OURS = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def policy(name, ns="team", labels=None, spec=None, **meta):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {}), **meta},
            "spec": spec if spec is not None else {"podSelector": {}, "policyTypes": ["Ingress"]}}


def live(obj):
    """What the API server hands back: server fields added."""
    out = {**obj, "metadata": {**obj["metadata"], "uid": "u-1", "resourceVersion": "7", "generation": 1,
                               "creationTimestamp": "2025-01-01T00:00:00Z",
                               "managedFields": [{"manager": "dashi-cluster"}]}}
    return out


class Lab:
    """The smallest profile the store needs: a name, its namespaces, steps."""

    class Step:
        def __init__(self, name, objects):
            self.name, self.objects = name, objects

    name = "lab"
    profile_namespaces = ["team"]

    def __init__(self):
        self.steps = [self.Step("default-deny", [policy("mine")]),
                      self.Step("allow-dns", [policy("dns", spec={"podSelector": {}, "policyTypes": ["Egress"]})])]

    def policies_through(self, k):
        return [o for s in self.steps[:k] for o in s.objects]


LAB = Lab()


def save(store, policies, before="allow-dns"):
    return store.save(profile=LAB, context="k3d-lab", server="https://0.0.0.0:1", taken_before=before,
                      live_policies=policies)


# -- files ------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "d" / "f.yaml"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["f.yaml"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.yaml"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # fails inside the write: the old file stays
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.yaml"]


def test_context_slugs_are_directory_names():
    assert context_slug("k3d-dashi") == "k3d-dashi"
    arn = context_slug("arn:aws:eks:eu-west-1:123:cluster/prod")
    assert "/" not in arn and ":" not in arn and arn.startswith("arn_aws_eks_eu-west-1_123_cluster_prod-")
    assert context_slug("a/b") != context_slug("a:b")


# -- policies ---------------------------------------------------------------


def test_clean_policy_drops_server_fields_and_kubectl_annotation():
    obj = live(policy("p", labels=OURS, annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                                     "dashi.io/step": "s"}))
    assert clean_policy(obj) == {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "team", "labels": OURS, "annotations": {"dashi.io/step": "s"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def test_mark_ours_adds_label_and_step_without_touching_the_input():
    src = policy("p", labels={"team": "a"})
    out = mark_ours(src, "allow-dns")
    assert out["metadata"]["labels"] == {"team": "a", **OURS}
    assert out["metadata"]["annotations"] == {"dashi.io/step": "allow-dns"}
    assert src["metadata"]["labels"] == {"team": "a"} and is_ours(out) and not is_ours(src)


def test_canonical_spec_fills_the_api_servers_defaults():
    manifest = {"podSelector": {}, "egress": [{"to": [{"podSelector": {"matchLabels": {"a": "b"}}}],
                                               "ports": [{"port": 53}]}]}
    served = {"podSelector": {}, "policyTypes": ["Egress", "Ingress"],
              "egress": [{"to": [{"podSelector": {"matchLabels": {"a": "b"}}}],
                          "ports": [{"port": 53, "protocol": "TCP"}]}]}
    assert canonical_spec(manifest) == canonical_spec(served)
    assert canonical_spec({"podSelector": {}}) == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}
    assert canonical_spec({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "UDP"}]}]}) != \
        canonical_spec({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})


def test_same_policy_compares_spec_labels_and_annotations():
    a = policy("p", labels=OURS)
    assert same_policy(a, live(a))
    assert not same_policy(a, policy("p", labels={}))
    assert not same_policy(a, policy("p", labels=OURS, spec={"podSelector": {"matchLabels": {"x": "y"}}}))


# -- the store ----------------------------------------------------------------


def test_save_and_load_round_trip_ours_and_foreign(tmp_path):
    store = SnapshotStore(tmp_path)
    info = save(store, [live(policy("mine", labels=OURS)), live(policy("theirs"))])
    assert (info.id, info.file, info.policies, info.foreign) == \
        ("0001-before-allow-dns", "0001-before-allow-dns.yaml", 1, 1)
    snap = store.load(info.id)
    assert [p["metadata"]["name"] for p in snap.policies] == ["mine"]
    assert [p["metadata"]["name"] for p in snap.foreign] == ["theirs"]
    assert "uid" not in snap.policies[0]["metadata"]
    assert snap.info.applied == ["default-deny"]
    text = (tmp_path / info.file).read_text()
    assert text.startswith("# dashi-cluster snapshot 0001-before-allow-dns\n")
    index = yaml.safe_load((tmp_path / "index.yaml").read_text())
    assert index["snapshots"][0]["sha256"] == info.sha256 and len(info.sha256) == 64


def test_a_snapshot_is_labelled_with_what_it_holds():
    mine = live(policy("mine", labels=OURS))
    dns = live(policy("dns", labels=OURS, spec={"podSelector": {}, "policyTypes": ["Egress"]}))
    changed = live(policy("mine", labels=OURS, spec={"podSelector": {"matchLabels": {"a": "b"}}}))
    assert steps_held(LAB, []) == 0 and steps_held(LAB, [mine]) == 1 and steps_held(LAB, [mine, dns]) == 2
    assert steps_held(LAB, [dns]) is None and steps_held(LAB, [changed]) is None  # no step prefix


def test_ids_are_sequential_and_latest_holding_finds_the_newest_by_content(tmp_path):
    store = SnapshotStore(tmp_path)
    mine = live(policy("mine", labels=OURS))
    a = save(store, [], before="default-deny")
    b = save(store, [mine], before="allow-dns")
    c = save(store, [], before="rollback")
    half = save(store, [live(policy("dns", labels=OURS, spec={"podSelector": {}, "policyTypes": ["Egress"]}))],
                before="rollback")
    assert [a.id, b.id, c.id] == ["0001-before-default-deny", "0002-before-allow-dns", "0003-before-rollback"]
    assert [a.applied, b.applied, c.applied, half.applied] == [[], ["default-deny"], [], None]
    assert "no step prefix" in half.label
    assert store.latest_holding(LAB, 0).info.id == c.id
    assert store.latest_holding(LAB, 1).info.id == b.id
    assert store.latest_holding(LAB, 2) is None


def test_a_label_the_content_no_longer_backs_is_not_trusted(tmp_path):
    """A label written under an older version of the profile: the content is checked again when chosen."""
    store = SnapshotStore(tmp_path)
    save(store, [live(policy("mine", labels=OURS))], before="allow-dns")
    newer = Lab()
    newer.steps[0].objects = [policy("mine", spec={"podSelector": {"matchLabels": {"v": "2"}}})]
    assert store.latest_holding(LAB, 1) is not None
    assert store.latest_holding(newer, 1) is None


def test_a_changed_file_is_refused(tmp_path):
    store = SnapshotStore(tmp_path)
    info = save(store, [live(policy("mine", labels=OURS))])
    path = tmp_path / info.file
    path.write_text(path.read_text().replace("mine", "evil"))
    with pytest.raises(SnapshotError, match="does not match its checksum"):
        store.load(info.id)


def test_a_missing_file_is_refused(tmp_path):
    store = SnapshotStore(tmp_path)
    info = save(store, [])
    (tmp_path / info.file).unlink()
    with pytest.raises(SnapshotError, match="is missing or unreadable"):
        store.load(info.id)


def test_a_corrupt_index_is_refused(tmp_path):
    store = SnapshotStore(tmp_path)
    save(store, [])
    (tmp_path / "index.yaml").write_text("snapshots: [unclosed")
    with pytest.raises(SnapshotError, match="is corrupt"):
        store.load("0001-before-allow-dns")
    with pytest.raises(SnapshotError, match="is corrupt"):
        save(store, [])


def test_unknown_snapshot_id(tmp_path):
    with pytest.raises(SnapshotError, match="no snapshot 'nope'"):
        SnapshotStore(tmp_path).load("nope")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["policies"][0]["metadata"]["labels"].clear(), "does not carry our label"),
    (lambda d: d["policies"][0]["metadata"].update(namespace="elsewhere"), "outside the snapshot's namespaces"),
    (lambda d: d["policies"][0]["spec"].update(policyTypes=["Sideways"]), "not a valid NetworkPolicy"),
    (lambda d: d.pop("policies"), "missing 'policies'"),
    (lambda d: d.update(id="0009-other"), "holds snapshot '0009-other'"),
])
def test_content_is_checked_even_when_the_checksum_matches(tmp_path, mutate, message):
    import hashlib

    store = SnapshotStore(tmp_path)
    info = save(store, [live(policy("mine", labels=OURS))])
    doc = yaml.safe_load((tmp_path / info.file).read_text())
    mutate(doc)
    data = yaml.safe_dump(doc).encode()
    (tmp_path / info.file).write_bytes(data)
    index = yaml.safe_load((tmp_path / "index.yaml").read_text())
    index["snapshots"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / "index.yaml").write_text(yaml.safe_dump(index))
    with pytest.raises(SnapshotError, match=message):
        store.load(info.id)


# -- the step record --------------------------------------------------------------


def test_record_round_trip_and_default(tmp_path):
    records = RecordStore(tmp_path)
    empty = records.load("lab", "k3d-lab")
    assert (empty.steps, empty.in_progress) == ([], None)
    rec = StepRecord("lab", "k3d-lab", [StepEntry("default-deny", "0001", "t0", "t1", "ada", "box", {"edges": 3})],
                     InProgress(Phase.APPLYING, "allow-dns", "0002", "t2", 41, "ada", "box"))
    records.save(rec)
    back = records.load("lab", "k3d-lab")
    assert back.applied == ["default-deny"] and back.in_progress == rec.in_progress
    assert back.in_place == ["default-deny", "allow-dns"] and not back.fully_verified
    assert back.steps[0].summary == {"edges": 3} and back.updated


@pytest.mark.parametrize("text", ["steps: {a: 1}", "steps: [{name: x}]", "in_progress: yes\nsteps: []", "[unclosed",
                                  "steps: []\nin_progress: {phase: pausing, step: x}",
                                  "steps: []\nin_progress: {phase: applying, pid: many}",
                                  "steps: []\nin_progress: {phase: applying, color: red}"])
def test_a_damaged_record_is_refused(tmp_path, text):
    (tmp_path / "state.yaml").write_text(text)
    with pytest.raises(StateError, match="step record .* is unreadable"):
        RecordStore(tmp_path).load("lab", "k3d-lab")


def test_layout_is_per_cluster_identity_and_profile(tmp_path):
    state = ClusterState(ClusterIdentity("5f1d0c8e-0000-4000-8000-000000000001", "k3d-dashi", "https://x"), tmp_path)
    assert state.profile_dir("dashi") == tmp_path / "clusters" / "5f1d0c8e-0000-4000-8000-000000000001" / "dashi"
