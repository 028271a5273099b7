"""The restore algorithm: make our NetworkPolicies (and CiliumNetworkPolicies,
where the cluster serves them) in some namespaces exactly a given set (a
snapshot, or the policies of some steps), never touching anyone else's; and
the plan of what that changes, printed before anything is confirmed or
changed."""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.errors import KubeConflict, KubeError
from cluster.live.record.policies import (
    POLICY_KINDS,
    clean_policy,
    is_ours,
    key_ref,
    live_policies,
    owner,
    policy_key,
    same_policy,
)
from cluster.seams.kube import Kube

_ref = key_ref
# A restore whose writes meet a policy that changed since it was read (its
# resourceVersion or uid moved: someone else wrote it) reads the policies
# again and plans anew, this many times, before it gives up.
RESTORE_ATTEMPTS = 3


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
    # they cannot be made without taking someone else's object over. With
    # who holds each (``owner``), in the same order.
    blocked: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()

    def held(self) -> list[str]:
        """``ns/name (managed by X; field managers Y)`` for each blocked policy."""
        return [f"{ref} ({who})" for ref, who in zip(self.blocked, self.holders)]

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
            out.append(f"  BLOCKED, the name is held by a policy that is not ours: {', '.join(self.held())}")
        return out


def clashes(live: list[dict], desired: list[dict]) -> list[str]:
    """The policies of ours in ``desired`` whose name a live policy that is
    not ours holds, each with who holds it: writing them would take someone
    else's object over."""
    have = {policy_key(p): p for p in live}
    return [f"{_ref(key)} ({owner(have[key])})" for key in sorted({policy_key(p) for p in desired})
            if key in have and not is_ours(have[key])]


def plan_changes(live: list[dict], desired: list[dict]) -> Plan:
    """Compare the live policies (ours and others') with the policies of ours wanted."""
    have = {policy_key(p): p for p in live}
    want = {policy_key(p): p for p in desired}
    create, update, blocked, holders = [], [], [], []
    unchanged = 0
    for key, p in sorted(want.items()):
        cur = have.get(key)
        if cur is None:
            create.append(_ref(key))
        elif not is_ours(cur):
            blocked.append(_ref(key))
            holders.append(owner(cur))
        elif same_policy(cur, p):
            unchanged += 1
        else:
            update.append(_ref(key))
    delete = [_ref(k) for k, p in sorted(have.items()) if is_ours(p) and k not in want]
    foreign = [_ref(k) for k, p in sorted(have.items()) if not is_ours(p)]
    return Plan(tuple(create), tuple(update), tuple(delete), unchanged, tuple(foreign), tuple(blocked),
                tuple(holders))


def write_policy(kube: Kube, body: dict, live: dict | None) -> dict:
    """Make one policy of ours exactly ``body``, never someone else's.

    Absent when last read: created, which fails when a policy of that name
    appeared meanwhile (a forced server-side apply would take it over and
    label it ours). Ours when last read: replaced as a whole (a PUT: labels,
    annotations and spec exactly as given, so what other field managers
    added, a ``kubectl label`` or ``kubectl edit``, is gone; server-side
    apply would keep it), under the uid and resourceVersion read, so a
    policy changed or made again since is not overwritten. Raises
    KubeConflict naming the holder when the name is someone else's now."""
    ref = _ref(policy_key(body))
    if live is not None and not is_ours(live):
        raise KubeConflict(f"{ref}: a policy that is not ours ({owner(live)}) has this name")
    if live is None:
        try:
            return kube.create(body)
        except KubeConflict as e:
            now = kube.get(body["apiVersion"], body["kind"], body["metadata"]["name"], body["metadata"]["namespace"])
            who = f"a policy that is not ours ({owner(now)})" if now is not None and not is_ours(now) \
                else "another run's policy"
            raise KubeConflict(f"{ref}: {who} took this name while it was being written ({e})") from e
    meta = live.get("metadata") or {}
    return kube.update({**body, "metadata": {**body["metadata"], "uid": meta.get("uid"),
                                             "resourceVersion": meta.get("resourceVersion")}})


def delete_policy(kube: Kube, live: dict) -> bool:
    """Delete one policy of ours, only the object that was read (its uid and
    resourceVersion as preconditions): KubeConflict when it changed since."""
    ns, name, kind = policy_key(live)
    meta = live.get("metadata") or {}
    return kube.delete(POLICY_KINDS[kind], kind, name, ns, uid=meta.get("uid"),
                       resource_version=meta.get("resourceVersion"))


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
    carrying our label (``write_policy``, ``delete_policy``: each write
    carries what was read as its precondition). A write that meets a
    policy changed since it was read starts over from a fresh read.
    Afterwards reads back and checks the result; raises KubeError naming
    what did not take.
    """
    desired = {policy_key(p): p for p in policies}
    for attempt in range(1, RESTORE_ATTEMPTS + 1):
        result = RestoreResult()
        live = live_policies(kube, namespaces)
        have = {policy_key(p): p for p in live}
        keys = {_ref(k): k for k in list(desired) + list(have)}
        todo = plan_changes(live, policies)
        result.unchanged = todo.unchanged
        result.notes = [f"{held}: a policy that is not ours now has this name; left alone" for held in todo.held()]
        try:
            for ref in todo.create + todo.update:
                key = keys[ref]
                write_policy(kube, clean_policy(desired[key]), have.get(key))
                (result.created if ref in todo.create else result.updated).append(ref)
            for ref in todo.delete:
                delete_policy(kube, have[keys[ref]])
                result.deleted.append(ref)
        except KubeConflict:
            if attempt == RESTORE_ATTEMPTS:
                raise
            continue
        break
    after = {policy_key(p): p for p in live_policies(kube, namespaces) if is_ours(p)}
    wrong = [_ref(k) for k, want in desired.items() if k in after and not same_policy(after[k], want)]
    wrong += [f"{_ref(k)} (missing)" for k in desired if k not in after and _ref(k) not in todo.blocked]
    wrong += [f"{_ref(k)} (should be gone)" for k in after if k not in desired]
    if wrong:
        raise KubeError(f"restore did not take for {', '.join(wrong)}")
    return result
