"""The live reports as HTML pages, each made from the same dicts as the JSON
(``report.to_json``): smoke's matrix, and the verifications one command ran
(a rollout's ``--html`` page, the evidence of a failed verification).

The rendering itself is the policy layer's (``cluster.policy.htmlreport``):
pure, from dicts."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.live.observe.report import MatrixReport, to_json
from cluster.policy.htmlreport import pages
from cluster.policy.htmlreport.render import render


@dataclass(frozen=True)
class Verification:
    """One live matrix a command probed, and what it was probed for."""

    purpose: str  # e.g. "step 3/9 allow-platform", "the restore of snapshot 0005-..."
    report: MatrixReport


def verifications_json(verifications: list[Verification]) -> list[dict]:
    """What ``network-policies-up --json`` says of each verification it ran."""
    return [{"purpose": v.purpose, "report": to_json(v.report)} for v in verifications]


def smoke_html(report: MatrixReport) -> str:
    return render(pages.smoke_page(to_json(report)))


def run_html(data: dict, *, evidence: bool = False) -> str:
    """A command's verifications: ``data`` is the JSON of ``network-policies-up``
    (``verifications`` from ``verifications_json``), or, for ``evidence``,
    the same made when a verification failed."""
    return render(pages.rollout_page(data, evidence=evidence))
