"""The flow files users hand over, read into ``Flow`` values.

One JSON object per line; the format is recognised per line:

- **Hubble**: ``hubble observe -o json`` (and ``-o jsonpb``, the same) prints
  each ``observer.GetFlowsResponse`` in proto3's JSON mapping with the proto
  field names (cilium v1.20.2 ``hubble/pkg/printer/printer.go``, JSONPB;
  ``api/v1/observer/observer.pb.json.go``: ``UseProtoNames``):
  ``{"flow": {...}, "node_name": ..., "time": ...}``; lines holding
  ``node_status`` or ``lost_events`` instead are not flows (lost events are
  counted). The legacy ``-o json`` (``LegacyJSONOutput``) prints the bare
  ``flow.Flow``. Field names are read in both spellings the mapping allows
  (``destination_port`` and ``destinationPort``). The fields, from
  ``api/v1/flow/flow.proto``: ``source``/``destination`` (``namespace``,
  ``pod_name``, ``labels`` as ``k8s:key=value`` and ``reserved:host`` ...,
  ``identity``), ``IP`` (``source``, ``destination``), ``l4`` (``TCP``,
  ``UDP`` or ``SCTP`` with ``destination_port``; ``TCP.flags``),
  ``verdict``, ``is_reply``, ``Type``, ``time``, ``drop_reason_desc``,
  ``egress_denied_by``/``ingress_denied_by`` (``flow.Policy``).
- **Calico, Felix's flow logs** (``flows.log``, the JSON Calico ships to
  Elasticsearch; projectcalico/calico ``felix/collector/flowlog``
  ``JSONOutput``, documented as "Flow log data types"): ``source_namespace``,
  ``source_name`` (``-`` when aggregated, then ``source_name_aggr``),
  ``source_type`` (``wep`` a pod, ``hep`` a host, ``ns``/``net`` networks),
  ``source_labels: {"labels": ["k=v"]}``, ``source_ip``, the same for
  ``dest_*`` with ``dest_port``, ``proto`` (``tcp``, ``udp``, ``sctp``,
  ``icmp`` or a number), ``action`` (``allow``/``deny``), ``reporter``,
  ``start_time`` and ``num_flows_started``.
- **Calico, Goldmane's flows** (Calico 3.30+, what its emitter posts: the
  ``goldmane.Flow`` message of ``goldmane/proto/api.proto`` through Go's
  encoding/json, so enums may be numbers): ``Key`` (``source_name``,
  ``source_namespace``, ``source_type``, ``dest_*``, ``dest_port``,
  ``proto``, ``action``, ``reporter``), ``source_labels``/``dest_labels``
  as ``["k=v"]``, ``start_time``, ``num_connections_started``.

A flow is one connection being opened, seen once per report: Hubble's
replies (``is_reply``) and the packets of a TCP connection after its SYN
are counted as skipped, not as flows; so are L7 and socket events. A line
that is not JSON, or JSON of none of these shapes, is an error naming the
file and the line.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cluster.errors import ManifestError
from cluster.policy.flows.model import Flow, Peer, labels_of

# Cilium's reserved identities (pkg/identity/numericidentity.go) and labels.
_RESERVED_IDS = {1: "host", 2: "world", 6: "host", 7: "apiserver", 9: "world"}
_RESERVED_LABELS = {"reserved:host": "host", "reserved:remote-node": "host", "reserved:world": "world",
                    "reserved:world-ipv4": "world", "reserved:world-ipv6": "world",
                    "reserved:kube-apiserver": "apiserver"}
# Hubble's identity labels that are not the pod's own labels.
_NOT_POD_LABELS = ("io.kubernetes.pod.namespace", "io.cilium.k8s.")
_IANA = {"1": "ICMP", "6": "TCP", "17": "UDP", "58": "ICMPv6", "132": "SCTP"}
_L4 = ("TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6", "VRRP", "IGMP")
# Why a Hubble event is not a flow (the counts every report shows).
SKIP_REPLY = "replies (the answer of a connection already counted)"
SKIP_MID_TCP = "TCP packets after the SYN (the connection is counted once)"
_HUBBLE_VERDICTS = {"FORWARDED": "forwarded", "DROPPED": "dropped", "AUDIT": "audit", "REDIRECTED": "forwarded",
                    "TRANSLATED": "forwarded", 1: "forwarded", 2: "dropped", 4: "audit"}


def _get(d: dict, proto_name: str, json_name: str | None = None):
    v = d.get(proto_name)
    if v is None and json_name:
        v = d.get(json_name)
    return v


def parse_time(value) -> float | None:
    """An RFC 3339 time (nanoseconds cut to micro), or seconds since the epoch."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Hubble


def hubble_peer(ep: dict | None, ip: str | None) -> Peer:
    ep = ep or {}
    labels = ep.get("labels") or ()
    kind = None
    pod_labels = {}
    for lab in labels:
        if lab in _RESERVED_LABELS:
            seen = _RESERVED_LABELS[lab]
            # The node that runs the API server carries both identities.
            kind = "host-apiserver" if {kind, seen} == {"host", "apiserver"} else kind or seen
        elif lab.startswith("k8s:"):
            key, _, value = lab[4:].partition("=")
            if not key.startswith(_NOT_POD_LABELS):
                pod_labels[key] = value
    pod = _get(ep, "pod_name", "podName")
    namespace = ep.get("namespace") or None
    if kind is None:
        if pod and namespace:
            kind = "pod"
        else:
            kind = _RESERVED_IDS.get(ep.get("identity"), "unknown")
    return Peer(kind, namespace, pod or None, labels_of(pod_labels), ip or None)


def hubble_flow(f: dict, skipped: Counter) -> Flow | None:
    """A Hubble ``flow.Flow`` (as a JSON dict) as a Flow; None (and a count
    in ``skipped``) when it is not a connection being opened."""
    ftype = _get(f, "Type", "type")
    if ftype not in (None, "L3_L4", 1):
        skipped[f"Hubble {ftype} events (not L3/L4)"] += 1
        return None
    event = (_get(f, "event_type", "eventType") or {}).get("type")
    if event == 5 and f.get("verdict") not in ("AUDIT", 4):
        # A policy-verdict notice; the same packet's trace (forwarded) or
        # drop notice is the flow. Audit verdicts come only as these.
        skipped["policy-verdict notices (the same packet's trace or drop is counted)"] += 1
        return None
    if _get(f, "is_reply", "isReply") is True:
        skipped[SKIP_REPLY] += 1
        return None
    l4 = f.get("l4") or {}
    protocol = next((p for p in _L4 if p in l4), None)
    port = None
    if protocol in ("TCP", "UDP", "SCTP"):
        inner = l4[protocol] or {}
        port = _get(inner, "destination_port", "destinationPort")
        if protocol == "TCP":
            flags = inner.get("flags")
            if flags and (not flags.get("SYN") or flags.get("ACK")):
                skipped[SKIP_MID_TCP] += 1
                return None
    ip = f.get("IP") or {}
    verdict = f.get("verdict")
    denied = [p for key in ("egress_denied_by", "egressDeniedBy", "ingress_denied_by", "ingressDeniedBy")
              for p in (f.get(key) or ())]
    return Flow(src=hubble_peer(f.get("source"), ip.get("source")),
                dst=hubble_peer(f.get("destination"), ip.get("destination")),
                port=int(port) if port else None, protocol=protocol,
                verdict=_HUBBLE_VERDICTS.get(verdict, "other"),
                time=parse_time(f.get("time")),
                drop_reason=" ".join(str(x).lower() for x in (_get(f, "drop_reason_desc", "dropReasonDesc"),
                                                               _get(f, "traffic_direction", "trafficDirection"))
                                     if x) if verdict in ("DROPPED", 2) else "",
                policies=tuple(f"{p.get('kind') or 'policy'} {p.get('namespace', '')}/{p.get('name', '')}"
                               for p in denied))


# --------------------------------------------------------------------------
# Calico


def _proto(value) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    return _IANA.get(text, text.upper() if text.lower() in ("tcp", "udp", "sctp", "icmp") else text)


def _calico_labels(value) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):  # Felix: {"labels": ["k=v", ...]}
        value = value.get("labels")
    pairs = {}
    for item in value or ():
        key, _, val = str(item).partition("=")
        pairs[key] = val
    return labels_of(pairs)


# Felix's endpoint types (felix/collector/types/endpoint) and Goldmane's
# EndpointType (goldmane/proto/api.proto), by name or number.
_CALICO_KINDS = {"wep": "pod", "hep": "host", "ns": "world", "net": "world",
                 "WorkloadEndpoint": "pod", "HostEndpoint": "host", "NetworkSet": "world", "Network": "world",
                 1: "pod", 2: "host", 3: "world", 4: "world"}
_CALICO_ACTIONS = {"allow": "forwarded", "deny": "dropped", "Allow": "forwarded", "Deny": "dropped",
                   1: "forwarded", 2: "dropped"}


def _calico_peer(d: dict, side: str, labels) -> Peer:
    kind = _CALICO_KINDS.get(d.get(f"{side}_type"), "unknown")
    name = d.get(f"{side}_name")
    if name in (None, "", "-"):
        name = d.get(f"{side}_name_aggr")
    namespace = d.get(f"{side}_namespace")
    if namespace in ("", "-"):
        namespace = None
    if kind == "pod" and not namespace:
        kind = "unknown"
    return Peer(kind, namespace, name if kind == "pod" else None, _calico_labels(labels), d.get(f"{side}_ip"))


def calico_flow(d: dict, labels_from: dict, count_key: str) -> Flow:
    port = d.get("dest_port")
    count = labels_from.get(count_key) or labels_from.get("num_flows") or 1
    return Flow(src=_calico_peer(d, "source", labels_from.get("source_labels")),
                dst=_calico_peer(d, "dest", labels_from.get("dest_labels")),
                port=int(port) if port else None, protocol=_proto(d.get("proto")),
                verdict=_CALICO_ACTIONS.get(d.get("action"), "other"),
                time=parse_time(labels_from.get("start_time")), count=max(1, int(count)))


# --------------------------------------------------------------------------
# Any line


class FlowFile:
    """The flows of one file, read lazily; what was skipped and why, and the
    formats seen, are known once it has been iterated."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.skipped: Counter = Counter()
        self.lost = 0  # Hubble's lost_events: flows its ring buffer or queue lost
        self.formats: Counter = Counter()
        self.lines = 0

    def _error(self, n: int, why: str) -> ManifestError:
        return ManifestError(f"line {n}: {why}", path=str(self.path))

    def __iter__(self) -> Iterator[Flow]:
        try:
            fh = self.path.open(encoding="utf-8")
        except OSError as e:
            raise ManifestError(f"cannot read: {e.strerror or e}", path=str(self.path)) from None
        with fh:
            n = 0
            try:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    self.lines += 1
                    try:
                        d = json.loads(line)
                    except ValueError as e:
                        raise self._error(n, f"not JSON ({e.msg})") from None
                    flow = self.parse(d, n)
                    if flow is not None:
                        yield flow
            except UnicodeDecodeError:
                raise self._error(n + 1, "not UTF-8 text") from None

    def parse(self, d, n: int) -> Flow | None:
        if not isinstance(d, dict):
            raise self._error(n, f"expected a JSON object, found {type(d).__name__}")
        try:
            if "flow" in d:
                self.formats["hubble"] += 1
                return hubble_flow(d["flow"] or {}, self.skipped)
            if "lost_events" in d or "lostEvents" in d:
                lost = _get(d, "lost_events", "lostEvents") or {}
                self.lost += int(_get(lost, "num_events_lost", "numEventsLost") or 0)
                self.skipped["Hubble lost-events notices"] += 1
                return None
            if "node_status" in d or "nodeStatus" in d:
                self.skipped["Hubble node-status notices"] += 1
                return None
            if "Key" in d or "key" in d:
                self.formats["calico (Goldmane)"] += 1
                return calico_flow(d.get("Key") or d.get("key") or {}, d, "num_connections_started")
            if "source_namespace" in d and "action" in d:
                self.formats["calico (Felix flow logs)"] += 1
                return calico_flow(d, d, "num_flows_started")
            if "verdict" in d and ("source" in d or "IP" in d or "l4" in d):
                self.formats["hubble (legacy JSON)"] += 1
                return hubble_flow(d, self.skipped)
        except (TypeError, ValueError, AttributeError) as e:
            raise self._error(n, f"a field has the wrong type ({e})") from None
        raise self._error(n, "neither a Hubble flow (hubble observe -o json) nor a Calico flow log; keys: "
                             + ", ".join(sorted(map(str, d))[:8]))
