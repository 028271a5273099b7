"""Every pinned version and upstream URL, in one place.

Bump a version here and nowhere else: the k3d config, the Calico and Cilium
installs, `inv tools` and the preflight minimums all read these names. Each
pin says where it was taken from, so the next bump starts from the same doc.
"""

from __future__ import annotations

# --- k3d / k3s -------------------------------------------------------------

# k3d v5.9.0: current stable release line (k3d-io/k3d releases; the
# k3d.io/v1alpha5 config schema in pkg/config/v1alpha5/schema.json).
K3D_VERSION = "v5.9.0"
# v1alpha5 is the config format of the k3d v5.5+ docs (the v5.4.x docs still
# show v1alpha4), so older k3d cannot read the file we generate.
K3D_MIN_VERSION = (5, 5, 0)

# rancher/k3s image tags use "-k3s1" where the release uses "+k3s1" (the tag
# charset has no "+": k3d-io/k3d PR #1589). v1.33.4+k3s1 is listed in the k3s
# release notes (k3s-io/docs docs/release-notes/v1.33.X.md, Aug 25 2025) and
# is the default image of k3d v5.9.0-rc.0 (k3d-io/k3d issue #1604), so the
# pair is known to work. Kubernetes 1.33 is inside the support window of
# Cilium 1.20 (tested on 1.33-1.36), and matches this repo's e2e pin (1.33).
K3S_IMAGE_REPO = "rancher/k3s"
K3S_VERSION = "v1.33.4-k3s1"

# k3s' default --cluster-cidr (docs.k3s.io, networking). We pass it
# explicitly so the Calico IP pool (cni/calico/custom-resources.yaml) and the
# Cilium IPAM (node podCIDRs) provably agree with the cluster.
POD_CIDR = "10.42.0.0/16"
SERVICE_CIDR = "10.43.0.0/16"

# Docker: "k3d v5.x.x requires at least Docker v20.10.5 (runc >= v1.0.0-rc93)"
# (k3d-io/k3d docs/index.md, Requirements; k3d issue #807).
DOCKER_MIN_VERSION = (20, 10, 5)

# --- CNIs --------------------------------------------------------------------

# Calico v3.32.2 (tigera operator v1.42.6, whose release notes name it:
# github.com/tigera/operator/releases/tag/v1.42.6): the latest v3.32 patch
# found (30 Aug 2026), the line that implements ClusterNetworkPolicy.
# Recent enough for k3d: Calico < 3.27 failed there with an ipset mismatch
# (k3d #1375, projectcalico/calico #8372). From 3.30 on the CRDs ship as
# operator-crds.yaml beside tigera-operator.yaml (k3s quickstart). The
# manifests are applied from their URLs and not checksummed: none could be
# fetched where this pin was chosen (the Go module proxy refuses the calico
# module, 403), so there is no digest to pin that was read from the source.
CALICO_VERSION = "v3.32.2"
CALICO_MANIFESTS_URL = f"https://raw.githubusercontent.com/projectcalico/calico/{CALICO_VERSION}/manifests"
CALICO_OPERATOR_CRDS_URL = f"{CALICO_MANIFESTS_URL}/operator-crds.yaml"
CALICO_OPERATOR_URL = f"{CALICO_MANIFESTS_URL}/tigera-operator.yaml"

# Cilium 1.20.2 Helm chart (helm.cilium.io): the first line with Kubernetes
# ClusterNetworkPolicy (Documentation/network/kubernetes/policy.rst, "available
# starting with Cilium 1.20"), tested against Kubernetes 1.33-1.36
# (Documentation/network/kubernetes/compatibility.rst), and the version the
# test lane builds and measures (tests/e2e/hostcluster/versions.env).
# Installed with `helm upgrade --install --repo` so the user's helm
# repository list is left alone.
CILIUM_VERSION = "1.20.2"
CILIUM_CHART_REPO = "https://helm.cilium.io/"

# ClusterNetworkPolicy's CRD (policy.networking.k8s.io, served as v1alpha2,
# which Cilium 1.20 watches, and v1beta1, the storage version): sigs.k8s.io/
# network-policy-api v0.3.1, experimental channel (destinationNamedPort,
# nodes, domainNames), shipped with the package in cluster/policy/schemas/
# (the engine validates with it; cluster-up installs it). The digest is the
# file's as the Go module proxy serves the module (config/crd/experimental/);
# the tests check the shipped copy against it.
NETWORK_POLICY_API_VERSION = "v0.3.1"
NETWORK_POLICY_API_SHA256 = "78abd92b6970d1d8b853f6ff18ee63deaf3c476f9044a33f6763e4a952c1546b"

# The kernel the nodes run on is the Docker engine's (k3d nodes are
# containers). Calico 3.31: "Minimum Linux kernel version: 5.10" (tigera/docs
# calico_versioned_docs/version-3.31/_includes/partials/_system-requirements.mdx).
# Cilium raised its minimum to 5.10 in 1.18 (cilium/cilium PR #38308, "Bump
# minimum kernel version to v5.10 / RHEL 8.6") and keeps it in 1.20 (v1.20.2
# Documentation/operations/system_requirements.rst: ">= 5.10 or equivalent
# (e.g., 4.18 on RHEL 8.10)"). k3s' own controller (kube-router) has no such pin.
CNI_MIN_KERNEL = {"calico": (5, 10, 0), "cilium": (5, 10, 0)}
CNI_VERSION_OF = {"calico": CALICO_VERSION, "cilium": CILIUM_VERSION}

# --- client tools --------------------------------------------------------------

# kubectl within one minor of the server (Kubernetes version skew policy).
KUBECTL_VERSION = "v1.33.4"
# Server-side apply (`kubectl apply --server-side`) is GA since 1.22.
KUBECTL_MIN_VERSION = (1, 22, 0)

# Helm 3 (Cilium's "Installation using Helm" guide); v3.19.2 is a current
# 3.x patch. Helm 2 needed Tiller and is not supported.
HELM_VERSION = "v3.19.2"
HELM_MIN_VERSION = (3, 0, 0)

# Where `inv tools` downloads from (upstream layouts; each base can be
# replaced by a mirror, see cluster/tools.py):
#   k3d:     {base}/{version}/k3d-{os}-{arch}       + {base}/{version}/checksums.txt
#   helm:    {base}/helm-{version}-{os}-{arch}.tar.gz + ".sha256sum"   (helm.sh install docs)
#   kubectl: {base}/{version}/bin/{os}/{arch}/kubectl + ".sha256"       (kubernetes.io install docs)
K3D_DOWNLOAD_BASE = "https://github.com/k3d-io/k3d/releases/download"
HELM_DOWNLOAD_BASE = "https://get.helm.sh"
KUBECTL_DOWNLOAD_BASE = "https://dl.k8s.io/release"

# Where each publisher serves the checksum of its own artifact. `inv tools`
# always reads the checksum here (or from TOOL_SHA256), never from the
# --base-url mirror that served the binary: a mirror could otherwise serve
# any binary together with a matching "checksum".
K3D_CHECKSUM_BASE = K3D_DOWNLOAD_BASE
HELM_CHECKSUM_BASE = HELM_DOWNLOAD_BASE
KUBECTL_CHECKSUM_BASE = KUBECTL_DOWNLOAD_BASE

# Optional pinned SHA-256 per (tool, os, arch). A pin wins over the
# publisher's checksum file, so with pins an install needs no connection to
# the publisher at all (a mirror alone is enough). None is pinned yet: no
# publisher could be reached from where these versions were chosen, and a
# digest copied from anywhere else would not be the publisher's. Add them
# from a verified download.
TOOL_SHA256: dict[tuple[str, str, str], str] = {}

# --- test images -----------------------------------------------------------------

# The stand-ins and the canary run the Kubernetes e2e test image (the profiles'
# workloads use the same tag; tests/live/setup/test_standins.py keeps them in step).
AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def k3s_image(version: str = K3S_VERSION) -> str:
    return f"{K3S_IMAGE_REPO}:{version}"


def fmt_version(v: tuple[int, ...]) -> str:
    return "v" + ".".join(str(p) for p in v)
