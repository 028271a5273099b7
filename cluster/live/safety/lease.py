"""One run at a time changes a cluster, across machines: a cluster-side lease.

The local lock (``cluster.live.safety.lock``) keeps two runs on one machine apart.
Two machines, or a CI job and a laptop, pointed at one shared cluster share
nothing but the cluster, so the cluster holds the lock: a
``coordination.k8s.io/v1`` Lease, the object Kubernetes' own components use
for leader election (client-go ``tools/leaderelection/resourcelock/
leaselock.go``), written with optimistic concurrency (a create that fails
when the Lease exists, updates that fail when it changed since it was read).

Where: ``kube-system/dashi-cluster``. kube-system exists on every cluster and
is where the control plane keeps its own leader-election Leases, so the tool
creates no namespace of its own on a shared cluster (a namespace to create
would itself need a lock, and one to clean up); one well-known name per
cluster is what every runner must agree on, whatever profile it applies.
The cost: the account needs get/create/update on leases in kube-system, and
the error says so when it lacks them.

The protocol (client-go's leader election, k8s.io/client-go/tools/
leaderelection/leaderelection.go, tryAcquireOrRenew):

* acquire: read the Lease. Absent: create it holding it (409, someone was
  faster: read again). Released (no holder), or held by a process of this
  machine that no longer runs (same host, boot and pid namespace; a kill -9
  leaves nobody to release it): taken by an update carrying the
  resourceVersion that was read (409: someone else took it first: refused,
  naming them). Held by anyone else: taken over only once its
  resourceVersion has stayed unchanged for a whole ``LEASE_SECONDS`` as
  measured on this machine's monotonic clock (client-go's observedTime),
  never by comparing the holder's ``renewTime`` with this machine's wall
  clock: two machines whose clocks differ by more than the lease would both
  hold it. When the holder's renewTime looks stale by this machine's clock
  the run watches the Lease for what is left of that duration (a run that
  ended long ago is taken over within a minute); when it looks fresh, the
  run is refused at once. What this machine saw (the resourceVersion and
  since when, on its monotonic clock) is kept in the cluster's state
  directory, so a later run counts from the first look, whatever the
  clocks say. A Lease that changes while it is watched is a live run: the
  watcher is refused.
* renew: a background thread moves ``renewTime`` every ``RENEW_EVERY_S``
  while the command runs; the holder re-reads the Lease before each batch
  of writes (``Hold.check``), so a lease taken over is noticed before
  anything more is changed, not at the next renewal.
* release: the holder is cleared, so the next run need not wait; against an
  API server that does not answer the release gives up after
  ``RELEASE_WAIT_S``. A run that is killed cannot release: its lease is
  taken over after it has stayed unchanged for ``LEASE_SECONDS``.
* lost: the renewal finds another holder, or has not succeeded for
  ``RENEW_DEADLINE_S`` on the monotonic clock (the API server is away):
  ``check`` raises before the command changes anything more. The deadline
  is shorter than the lease, as client-go's renew deadline is: another
  machine takes the lease over only once it has seen it unchanged for the
  whole duration, which begins after the last renewal that went through.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from cluster.errors import KubeConflict, KubeError, LockError
from cluster.live.record.files import atomic_write, now_iso, whoami
from cluster.live.safety.lock import ClusterLock
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Kube
from cluster.threads import start_quiet

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "dashi-cluster"
# A minute: long enough to ride out an API server restart or a laptop's
# network hiccup without losing the lease; short enough that a run killed on
# another machine blocks the next one for at most a minute.
LEASE_SECONDS = 60
# Three renewals per lease duration: two may fail and the lease still holds
# (client-go's leader election renews at 2/3 of its lease by default).
RENEW_EVERY_S = 15.0
# A holder that has not renewed for this long stops before changing
# anything more: two thirds of the lease, as client-go's RenewDeadline (10 s
# of 15 s), so it has stopped well before anyone may take the lease over.
RENEW_DEADLINE_S = 40.0
# How often a run waiting for a lease to run out reads it again (client-go's
# RetryPeriod is 2 s).
WATCH_EVERY_S = 2.0
# A release that cannot reach the API server in this long leaves the lease
# to be taken over (Ctrl-C or an unreachable API server end a run within seconds).
RELEASE_WAIT_S = 5.0
HOLDER_ANNOTATION = "dashi.io/holder"
# In the cluster's state directory: the Lease as this machine last saw it
# held by someone else (resourceVersion, boot, since when on the monotonic clock).
SEEN_FILE = "lease-seen.json"
# The leases this process holds right now (holder ids). A lease whose holder
# is this process but not in here was given up without being cleared on the
# cluster (the API server was away at the time): nobody holds it any more.
_HELD_HERE: set[str] = set()


def micro_time(t: float) -> str:
    """A metav1.MicroTime: RFC 3339 with exactly six fractional digits, UTC."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text) -> float | None:
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------
# Who we are, precisely enough to tell later whether we are still running


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat
    field 22): with the pid, it names one process even when pids are reused."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def this_process(command: str) -> dict:
    user, host = whoami()
    pid = os.getpid()
    return {"id": f"{user}@{host} pid {pid} #{secrets.token_hex(3)}", "user": user, "host": host, "pid": pid,
            "start": _process_start(pid), "boot": _read("/proc/sys/kernel/random/boot_id"),
            "pidns": _pid_namespace(), "command": command, "since": now_iso()}


def process_gone(holder: dict) -> bool:
    """True only when ``holder`` is provably a process of this machine that has
    ended: same host, same boot, same pid namespace, and its pid is not
    running (or runs a process that started at another time)."""
    me = this_process("")
    if not holder or any(not holder.get(k) or holder.get(k) != me[k] for k in ("host", "boot", "pidns")):
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return holder.get("id") not in _HELD_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, someone else's
    start = _process_start(pid)
    return bool(holder.get("start") and start and start != holder["start"])


def describe(holder: dict, spec: dict) -> str:
    """``ada@laptop pid 4242 (`network-policies-up (dashi)`) since <time>``."""
    who = (f"{holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}"
           if holder else str(spec.get("holderIdentity") or "?"))
    cmd = f" (`{holder['command']}`)" if holder.get("command") else ""
    since = holder.get("since") or spec.get("acquireTime") or "?"
    return f"{who}{cmd} since {since}"


# --------------------------------------------------------------------------
# The lease


class ClusterLease:
    """The Lease ``kube-system/dashi-cluster`` held by this command.

    ``now`` is the wall clock, for the times written into the Lease (and
    the guess whether its holder may have ended); ``clock`` is the monotonic
    clock every decision is measured on; ``seen`` is where this machine
    keeps what it saw of the Lease (None: in memory only); ``say`` prints a
    line when the run waits for a Lease to run out."""

    def __init__(self, kube: Kube, command: str, *, duration_s: int = LEASE_SECONDS,
                 renew_every_s: float = RENEW_EVERY_S, now: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 seen: Path | None = None, say: Callable[[str], None] | None = None,
                 namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME):
        self.kube = kube
        self.command = command
        self.duration_s = duration_s
        self.renew_every_s = renew_every_s
        self.renew_deadline_s = min(RENEW_DEADLINE_S, duration_s * 2 / 3)
        self.now = now
        self.clock = clock
        self.sleep = sleep
        self.seen_path = seen
        self.say = say or (lambda text: None)
        self.namespace, self.name = namespace, name
        self.me = this_process(command)
        self.held = False
        self.lost: str | None = None
        self._renewed = 0.0
        self._seen: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()  # the renewal thread and the main thread never write at once

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- reading ------------------------------------------------------------

    def _get(self) -> dict | None:
        return self.kube.get(LEASE_API, "Lease", self.name, self.namespace)

    @staticmethod
    def holder_of(lease: dict | None) -> dict:
        ann = ((lease or {}).get("metadata") or {}).get("annotations") or {}
        try:
            data = json.loads(ann.get(HOLDER_ANNOTATION) or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _state(self, lease: dict) -> tuple[str, str]:
        """("free" | "held" | "stale" | "gone", who) of a Lease read from the
        cluster. "stale": renewTime + duration is past by this machine's wall
        clock, which says only that its holder may have ended (the clocks of
        two machines may differ by more than a lease)."""
        spec = lease.get("spec") or {}
        holder = self.holder_of(lease)
        if not spec.get("holderIdentity"):
            return "free", ""
        who = describe(holder if holder.get("id") == spec.get("holderIdentity") else {}, spec)
        if holder.get("id") == spec.get("holderIdentity") and process_gone(holder):
            return "gone", who
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or self.duration_s
        if renewed is None or renewed + duration < self.now():
            return "stale", who
        return "held", who

    def _refused(self, lease: dict, who: str, unchanged: float | None = None) -> LockError:
        spec = lease.get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        left = ""
        if renewed is not None:
            ago = self.now() - renewed
            left = (f"; renewed {int(ago)} s ago by this machine's clock" if ago > -1 else
                    f"; its renew time is {int(-ago)} s ahead of this machine's clock")
        if unchanged is not None:
            left += (f"; unchanged for {int(unchanged)} s as seen from here, it is taken over once unchanged for "
                     f"{int(self.duration_s)} s")
        return LockError(f"another run is changing this cluster: {who} (lease {self.where}{left}). "
                         "Wait for it to finish")

    # -- what this machine saw of a Lease held by someone else ----------------

    def _first_seen(self, lease: dict) -> float:
        """Since when (this machine's monotonic clock) the Lease has been seen
        exactly as it is now: its resourceVersion, in this boot."""
        key = {"rv": (lease.get("metadata") or {}).get("resourceVersion"), "boot": self.me["boot"],
               "holder": (lease.get("spec") or {}).get("holderIdentity")}
        seen = self._seen
        if not seen and self.seen_path is not None:
            try:
                seen = json.loads(self.seen_path.read_text())
            except (OSError, ValueError):
                seen = {}
        if not isinstance(seen, dict) or {k: seen.get(k) for k in key} != key \
                or not isinstance(seen.get("at"), (int, float)) or seen["at"] > self.clock():
            seen = {**key, "at": self.clock()}
            if self.seen_path is not None:
                try:
                    atomic_write(self.seen_path, (json.dumps(seen) + "\n").encode())
                except OSError:
                    pass  # then only this run counts it
        self._seen = seen
        return float(seen["at"])

    def _watch(self, lease: dict, who: str, since: float) -> dict:
        """Read the Lease until it has been unchanged for a whole duration
        since ``since``; LockError the moment it changes (its holder runs)."""
        spec = lease.get("spec") or {}
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        ago = f"{int(self.now() - renewed)} s ago by this machine's clock" if renewed else "never"
        left = self.duration_s - (self.clock() - since)
        self.say(f"The cluster lease {self.where} is held by {who}, last renewed {ago}: taking it over if it "
                 f"stays unchanged for {int(self.duration_s)} s as measured here ({int(left + 0.999)} s to go)")
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        while (left := self.duration_s - (self.clock() - since)) > 0:
            self.sleep(min(WATCH_EVERY_S, left))
            now = self._get()
            if now is None or (now.get("metadata") or {}).get("resourceVersion") != rv:
                state, who_now = self._state(now) if now is not None else ("free", "")
                if state == "free":
                    raise LockError(f"the run that held this cluster ({who}) released it while this run waited "
                                    "for its lease to run out; the policies may have changed since the plan was "
                                    "shown. Run the command again")
                raise self._refused(now, who_now)
        return lease

    # -- writing ------------------------------------------------------------

    def _body(self, lease: dict | None, *, acquire: bool) -> dict:
        t = micro_time(self.now())
        spec = dict((lease or {}).get("spec") or {})
        if acquire:
            spec.update(holderIdentity=self.me["id"], acquireTime=t,
                        leaseTransitions=int(spec.get("leaseTransitions") or 0) + (1 if lease else 0))
        spec.update(renewTime=t, leaseDurationSeconds=int(self.duration_s))
        meta = {"name": self.name, "namespace": self.namespace,
                "labels": {**(((lease or {}).get("metadata") or {}).get("labels") or {}),
                           MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                "annotations": {**(((lease or {}).get("metadata") or {}).get("annotations") or {}),
                                HOLDER_ANNOTATION: json.dumps(self.me, sort_keys=True)}}
        if lease is not None:
            meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": meta, "spec": spec}

    def _permission(self, e: KubeError) -> KubeError:
        if e.status in (401, 403):
            return KubeError(f"cannot take the cluster lease {self.where} ({e}): changing a cluster needs get, "
                             f"create and update on leases.coordination.k8s.io in {self.namespace}")
        return e

    def acquire(self) -> str:
        """Take the lease or raise LockError naming its holder. Returns what
        was found ("new", "free", "expired" or "gone", the latter two with who)."""
        for _ in range(3):  # each pass re-reads after losing a race
            with self._io:
                try:
                    lease = self._get()
                    started = self.clock()
                    if lease is None:
                        self.kube.create(self._body(None, acquire=True))
                        found = "new"
                    else:
                        state, who = self._state(lease)
                        if state in ("held", "stale"):
                            since = self._first_seen(lease)
                            if self.clock() - since < self.duration_s:
                                if state == "held":
                                    raise self._refused(lease, who, self.clock() - since)
                                lease = self._watch(lease, who, since)
                            state = "expired"
                        started = self.clock()
                        self.kube.update(self._body(lease, acquire=True))
                        found = state + (f": {who}" if who else "")
                except KubeConflict:
                    continue
                except LockError:
                    raise
                except KubeError as e:
                    raise self._permission(e) from e
            self.held, self.lost, self._renewed = True, None, started
            _HELD_HERE.add(self.me["id"])
            return found
        lease = self._get() or {}
        raise self._refused(lease, self._state(lease)[1] if lease else "another run")

    def renew(self) -> None:
        """Move renewTime on; LockError when the lease is no longer ours."""
        with self._io:
            for _ in range(2):
                started = self.clock()
                lease = self._get()
                self._check_ours(lease)
                try:
                    self.kube.update(self._body(lease, acquire=False))
                except KubeConflict:
                    continue
                self._renewed = started
                return

    def _check_ours(self, lease: dict | None) -> None:
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.me["id"]:
            who = self._state(lease)[1] if lease else ""
            raise LockError(f"the cluster lease {self.where} was taken over"
                            + (f" by {who}" if who else "") + " while this run held it")

    def check(self) -> None:
        """Raise LockError when this run can no longer be sure it holds the lease."""
        if not self.held:
            return
        if self.lost:
            raise LockError(f"{self.lost}; stopping before changing anything more")
        silent = self.clock() - self._renewed
        if silent > self.renew_deadline_s:
            raise LockError(f"the cluster lease {self.where} could not be renewed for {int(silent)} s (is the API "
                            "server reachable?), so another run may hold it soon; stopping before changing "
                            "anything more")

    def reread(self) -> None:
        """Before a batch of writes: read the Lease and make sure it is still
        ours (LockError) and the API server answers (KubeError)."""
        self.check()
        if not self.held:
            return
        try:
            self._check_ours(self._get())
        except LockError as e:
            self.lost = str(e)
            raise LockError(f"{e}; stopping before changing anything more") from None

    def release(self) -> bool:
        """Stop renewing and clear the holder. True when the lease was cleared
        (or was not ours any more); False when the API server did not answer
        within ``RELEASE_WAIT_S``: then it is taken over once it has stayed
        unchanged for its duration."""
        self._stop.set()
        self._thread = None  # a renewal in flight ends on its own; the clearing waits for it
        if not self.held:
            return True
        self.held = False
        _HELD_HERE.discard(self.me["id"])
        cleared = threading.Event()

        def clear() -> None:
            with self._io:
                try:
                    lease = self._get()
                    if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.me["id"]:
                        body = self._body(lease, acquire=False)
                        body["spec"].pop("holderIdentity", None)
                        self.kube.update(body)
                    cleared.set()
                except BaseException:  # noqa: BLE001 - best effort, in a thread nobody joins for long:
                    pass  # whatever it meets, the lease is taken over once unchanged for its duration

        # In a thread of its own: against an API server that says nothing the
        # release is abandoned after its bound (Ctrl-C ends a run within seconds).
        worker = threading.Thread(target=clear, name="dashi-lease-release", daemon=True)
        start_quiet(worker)
        worker.join(RELEASE_WAIT_S)
        return cleared.is_set()

    # -- the renewal thread -------------------------------------------------

    def start_renewing(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="dashi-lease", daemon=True)
        start_quiet(self._thread)  # alive for the whole run: a Ctrl-C must not land here

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every_s):
            try:
                self.renew()
            except LockError as e:
                self.lost = str(e)
                return
            except KubeError:
                pass  # the API server is away for now; check() decides when that is too long


class Hold:
    """Both locks for one command that changes a cluster: this machine's
    (``ClusterLock``, taken first: the cheap refusal) and the cluster's
    (``ClusterLease``), released in the reverse order."""

    def __init__(self, kube: Kube, directory: Path, command: str, **lease_kw):
        self.lock = ClusterLock(directory, command)
        self.lease = ClusterLease(kube, command, **{"seen": directory / SEEN_FILE, **lease_kw})
        self.found = ""
        self.held = False

    def acquire(self) -> "Hold":
        if self.held:
            return self  # taken already (``with`` around a Hold acquired by hand)
        self.lock.acquire()
        try:
            self.found = self.lease.acquire()
            self.lease.start_renewing()
        except BaseException:
            self.lock.release()
            raise
        self.held = True
        return self

    def check(self) -> None:
        """Before a batch of writes: the lease is still ours (re-read)."""
        self.lease.reread()

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            self.lease.release()
        finally:
            self.lock.release()

    def __enter__(self) -> "Hold":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lease_holder(kube: Kube, now: Callable[[], float] = time.time) -> str | None:
    """Who holds the cluster lease right now (for read-only commands), or None."""
    lease = ClusterLease(kube, "", now=now)
    try:
        found = lease._get()
    except KubeError:
        return None
    if found is None:
        return None
    state, who = lease._state(found)
    return who if state == "held" else None
