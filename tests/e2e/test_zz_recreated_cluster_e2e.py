"""A cluster torn down and brought up again under the same context name gets
a fresh record: the rollout's state is keyed by the kube-system namespace's
uid, not by the context name.

Destructive and slow (down.sh, up.sh, prepare: about two minutes), so it is
opt-in: ``DASHI_E2E_RECREATE=1`` and root (the test cluster's scripts need
it). It runs last (file name) and leaves the cluster up with the dashi and
environments stand-ins deployed again, as the other end-to-end tests expect
to find it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

# What it proves is the record's (keyed by the cluster's identity), not the
# enforcer's: CI runs it on the first lane only.
pytestmark = [pytest.mark.e2e, pytest.mark.apiserver]

K3S = Path(__file__).resolve().parent / "hostcluster"


def uid(cluster) -> str:
    from kubernetes import client

    return client.CoreV1Api(cluster.api()).read_namespace("kube-system").metadata.uid


def test_a_recreated_cluster_starts_a_fresh_record(e2e_cluster):
    if os.environ.get("DASHI_E2E_RECREATE") != "1":
        pytest.skip("tears the test cluster down and up again: set DASHI_E2E_RECREATE=1 to run it")
    if os.geteuid() != 0:
        pytest.skip("tests/e2e/hostcluster/down.sh and up.sh need root")
    ctx = ["--context", e2e_cluster.context, "--yes"]
    env = ["--profile", "environments", *ctx]
    assert e2e_cluster.inv("prepare", *env).returncode == 0
    assert e2e_cluster.inv("network-policies-up", "--until", "default-deny", *env).returncode == 0
    old = uid(e2e_cluster)
    old_record = e2e_cluster.state_dir / "clusters" / old / "environments" / "state.yaml"
    assert [s["name"] for s in yaml.safe_load(old_record.read_text())["steps"]] == ["default-deny"]

    subprocess.run([str(K3S / "down.sh")], check=True, timeout=600)
    up = subprocess.run([str(K3S / "up.sh"), e2e_cluster.lane], check=True, timeout=900, capture_output=True, text=True)
    assert up.stdout.strip() == e2e_cluster.kubeconfig  # same kubeconfig, same context name
    new = uid(e2e_cluster)
    assert new != old

    proc = e2e_cluster.inv("prepare", *env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Context {e2e_cluster.context} now reaches a different cluster (kube-system uid {new[:8]}, " \
           f"was {old[:8]}" in proc.stdout
    assert "Starting a fresh record for it" in proc.stdout
    proc = e2e_cluster.inv("network-policies-up", "--until", "default-deny", *env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 of 3 steps verified here; applying default-deny" in proc.stdout
    new_record = e2e_cluster.state_dir / "clusters" / new / "environments" / "state.yaml"
    assert [s["name"] for s in yaml.safe_load(new_record.read_text())["steps"]] == ["default-deny"]
    assert old_record.exists()  # kept, never reused
    # Leave the cluster as the other end-to-end tests expect to find it.
    assert e2e_cluster.inv("rollback", "--to", "baseline", *env).returncode == 0
    assert e2e_cluster.inv("prepare", "--profile", "dashi", *ctx).returncode == 0
