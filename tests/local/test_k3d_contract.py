"""The real k3d v5.9.0 against node containers labelled the way it labels
them, on the session's Docker engine: what `k3d cluster list -o json` really
prints is what tests/support/local_world.py says it prints, and ownership,
CNI and image are read correctly only through Docker.

Needs a k3d binary: $DASHI_TEST_K3D, or the one tests/local/build_k3d.sh builds
from the Go module proxy (.ci/run does so when Go is installed). Skips with
that reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cluster import versions
from cluster.local import k3d
from cluster.local import lifecycle as commands
from cluster.seams.docker_engine import SDKDocker
from cluster.seams.runner import Runner
from support.docker_fixtures import create_nodes, import_image, remove_cluster, remove_image, unique
from support.local_world import k3d_list_json, k3d_nodes, recording_console

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def k3d_exe() -> Path:
    cands = [os.environ.get("DASHI_TEST_K3D", ""),
             f"{os.environ.get('DASHI_K3D_CACHE', '/var/cache/dashi-cluster-k3d')}/{versions.K3D_VERSION}/k3d"]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return Path(c)
    pytest.skip(f"no k3d {versions.K3D_VERSION} binary: set DASHI_TEST_K3D or run tests/local/build_k3d.sh")


@pytest.fixture
def real(dockerd, k3d_exe, tmp_path, monkeypatch):
    """A runner that finds this k3d first, pointed at the test engine; a
    throwaway kubeconfig so `k3d cluster delete` never edits the user's."""
    if dockerd:
        monkeypatch.setenv("DOCKER_HOST", dockerd)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "k3d").symlink_to(k3d_exe)
    name = unique()
    refs = [f"dashi-test/k3s-{name}:{versions.K3S_VERSION}", f"dashi-test/proxy-{name}:5.9.0"]
    for ref in refs:
        import_image(dockerd, ref)
    yield Runner(bin_dir), SDKDocker(base_url=dockerd), name, refs
    remove_cluster(dockerd, name)
    for ref in refs:
        remove_image(dockerd, ref)


def _listed(runner: Runner, name: str) -> dict:
    out = runner.run(k3d.LIST_ARGV).stdout
    return next(c for c in json.loads(out) if c["name"] == name)


def test_real_listing_has_the_fixture_shape_and_drops_our_labels(real, dockerd):
    runner, _, name, (image, lb) = real
    nodes = k3d_nodes(name, "calico", agents=1, image=image, lb_image=lb)
    create_nodes(dockerd, nodes)
    got = _listed(runner, name)
    want = json.loads(k3d_list_json([(name, nodes)]))[0]
    assert set(got) == set(want)
    assert {k: got[k] for k in got if k not in ("nodes", "network")} == \
        {k: want[k] for k in want if k not in ("nodes", "network")}
    assert set(got["network"]) == set(want["network"])
    assert [n["name"] for n in got["nodes"]] == [n["name"] for n in want["nodes"]]
    for g, w in zip(got["nodes"], want["nodes"]):
        assert set(g) == set(w), g["name"]
        assert g["runtimeLabels"] == w["runtimeLabels"]  # only k3d's: never ours
        assert g["serverOpts"] == w["serverOpts"] and g["role"] == w["role"] and g["State"]["Running"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", g["image"])  # the image ID, not the name
    assert not any("dashi" in k for n in got["nodes"] for k in n["runtimeLabels"])


def test_find_reads_what_k3d_cannot_report(real, dockerd):
    runner, docker, name, (image, lb) = real
    create_nodes(dockerd, k3d_nodes(name, "cilium", agents=1, image=image, lb_image=lb))
    info = k3d.find(runner, docker, name)
    assert (info.servers, info.agents, info.running, info.ours, info.cni) == (1, 1, True, True, "cilium")
    assert info.image == image


def test_cluster_down_deletes_a_cluster_of_ours_and_guards_a_foreign_one(real, dockerd):
    runner, docker, name, (image, lb) = real
    console, buf = recording_console()
    foreign = unique()
    create_nodes(dockerd, k3d_nodes(foreign, None, ours=False, image=image, lb_image=lb))
    try:
        with pytest.raises(Exception, match="not created by dashi-cluster"):
            commands.cluster_down(foreign, runner=runner, docker=docker, console=console)
        assert k3d.find(runner, docker, foreign) is not None
    finally:
        remove_cluster(dockerd, foreign)
    create_nodes(dockerd, k3d_nodes(name, "calico", image=image, lb_image=lb))
    assert commands.cluster_down(name, runner=runner, docker=docker, console=console)
    assert k3d.find(runner, docker, name) is None  # real k3d removed the containers
    assert docker.node_containers(name) == []
