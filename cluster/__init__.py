"""dashi-cluster: enforced NetworkPolicies on a local cluster, rolled out one verified step at a time."""

__version__ = "0.1.0"
