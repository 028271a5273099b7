"""Recordings on disk: written within their caps, replaced whole, read back
gathered per edge."""

import json

import pytest

from cluster.errors import ManifestError
from cluster.policy.flows.model import Flow, Peer
from cluster.policy.flows.recording import read_recording, write_recording

A, B = Peer("pod", "a", "a-1", (("app", "a"),)), Peer("pod", "b", "b-1", (("app", "b"),))


def flows(n, port=80):
    return (Flow(A, B, port, "TCP", time=1000.0 + i) for i in range(n))


def test_round_trip_gathers_per_edge(tmp_path):
    path, meta = write_recording(tmp_path / "rec", [*flows(3), Flow(B, A, 53, "UDP", "dropped", 999.5, count=4)],
                                 {"source": "test"})
    assert (meta["seen"], meta["kept"], meta["capped"], meta["source"]) == (4, 4, None, "test")
    g = read_recording(path)
    assert g.peers == [A, B]
    assert g.by_key == {(0, 1, 80, "TCP", "forwarded"): [3, 1000.0, 1002.0],
                        (1, 0, 53, "UDP", "dropped"): [4, 999.5, 999.5]}


@pytest.mark.parametrize("caps, kept, capped", [({"max_flows": 5}, 5, "5 flows"),
                                                ({"max_bytes": 100}, 2, "100 bytes")])
def test_caps_stop_the_recording_and_say_so(tmp_path, caps, kept, capped):
    path, meta = write_recording(tmp_path / "rec", flows(10), {"source": "t"}, **caps)
    assert (meta["seen"], meta["kept"], meta["capped"]) == (10, kept, capped)
    assert read_recording(path).flows == kept
    assert (path / "flows.tsv").stat().st_size <= caps.get("max_bytes", 1 << 30)


def test_a_recording_cut_off_leaves_the_last_one(tmp_path):
    write_recording(tmp_path / "rec", flows(2), {"source": "first"})

    def broken():
        yield from flows(3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_recording(tmp_path / "rec", broken(), {"source": "second"})
    assert json.loads((tmp_path / "rec" / "meta.json").read_text())["source"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_not_a_recording(tmp_path):
    with pytest.raises(ManifestError, match="not a flow recording"):
        read_recording(tmp_path)
    write_recording(tmp_path / "rec", flows(1), {"source": "t"})
    (tmp_path / "rec" / "flows.tsv").write_text("0\t7\t80\tTCP\tforwarded\t1\t1.0\n")
    with pytest.raises(ManifestError, match="names peer 7"):
        read_recording(tmp_path / "rec")
