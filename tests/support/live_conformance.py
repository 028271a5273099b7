"""What the live conformance suites share (tests/e2e/test_conformance_e2e.py
for NetworkPolicy, tests/e2e/test_cnp_conformance_e2e.py for
ClusterNetworkPolicy): their pods made Ready with the deny behaviour measured,
and the run of every case against the lane, compared with the engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from cluster.live.observe.poll import wait_until
from cluster.live.observe.readiness import workload_ready
from cluster.live.setup import canary, standins

READY_TIMEOUT_S = 180.0


def ready_universe(kube, namespaces: Mapping[str, Mapping[str, str]], pods: Iterable[dict],
                   labels: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Create the namespaces (with ``labels``) and pods, wait until the pods
    are Ready; their addresses by "ns/name", and how this CNI answers a
    denied packet (the canary), which decides how a refusal reads."""
    for ns, ns_labels in namespaces.items():
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {**labels,
                                                                                                  **ns_labels}}})
    standins.wait_service_accounts(kube, list(namespaces), sleep=time.sleep, clock=time.monotonic)
    keys = []
    for pod in pods:
        kube.apply(pod)
        keys.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
    live: dict[str, dict | None] = {}

    def all_ready() -> tuple[bool, str]:
        live.update({k: kube.get("v1", "Pod", k.split("/")[1], k.split("/")[0]) for k in keys})
        waiting = [k for k, p in live.items() if not workload_ready(p, k)[0]]
        return not waiting, f"not Ready: {', '.join(waiting)}"

    wait_until("the conformance pods are Ready", all_ready, timeout_s=READY_TIMEOUT_S, interval_s=2.0,
               clock=time.monotonic, sleep=time.sleep)
    measured = canary.run(kube, sleep=time.sleep, clock=time.monotonic)
    assert measured.ok, measured.summary()
    return {k: p["status"]["podIP"] for k, p in live.items()}, measured.deny_behaviour


def run_cases(prober, targets: Mapping, cases, *, clear: Callable[[], None], apply: Callable[[object], None],
              predict: Callable[[object, str | None], Mapping], table_key: Callable[[object], tuple],
              dataplane: str | None, title: str, deny: str) -> tuple[bool, str]:
    """Apply each case alone (``clear`` first), probe ``targets`` and compare
    with ``predict(case, dataplane)``. Returns whether every case agrees, and
    the report: "TITLE: N/M cases agree with the engine (...)" with the
    cases where the dataplane departs from the API as written, then a line
    a case (and one for each of the first wrong edges)."""
    clear()
    warm = prober.run(targets, {e: True for e in targets})
    closed = [f"{e}: {o.result.kind} ({o.result.detail})" for e, o in warm.observations.items() if not o.allowed]
    assert not closed, f"the conformance pods do not reach each other: {'; '.join(closed[:5])}"
    t0 = time.monotonic()
    agree, lines, departs = 0, [], []
    for case in cases:
        clear()
        apply(case)
        want = predict(case, dataplane)
        if want != predict(case, None):
            departs.append(case.id)
        predicted = {e: want[table_key(e)] for e in targets}
        run = prober.run(targets, predicted)
        wrong = sorted((e for e, o in run.observations.items() if o.allowed is not predicted[e]), key=str)
        if not wrong:
            agree += 1
            lines.append(f"  agree     {case.id} ({run.matched_seconds or 0:.1f} s to match)")
            continue
        lines.append(f"  DISAGREE  {case.id}: {len(wrong)} edge(s)")
        for e in wrong[:8]:
            o = run.observations[e]
            lines.append(f"      {e}: predicted {'allowed' if predicted[e] else 'blocked'}, observed "
                         f"{o.result.kind} ({o.result.detail})")
    clear()
    summary = (f"{title}: {agree}/{len(cases)} cases agree with the engine (dataplane {dataplane or 'as the API'}: "
               f"{len(departs)} case(s) depart from the API's wording{': ' + ', '.join(departs) if departs else ''}; "
               f"deny behaviour {deny}; {len(targets)} probes a case; {time.monotonic() - t0:.0f} s)")
    return agree == len(cases), summary + "\n" + "\n".join(lines)
