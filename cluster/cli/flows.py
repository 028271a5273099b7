"""Entry points of the flow tasks: observe, flows-check, matrix-from-flows.

``observe`` records what flows (from Hubble, or a flow file handed over)
into the state directory; ``flows-check`` replays a recording or a file
against every step; ``matrix-from-flows`` drafts matrix.yaml entries. Each
returns the process exit code; expected failures raise a ``DashiError``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cluster.errors import DashiError

# flows-check's exit code when a step would cut observed traffic outside the
# intent (0: nothing would, 1: bad input, as every task).
CUT_EXIT = 3
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text, flag: str = "--duration") -> float:
    """'30', '30s', '2m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise DashiError(f"{flag}: {text!r} is not a duration (e.g. 30s, 2m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def recording_dir(profile_name: str) -> Path:
    """Where ``inv observe`` keeps the latest recording of a profile's traffic."""
    from cluster.live.record.files import state_root

    return state_root() / "recordings" / profile_name


def _load(profile: str, cni: str | None = None):
    from cluster.cli.policy import _load as load

    return load(profile, cni)


def gather(path: str | Path | None, profile_name: str):
    """The flows of a recording directory or a flow file (Hubble, Calico),
    by default the profile's latest recording."""
    from cluster.policy.flows.formats import FlowFile
    from cluster.policy.flows.recording import Gatherer, is_recording, read_recording

    if path is None:
        path = recording_dir(profile_name)
        if not is_recording(path):
            raise DashiError(f"no recording of profile {profile_name}'s traffic ({path}): record one with "
                             "inv observe --duration 60s, or hand over a file with --flows FILE")
    path = Path(path)
    if path.is_dir() and is_recording(path):
        return read_recording(path)
    if path.is_dir():
        raise DashiError(f"{path}: a directory, but not a flow recording (inv observe writes one)")
    ff = FlowFile(path)
    g = Gatherer()
    for flow in ff:
        g.add(flow)
    return g.result({"source": f"{path} ({', '.join(ff.formats) or 'no flows'})", "skipped": dict(ff.skipped),
                     "lost": ff.lost})


def observe(profile: str, *, duration: str | None = None, flows: str | None = None, hubble: str | None = None,
            context: str | None = None, max_flows: int | None = None, max_mib: int | None = None,
            kube_factory=None, out=None) -> int:
    from cluster.cli.common import make_console
    from cluster.policy.flows.recording import DEFAULT_MAX_BYTES, DEFAULT_MAX_FLOWS, write_recording

    out = out or make_console()
    prof = _load(profile)
    caps = {"max_flows": max_flows or DEFAULT_MAX_FLOWS,
            "max_bytes": (max_mib << 20) if max_mib else DEFAULT_MAX_BYTES}
    if (duration is None) == (flows is None):
        raise DashiError("observe needs one of --duration D (record from Hubble) or --flows FILE (hand over "
                         "`hubble observe -o json` output or Calico flow logs)")
    target = recording_dir(prof.name)
    if flows is not None:
        from cluster.policy.flows.formats import FlowFile

        ff = FlowFile(flows)
        path, meta = write_recording(target, ff, {"source": str(flows)}, **caps, late_meta=lambda: {
            "lost": ff.lost, "skipped": dict(ff.skipped), "formats": dict(ff.formats)})
        capped = f"; stopped at its cap ({meta['capped']})" if meta.get("capped") else \
            f" (cap: {caps['max_flows']} flows, {caps['max_bytes'] >> 20} MiB)"
        out.print(f"recorded {meta['kept']} flow(s) of {meta['seen']} read from {flows} "
                  f"({', '.join(ff.formats) or 'no flows'}){capped} -> {path}", markup=False)
    else:
        from cluster.live.observe.flows import record

        seconds = parse_duration(duration)
        with open_hubble(hubble, context, kube_factory, out) as hub:
            out.print(f"observing Hubble at {hub.address} for {seconds:g} s...", markup=False)
            rec = record(hub, seconds, target, **caps)
        out.print(rec.line, markup=False)
    return 0


def open_hubble(address: str | None, context: str | None, kube_factory, out):
    """Hubble at ``address``, or through a port-forward to the hubble-relay of
    the cluster (``context``); a context manager that closes it."""
    from cluster.live.observe.hubble import connect

    if address:
        return connect(address=address)
    from cluster.cli.common import real_kube

    return connect(kube=(kube_factory or real_kube)(context), say=lambda t: out.print(t, markup=False))


def flows_check(profile: str, *, flows: str | None = None, accept: list[str] | None = None, cni: str | None = None,
                as_json: bool = False) -> int:
    from cluster.cli.common import make_console
    from cluster.policy.flows.replay import check_lines, check_to_dict, parse_accept, replay
    from cluster.policy.flows.replay import observe as place

    prof = _load(profile, cni)
    accepted = [parse_accept(a, prof) for a in accept or ()]
    check = replay(prof, place(prof, gather(flows, prof.name)), accepted)
    if as_json:
        print(json.dumps(check_to_dict(check), indent=2))
    else:
        console = make_console()
        for line in check_lines(check):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0 if check.ok else CUT_EXIT


def matrix_from_flows(profile: str, *, flows: str | None = None, out_path: str | None = None) -> int:
    from cluster.policy.flows.replay import draft_matrix
    from cluster.policy.flows.replay import observe as place

    prof = _load(profile)
    obs = place(prof, gather(flows, prof.name))
    text = draft_matrix(prof, obs)
    if out_path:
        try:
            Path(out_path).write_text(text, encoding="utf-8")
        except OSError as e:
            raise DashiError(f"cannot write {out_path}: {e.strerror or e}") from None
        print(f"drafted {text.count('  - from:')} entr(ies) into {out_path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
