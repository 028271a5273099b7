"""A ClusterNetworkPolicy is validated as the API server validates it: the
pinned CRD's schema (cluster/policy/schemas/, sigs.k8s.io/network-policy-api
v0.3.1, unchanged) and its CEL rules, each error one line naming the file,
the object and the field."""

from __future__ import annotations

import hashlib

import pytest
from support.cnp_bad_input import BAD, GOOD, with_change

from cluster import versions
from cluster.errors import ManifestError
from cluster.policy import schema
from cluster.policy.engine.compile import compile_policy


def test_the_good_one_compiles():
    p = compile_policy(GOOD, "guard.yaml")
    assert (p.ref, p.tier, p.priority, len(p.ingress), len(p.egress)) == \
        ("ClusterNetworkPolicy guard", "Admin", 10, 1, 1)


@pytest.mark.parametrize("path, value, message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_each_error_is_one_line_naming_file_object_and_field(path, value, message):
    with pytest.raises(ManifestError, match=message) as err:
        compile_policy(with_change(path, value), "policies/02-guard.yaml")
    text = str(err.value)
    assert text.startswith("policies/02-guard.yaml: ClusterNetworkPolicy ") and "\n" not in text


def test_the_schema_is_the_pinned_crd_unchanged():
    data = schema.CNP_CRD.read_bytes()
    assert hashlib.sha256(data).hexdigest() == versions.NETWORK_POLICY_API_SHA256
    assert f"policy.networking.k8s.io/bundle-version: {versions.NETWORK_POLICY_API_VERSION}".encode() in data
    assert b"policy.networking.k8s.io/channel: experimental" in data
    assert schema.cnp_versions() == ("policy.networking.k8s.io/v1alpha2", "policy.networking.k8s.io/v1beta1")
