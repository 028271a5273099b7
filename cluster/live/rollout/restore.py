"""The restore algorithm: make our NetworkPolicies (and CiliumNetworkPolicies,
where the cluster serves them) in some namespaces exactly a given set (a
snapshot, or the policies of some steps), never touching anyone else's; and
the plan of what that changes, printed before anything is confirmed or
changed."""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.errors import KubeError
from cluster.live.record.policies import (
    POLICY_KINDS,
    clean_policy,
    is_ours,
    key_ref,
    live_policies,
    policy_key,
    same_policy,
)
from cluster.seams.kube import Kube

_ref = key_ref


@dataclass(frozen=True)
class Plan:
    """What making our policies ``desired`` changes, by name (``ns/name``;
    ``CiliumNetworkPolicy ns/name`` for that kind)."""

    create: tuple[str, ...] = ()
    update: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    unchanged: int = 0
    foreign: tuple[str, ...] = ()  # policies that are not ours: never touched
    # Policies of ours whose name a policy that is not ours already holds:
    # they cannot be made without taking someone else's object over.
    blocked: tuple[str, ...] = ()

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)

    def lines(self, where: str) -> list[str]:
        head = (f"Plan for our NetworkPolicies in {where}: {len(self.create)} to create, "
                f"{len(self.update)} to update, {len(self.delete)} to delete, {self.unchanged} unchanged")
        out = [head + ("" if self.changes else " (nothing changes)")]
        for verb, names in (("create", self.create), ("update", self.update), ("delete", self.delete)):
            if names:
                out.append(f"  {verb}: {', '.join(names)}")
        if self.foreign:
            out.append(f"  not ours, never touched: {', '.join(self.foreign)}")
        if self.blocked:
            out.append(f"  BLOCKED, the name is held by a policy that is not ours: {', '.join(self.blocked)}")
        return out


def plan_changes(live: list[dict], desired: list[dict]) -> Plan:
    """Compare the live policies (ours and others') with the policies of ours wanted."""
    have = {policy_key(p): p for p in live}
    want = {policy_key(p): p for p in desired}
    create, update, blocked = [], [], []
    unchanged = 0
    for key, p in sorted(want.items()):
        cur = have.get(key)
        if cur is None:
            create.append(_ref(key))
        elif not is_ours(cur):
            blocked.append(_ref(key))
        elif same_policy(cur, p):
            unchanged += 1
        else:
            update.append(_ref(key))
    delete = [_ref(k) for k, p in sorted(have.items()) if is_ours(p) and k not in want]
    foreign = [_ref(k) for k, p in sorted(have.items()) if not is_ours(p)]
    return Plan(tuple(create), tuple(update), tuple(delete), unchanged, tuple(foreign), tuple(blocked))


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




def restore(kube: Kube, policies: list[dict], namespaces: list[str]) -> RestoreResult:
    """Make our NetworkPolicies in ``namespaces`` exactly ``policies``.

    Creates and updates first, then deletes, and only ever touches objects
    carrying our label. Afterwards reads back and checks the result; raises
    KubeError naming what did not take.
    """
    result = RestoreResult()
    desired = {policy_key(p): p for p in policies}
    live = live_policies(kube, namespaces)
    keys = {_ref(k): k for k in list(desired) + [policy_key(p) for p in live]}
    todo = plan_changes(live, policies)
    result.unchanged = todo.unchanged
    result.notes = [f"{ref}: a policy that is not ours now has this name; left alone" for ref in todo.blocked]
    for ref in todo.create + todo.update:
        kube.apply(clean_policy(desired[keys[ref]]))
        (result.created if ref in todo.create else result.updated).append(ref)
    for ref in todo.delete:
        ns, name, kind = keys[ref]
        kube.delete(POLICY_KINDS[kind], kind, name, ns)
        result.deleted.append(ref)
    after = {policy_key(p): p for p in live_policies(kube, namespaces) if is_ours(p)}
    wrong = [_ref(k) for k, want in desired.items() if k in after and not same_policy(after[k], want)]
    wrong += [f"{_ref(k)} (missing)" for k in desired if k not in after and _ref(k) not in todo.blocked]
    wrong += [f"{_ref(k)} (should be gone)" for k in after if k not in desired]
    if wrong:
        raise KubeError(f"restore did not take for {', '.join(wrong)}")
    return result
