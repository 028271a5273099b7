"""The restore algorithm: make our NetworkPolicies in some namespaces exactly
a given set (a snapshot), never touching anyone else's."""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.errors import KubeError
from cluster.live.kube import Kube
from cluster.live.snapshots import NP_API, clean_policy, is_ours, policy_key, same_policy


@dataclass
class RestoreResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.deleted)} deleted, "
                f"{self.unchanged} unchanged")


def live_policies(kube: Kube, namespaces: list[str]) -> list[dict]:
    """The NetworkPolicies of some namespaces, as complete objects (the API's
    list carries apiVersion and kind on the list, not on each item)."""
    out = []
    for ns in namespaces:
        for item in kube.list(NP_API, "NetworkPolicy", ns):
            out.append({"apiVersion": NP_API, "kind": "NetworkPolicy", **item})
    return out


def restore(kube: Kube, policies: list[dict], namespaces: list[str]) -> RestoreResult:
    """Make our NetworkPolicies in ``namespaces`` exactly ``policies``.

    Creates and updates first, then deletes, and only ever touches objects
    carrying our label. Afterwards reads back and checks the result; raises
    KubeError naming what did not take.
    """
    result = RestoreResult()
    live = {policy_key(p): p for p in live_policies(kube, namespaces)}
    desired = {policy_key(p): p for p in policies}
    for key, want in sorted(desired.items()):
        have = live.get(key)
        if have is not None and not is_ours(have):
            result.notes.append(f"{key[0]}/{key[1]}: a policy that is not ours now has this name; left alone")
            continue
        if have is not None and same_policy(have, want):
            result.unchanged += 1
            continue
        kube.apply(clean_policy(want))
        (result.updated if have is not None else result.created).append(f"{key[0]}/{key[1]}")
    for key, have in sorted(live.items()):
        if key not in desired and is_ours(have):
            kube.delete(NP_API, "NetworkPolicy", key[1], key[0])
            result.deleted.append(f"{key[0]}/{key[1]}")
    after = {policy_key(p): p for p in live_policies(kube, namespaces) if is_ours(p)}
    wrong = [f"{k[0]}/{k[1]}" for k, want in desired.items()
             if k in after and not same_policy(after[k], want)]
    wrong += [f"{k[0]}/{k[1]} (missing)" for k in desired if k not in after
              and not any(n.startswith(f"{k[0]}/{k[1]}:") for n in result.notes)]
    wrong += [f"{k[0]}/{k[1]} (should be gone)" for k in after if k not in desired]
    if wrong:
        raise KubeError(f"restore did not take for {', '.join(wrong)}")
    return result
