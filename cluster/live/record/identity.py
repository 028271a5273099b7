"""A cluster's identity (the uid of its kube-system namespace) and what this
machine knows about it (``<state>/clusters/<uid>/cluster.yaml``, and the
contexts index ``<state>/contexts.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cluster import yamlio
from cluster.errors import StateError
from cluster.live.record.files import atomic_write, context_slug, dump_yaml, now_iso, state_root

DENY_BEHAVIOURS = ("drop", "reject")


@dataclass(frozen=True)
class ClusterIdentity:
    """Which cluster a context reaches: the uid of its kube-system namespace."""

    uid: str
    context: str
    server: str


def identify(kube) -> ClusterIdentity:
    """Ask the cluster who it is. Raises KubeError when it cannot be asked."""
    context, server = kube.context(), kube.server()
    ns = kube.get("v1", "Namespace", "kube-system")
    uid = ((ns or {}).get("metadata") or {}).get("uid")
    if not uid or not re.fullmatch(r"[A-Za-z0-9-]{8,64}", str(uid)):
        raise StateError(f"cannot tell which cluster context {context} ({server}) reaches: its kube-system "
                         "namespace " + ("does not exist" if ns is None else f"has no usable uid ({uid!r})")
                         + "; the rollout keys its record by that uid")
    return ClusterIdentity(str(uid), context, server)


def known_cluster_dir(context: str, root: Path | None = None) -> Path | None:
    """Offline: the record of the cluster a context reached last (from the
    contexts.yaml index that every command updates), or None."""
    root = root or state_root()
    index_path = root / "contexts.yaml"
    try:
        index = yamlio.load(index_path.read_text()) if index_path.exists() else {}
    except (OSError, yamlio.YAMLError):
        return None
    entry = index.get(context) if isinstance(index, dict) else None
    uid = entry.get("uid") if isinstance(entry, dict) else None
    return root / "clusters" / str(uid) if uid else None


class ClusterState:
    """What this machine knows about one cluster: ``<state>/clusters/<uid>/``."""

    def __init__(self, identity: ClusterIdentity, root: Path | None = None):
        self.identity = identity
        self.root = root or state_root()
        self.dir = self.root / "clusters" / identity.uid
        self.path = self.dir / "cluster.yaml"
        # Said once by the first command that finds a context pointing at a
        # cluster other than the one it reached before.
        self.note: str | None = None

    @classmethod
    def open(cls, kube, root: Path | None = None) -> "ClusterState":
        """Identify the cluster behind ``kube``, note a context that now reaches
        another cluster, and remember which cluster the context reached."""
        state = cls(identify(kube), root)
        state._remember_context()
        return state

    def profile_dir(self, profile: str) -> Path:
        return self.dir / context_slug(profile)

    # -- cluster.yaml -----------------------------------------------------

    def load(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = yamlio.load(self.path.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError("not a mapping")
        except (OSError, yamlio.YAMLError, ValueError) as e:
            raise StateError(f"cluster record {self.path} is unreadable ({str(e).splitlines()[0]}); "
                             "move it away (it only caches what the canary measured)") from None
        return data

    def _save(self, data: dict) -> None:
        atomic_write(self.path, dump_yaml(data, "dashi-cluster: what this machine knows about one cluster,\n"
                                                "named by the uid of its kube-system namespace."))

    @property
    def cni(self) -> dict:
        return self.load().get("cni") or {}

    @property
    def deny_behaviour(self) -> str:
        """``drop`` (Calico, Cilium: a denied packet is silently dropped, a
        probe times out), ``reject`` (k3s's kube-router: answered with ICMP
        port-unreachable, a probe is refused) or ``unknown`` (never measured)."""
        value = self.cni.get("deny_behaviour")
        return value if value in DENY_BEHAVIOURS else "unknown"

    def save_cni(self, *, name: str, deny_behaviour: str, evidence: str = "") -> None:
        if deny_behaviour not in DENY_BEHAVIOURS:
            raise StateError(f"deny behaviour must be one of {', '.join(DENY_BEHAVIOURS)}, not {deny_behaviour!r}")
        data = self.load()
        data["cni"] = {"name": name, "deny_behaviour": deny_behaviour, "measured": now_iso(),
                       "evidence": evidence}
        self._save(data)

    def _remember_context(self) -> None:
        ident = self.identity
        index_path = self.root / "contexts.yaml"
        try:
            index = yamlio.load(index_path.read_text()) if index_path.exists() else {}
        except (OSError, yamlio.YAMLError):
            index = {}  # only a cache of what was seen; rebuilt from here on
        index = index if isinstance(index, dict) else {}
        before = index.get(ident.context) if isinstance(index.get(ident.context), dict) else {}
        if before.get("uid") and before["uid"] != ident.uid:
            old = self.root / "clusters" / str(before["uid"])
            self.note = (f"Context {ident.context} now reaches a different cluster (kube-system uid "
                         f"{ident.uid[:8]}, was {str(before['uid'])[:8]} since {before.get('since', '?')}): "
                         "the cluster was re-created. Starting a fresh record for it"
                         + (f"; the old cluster's record stays in {old}" if old.is_dir() else "") + ".")
        now = now_iso()
        data = self.load()
        if data.get("uid") != ident.uid or ident.context not in (data.get("contexts") or {}):
            data["uid"] = ident.uid
            data.setdefault("contexts", {})[ident.context] = {"server": ident.server, "first_seen": now}
            self._save(data)
        if before.get("uid") != ident.uid:
            index[ident.context] = {"uid": ident.uid, "server": ident.server, "since": now}
            atomic_write(index_path, dump_yaml(index, "dashi-cluster: the cluster (kube-system uid) each "
                                                      "kubeconfig context reached last."))
