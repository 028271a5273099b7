"""The fake cluster's network: which packets pass, as a CNI would decide.

A packet from a pod is dropped (or, with ``reject=True``, refused) when a
policy denies it, as decided by the project's engine over the
NetworkPolicies the simulated CNI has programmed (on a Cilium cluster
together with the CiliumNetworkPolicies, cilium.py); it then finds a
listener or not. podexec.py turns that into what the tools in the pods
print. The knobs:

* ``enforce=False``: a CNI that enforces nothing (k3s with flannel and the
  policy controller off);
* ``lag_probes`` / ``lag_seconds``: a CNI that is slow to apply: a policy
  change takes effect only after that many probes or that much time (by
  ``clock``), so a prober that does not re-poll sees stale traffic.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Callable

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import KCNP_KIND, Endpoint, Port
from cluster.testing.fakecluster.cilium import CNP_KIND, Cilium, cnp_allows, cnp_selects
from cluster.testing.fakecluster.store import by_key, copy_object

# TEST-NET-1 (RFC 5737): documentation addresses, used here as data only.
# Deliberately not the profile's offline stand-in (192.0.2.10), so tests can
# tell live addresses from offline ones.
API_ADDRESS = "192.0.2.20"
API_PORT = 6443
POLICY_KINDS = ("NetworkPolicy", CNP_KIND, KCNP_KIND)


@lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Network(Cilium):
    """The simulated CNI: the policies it has programmed, and what they let through."""

    def _init_network(self, *, enforce: bool, reject: bool, lag_probes: int, lag_seconds: float,
                      api_port: int) -> None:
        self.enforce = enforce
        # reject=True: denied packets are answered with ICMP port-unreachable
        # (REFUSED), as k3s's kube-router does, instead of dropped (TIMEOUT).
        self.reject = reject
        self.lag_probes = lag_probes
        self.lag_seconds = lag_seconds
        # The port the API server listens on behind the kubernetes Service
        # (6443 on k3s, 443 on most managed clusters).
        self.api_port = api_port
        # The simulated CNI: the policy set it has programmed, and the change
        # it has not yet caught up with.
        self._enforced: list[dict] = []
        self._dirty = False
        self._changed_at = 0.0
        self._probes_since_change = 0
        self._engine_cache: tuple | None = None
        # What probes derive from the objects (pods by IP, endpoints,
        # namespaces), worked out once per state of the store: see _derived.
        self._derived_cache: tuple | None = None

    def _written(self, obj: dict, old: dict | None) -> None:
        if obj["kind"] in POLICY_KINDS:
            self._policies_changed()
        super()._written(obj, old)

    def _removed(self, kind: str) -> None:
        # A namespace's policies go with it.
        if kind in POLICY_KINDS or kind == "Namespace":
            self._policies_changed()
        super()._removed(kind)

    def policies_in_effect(self) -> list[dict]:
        """What the simulated CNI enforces right now (lag included)."""
        with self._lock:
            self._catch_up(count_probe=False)
            return copy_object(self._enforced)

    def _policies_changed(self) -> None:
        self._dirty = True
        self._changed_at = self.clock()
        self._probes_since_change = 0

    def _catch_up(self, count_probe: bool) -> None:
        if not self._dirty:
            return
        if count_probe:
            self._probes_since_change += 1
        lagging = bool(self.lag_probes or self.lag_seconds)
        due = (not lagging
               or (self.lag_probes and self._probes_since_change > self.lag_probes)
               or (self.lag_seconds and self.clock() - self._changed_at >= self.lag_seconds))
        if due:
            self._enforced = [copy_object(o) for _, o in sorted(((k, o) for k, o in self._objects.items()
                                                                 if k[1] in POLICY_KINDS), key=by_key)]
            self._dirty = False

    @staticmethod
    def _listening(pod: dict) -> set[tuple[int, str]]:
        """(port, protocol) a pod serves: its container ports, plus agnhost
        porter's SERVE_PORT_N variables (porter serves TCP)."""
        out = set()
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                out.add((p["containerPort"], p.get("protocol") or "TCP"))
            if "porter" in (c.get("args") or []):
                for env in c.get("env") or []:
                    m = re.match(r"^SERVE_PORT_(\d+)$", env.get("name", ""))
                    if m:
                        out.add((int(m.group(1)), "TCP"))
        return out

    def _derived(self) -> dict:
        """A memo for what probes derive from the objects, valid while the
        store is unchanged: every write bumps the resource version and every
        removal shrinks the store."""
        key = (self._rv, len(self._objects))
        if self._derived_cache is None or self._derived_cache[0] != key:
            self._derived_cache = (key, {})
        return self._derived_cache[1]

    def _pod_by_ip(self, ip: str) -> dict | None:
        memo = self._derived()
        if "pods_by_ip" not in memo:
            by_ip: dict[str, dict] = {}
            for k, o in self._objects.items():
                pod_ip = (o.get("status") or {}).get("podIP") if k[1] == "Pod" else None
                if pod_ip is not None:
                    by_ip.setdefault(pod_ip, o)
            memo["pods_by_ip"] = by_ip
        return memo["pods_by_ip"].get(ip)

    def _per_pod(self, what: str, pod: dict, build: Callable[[dict], object]):
        memo = self._derived().setdefault(what, {})
        got = memo.get(id(pod))
        if got is None or got[0] is not pod:
            got = memo[id(pod)] = (pod, build(pod))
        return got[1]

    def _pod_endpoint(self, pod: dict) -> Endpoint:
        return self._per_pod("endpoint", pod, self._endpoint_of)

    @staticmethod
    def _endpoint_of(pod: dict) -> Endpoint:
        meta = pod["metadata"]
        ports = tuple(Port(p.get("name"), p["containerPort"], p.get("protocol") or "TCP")
                      for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or [])
        return Endpoint(key=f"{meta['namespace']}/{meta['name']}", namespace=meta["namespace"],
                        name=meta["name"], kind="workload", labels=dict(meta.get("labels") or {}),
                        ports=ports, ip=(pod.get("status") or {}).get("podIP"))

    def _engine(self) -> Engine:
        # Compiling every policy per probe would serialise a 240-probe matrix
        # on the store lock; the enforced set only changes when the CNI catches up.
        memo = self._derived()
        if "namespaces" not in memo:
            namespaces = {k[3]: (o["metadata"].get("labels") or {}) for k, o in self._objects.items()
                          if k[1] == "Namespace"}
            memo["namespaces"] = (namespaces, tuple(sorted((n, tuple(sorted(lb.items())))
                                                           for n, lb in namespaces.items())))
        namespaces, labels = memo["namespaces"]
        key = (id(self._enforced), labels)
        if self._engine_cache is None or self._engine_cache[0] != key:
            # ClusterNetworkPolicies as the engine predicts the simulated CNI
            # enforces them (Cilium's departures included), where it does.
            kinds = ("NetworkPolicy", KCNP_KIND) if self.kcnp_enforced else ("NetworkPolicy",)
            self._engine_cache = (key, Engine(namespaces, [o for o in self._enforced if o["kind"] in kinds],
                                              dataplane="cilium" if self.cni == "cilium" else None))
        return self._engine_cache[1]

    def _resolve(self, host: str) -> dict | str | None:
        """A pod (by IP, or by Service DNS name), the API address, or None."""
        if not _is_ip(host):
            parts = host.split(".")
            if len(parts) >= 2 and (len(parts) == 2 or parts[2] == "svc"):
                svc = self._objects.get(("v1", "Service", parts[1], parts[0]))
                if svc is not None:
                    if svc["metadata"]["name"] == "kubernetes" and parts[1] == "default":
                        return API_ADDRESS
                    sel = (svc.get("spec") or {}).get("selector") or {}
                    for k, o in sorted(self._objects.items(), key=lambda kv: kv[0][3]):
                        if k[1] == "Pod" and k[2] == parts[1] and sel and all(
                                (o["metadata"].get("labels") or {}).get(a) == b for a, b in sel.items()):
                            return o
            return "nxdomain"
        if host == API_ADDRESS:
            return API_ADDRESS
        return self._pod_by_ip(host)

    def _path(self, namespace: str, pod_name: str, host: str, port: int, proto: str) -> tuple[str, bool]:
        """What happens to a packet from a pod to host:port: "open", "dropped"
        or "rejected" by a policy, "no-listener", "nxdomain", "no-route";
        and whether the destination is cluster DNS on 53."""
        with self._lock:
            self._catch_up(count_probe=True)
            src = self._pod_endpoint(self._objects[("v1", "Pod", namespace, pod_name)])
            target = self._resolve(host)
            if target == "nxdomain":
                return "nxdomain", False
            if target is None:
                return "no-route", False
            if target == API_ADDRESS:
                # Cilium gives the API server the kube-apiserver identity
                # (the node's address: host), which a /0 CIDR does not
                # select (measured on the e2e cilium lane); the engine,
                # told the dataplane, predicts that (DATAPLANES).
                dst = Endpoint(key="external/kube-api", namespace=None, name="kube-api", kind="external",
                               ports=(Port("https", self.api_port, "TCP"),), ip=API_ADDRESS,
                               address_service="default/kubernetes")
                listening = {(self.api_port, "TCP")}
                is_dns = False
            else:
                dst = self._pod_endpoint(target)
                listening = self._per_pod("listening", target, self._listening)
                is_dns = (target["metadata"].get("labels") or {}).get("k8s-app") == "kube-dns" and port == 53
            allowed = True
            if self.enforce:
                verdict = self._engine().evaluate(src, dst, port, proto)
                allowed = verdict.allowed
                src_pod = self._objects[("v1", "Pod", namespace, pod_name)]
                cnps = [o for o in self._enforced if o["kind"] == CNP_KIND and cnp_selects(o, src_pod)]
                if cnps:
                    # Cilium: selected for egress, so default-deny; the allows
                    # of both kinds add up.
                    egress = (verdict.egress.isolated and verdict.egress.allowed) or \
                        any(cnp_allows(c, target == API_ADDRESS, port, proto) for c in cnps)
                    allowed = egress and verdict.ingress.allowed
        if not allowed:
            return ("rejected" if self.reject else "dropped"), is_dns
        if (port, proto) not in listening:
            return "no-listener", is_dns
        return "open", is_dns
