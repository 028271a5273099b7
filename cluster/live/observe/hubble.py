"""The way to a cluster's Hubble: an address the user names, or a
port-forward to hubble-relay.

``inv cluster-up --cni cilium`` deploys hubble-relay (cni/cilium/values.yaml);
the relay serves the Observer API for the whole cluster on port 4245 of its
pods (label ``k8s-app=hubble-relay`` in kube-system, the Cilium chart's).
For any other cluster ``--hubble ADDRESS`` names a Hubble that answers
(a relay the user forwarded, or an agent's ``--hubble-listen-address``).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from cluster.live.observe.cni import CILIUM_NAMESPACE
from cluster.seams.hubble import GrpcHubble, Hubble, HubbleError, wait_for
from cluster.seams.kube import Kube

RELAY_SELECTOR = {"matchLabels": {"k8s-app": "hubble-relay"}}
RELAY_PORT = 4245


def relay_pod(kube: Kube) -> str:
    """A running hubble-relay pod's name, or a HubbleError saying what to do."""
    pods = kube.list("v1", "Pod", CILIUM_NAMESPACE, label_selector=RELAY_SELECTOR)
    running = sorted(p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running")
    if not running:
        found = f"{len(pods)} not running" if pods else "none"
        raise HubbleError(f"no running hubble-relay pod in {CILIUM_NAMESPACE} ({found}) on {kube.context()}: "
                          "inv cluster-up --cni cilium deploys one; on another cluster name a Hubble with "
                          "--hubble ADDRESS, or hand over flows with --flows FILE (hubble observe -o json, "
                          "Calico flow logs)")
    return running[0]


@contextlib.contextmanager
def connect(*, address: str | None = None, kube: Kube | None = None,
            say: Callable[[str], None] = lambda t: None) -> Iterator[Hubble]:
    """Hubble at ``address``, else through a port-forward to the cluster's
    relay; asked for its status first, so a wrong address fails at once."""
    forward = None
    if address is None:
        if kube is None:
            raise HubbleError("no Hubble to ask: name one with --hubble ADDRESS")
        pod = relay_pod(kube)
        forward = kube.port_forward(CILIUM_NAMESPACE, pod, RELAY_PORT)
        say(f"port-forward {forward.address} -> {CILIUM_NAMESPACE}/{pod}:{RELAY_PORT} (hubble-relay)")
        address = forward.address
    hub = GrpcHubble(address)
    try:
        status = wait_for(hub)
        say(f"Hubble {status.version} at {address}: {status.num_flows} of {status.max_flows} flows in its "
            f"buffer, {status.seen_flows} seen")
        yield hub
    finally:
        hub.close()
        if forward is not None:
            forward.close()
