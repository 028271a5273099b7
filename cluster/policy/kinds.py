"""The kinds of object we read from manifests, and what each is: which make
pods, which are policies, which are cluster-scoped, how long their names
may be. One table, used by manifest reading, profiles, the rollout and the
fake cluster. Pure."""

from __future__ import annotations

from cluster.policy.engine.model import KCNP_KIND

# The kinds whose pods come from ``spec.template``, with the API version
# that serves each: the one table of workload kinds (the fake cluster
# reconciles the same kinds). CronJobs make pods from
# ``spec.jobTemplate.spec.template``.
WORKLOAD_KINDS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
                  "ReplicaSet": "apps/v1", "Job": "batch/v1"}
API_VERSIONS = {**WORKLOAD_KINDS, "CronJob": "batch/v1", "Pod": "v1", "Namespace": "v1",
                "NetworkPolicy": "networking.k8s.io/v1", "Service": "v1", "ServiceAccount": "v1",
                "ConfigMap": "v1", "Secret": "v1", KCNP_KIND: "policy.networking.k8s.io/v1beta1"}
ENDPOINT_KINDS = ("Pod", *WORKLOAD_KINDS, "CronJob")
# The policy kinds read for their meaning; a ClusterNetworkPolicy is
# cluster-scoped (no namespace, never given the default one).
POLICY_KINDS = ("NetworkPolicy", KCNP_KIND)
CLUSTER_SCOPED = ("Namespace", KCNP_KIND)
# The workloads whose selector the user writes and the API server requires.
SELECTED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
# Kinds whose names are DNS labels (no dots, at most 63) rather than DNS
# subdomains: a StatefulSet's name is its pods' hostname prefix.
DNS_LABEL_NAMES = ("Namespace", "Service", "StatefulSet")
# Shorter still: a CronJob's Jobs are named <name>-<11 digits of time>
# (batch ValidateCronJob: "must be no more than 52 characters"), and a
# Job's name is a label value of its pods (batch.kubernetes.io/job-name).
MAX_NAME = {"CronJob": 52, "Job": 63}
# The kinds a profile may hold: we read the first ones for their meaning and
# apply the others with the stand-ins.
KNOWN_KINDS = ENDPOINT_KINDS + ("Namespace", *POLICY_KINDS, "Service", "ServiceAccount", "ConfigMap", "Secret")
MODELLED_KINDS = ENDPOINT_KINDS + ("Namespace", *POLICY_KINDS)
DEBUG_ANNOTATION = "dashi.io/role"
