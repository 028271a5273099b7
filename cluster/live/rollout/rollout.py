"""The step-wise policy rollout: apply, verify live, keep the way back ready.

``network_policies_up`` takes a profile's namespaces from open networking to
its final policy set one step at a time. For each step:

1. check the names the step writes against the live policies that are not
   ours (a clash stops the run before the step changes anything, naming
   who holds the name), and snapshot the NetworkPolicies of the profile's
   namespaces (labelled with the steps its content amounts to);
2. create the step's policies with our field manager, each labelled
   ``app.kubernetes.io/managed-by=dashi-cluster`` and annotated
   ``dashi.io/step=<step>`` (a create fails where a policy of that name
   appeared meanwhile; a policy of ours is replaced only under the uid and
   resourceVersion read: ``restore.write_policy``);
3. probe the live matrix from the stand-in pods and compare it with the
   engine's prediction for the policies now in place (the CNI enforces
   them), and that prediction with the step-intended matrix (the step does
   what it is meant to); disagreeing probes are re-polled for a bounded time,
   since CNIs apply policies asynchronously;
4. on any difference: restore the snapshot, verify the restore, and stop
   non-zero with the evidence (edge, predicted vs observed, the probe's error
   kind, the engine's explanation naming the policies).

Every command that changes the cluster first names it, prints the plan (our
policies to create, update and delete), asks for confirmation where the
cluster is not a local k3d one, and then holds this machine's lock and the
cluster's lease (``cluster.live.safety.lease``) until it ends.

A re-run resumes after the last verified step. ``rollback`` restores a
snapshot exactly (creates, updates and deletes our policies to match it;
never touches anyone else's) and verifies the matrix. ``smoke`` probes the
whole matrix now and reports it. State lives on disk (see
``cluster.live.record``), per cluster identity.

A probe that is refused is read by the CNI's deny behaviour (see
``cluster.live.observe.probe``). On a cluster this machine has never measured (no
``inv prepare`` from here), a command that changes policies runs the
enforcement canary first, after the locks are taken, and keeps what it
measured: without it a refusal could not be read, and a CNI that rejects
(kube-router) answers some denied probes with a refusal and others, past
the kernel's ICMP rate limit, with silence.

A run that is cut off (Ctrl-C, a crash, kill -9, the API server going away)
leaves ``in_progress`` in the step record; the next run says what it finds
and resolves it: a step cut off while being verified is verified again; one
cut off while being applied, or a restore cut off, is rolled back to (or
finished restoring) the snapshot taken before it. Steps that were restored
are not verified until the matrix is probed again, and every command reads
"verified" the same way (``StepRecord.verified``).

The commands live one per module over a shared session
(``cluster.live.rollout.session``): ``up``, ``rollback``, ``smoke``, and
``recovery`` for what a cut-off run left. ``Rollout`` gathers them.
"""

from __future__ import annotations

from cluster.live.observe.report import MatrixReport
from cluster.live.record.steprecord import StepRecord
from cluster.live.rollout import rollback as _rollback
from cluster.live.rollout import smoke as _smoke
from cluster.live.rollout import up as _up
from cluster.live.rollout.session import RolloutSession


class Rollout(RolloutSession):
    """One command's worth of work on one cluster for one profile."""

    def up(self, until: str | None = None) -> StepRecord:
        return _up.up(self, until)

    def rollback(self, to: str | None = None) -> StepRecord:
        return _rollback.rollback(self, to)

    def smoke(self) -> MatrixReport:
        return _smoke.smoke(self)
