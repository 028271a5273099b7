"""Predictions for a profile: the engine over a profile's policies and
namespaces, told the profile's CNI (``engine_for``), and its verdict for
every edge of the profile's matrix, all at once (``predict``) or the
allowed bits at once and each Verdict when asked for (``predict_matrix``,
``Predictions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cluster.policy.engine.evaluate import DATAPLANES, Engine, Verdict
from cluster.policy.engine.model import Edge, Endpoint


def engine_for(profile, policies: Iterable[Mapping]) -> Engine:
    """An engine over ``policies`` in the profile's namespaces, predicting
    the dataplane of the profile's CNI (``Profile.for_cni``; DATAPLANES)."""
    cni = getattr(profile, "cni", None)
    return Engine(profile.namespaces, policies, dataplane=cni if cni in DATAPLANES else None)


def predict(profile, policies: Iterable[Mapping] | None = None,
            endpoints: Sequence[Endpoint] | None = None) -> dict[Edge, Verdict]:
    """The engine's verdict for every edge of a profile's matrix.

    ``policies`` defaults to all the profile's steps; ``endpoints`` replaces
    the profile's endpoints (e.g. with live pod and API server addresses,
    which ipBlock rules depend on). The profile's CNI (``Profile.for_cni``)
    is the dataplane whose departures from the API apply (``DATAPLANES``).
    """
    if policies is None:
        policies = profile.policies_through(len(profile.steps))
    eps = list(endpoints) if endpoints is not None else profile.endpoints
    by_key = {ep.key: ep for ep in eps}
    engine = engine_for(profile, policies)
    edges = profile.edges() if endpoints is None else profile.with_endpoints(eps).edges()
    return {e: engine.evaluate(by_key[e.src], by_key[e.dst], e.port, e.protocol) for e in edges}


class Predictions(Mapping):
    """The engine's verdict for every edge of a matrix, as a mapping
    Edge -> Verdict in the matrix's order.

    Whether each edge is allowed (``allowed(edge)``) comes from the bitset
    matrix, one pass per destination port; the full Verdict, which names
    the policies and rules on each side, is worked out when an edge's is
    asked for, once. A check that explains only the edges that differ from
    the intent then costs a pass per port, not an evaluation per edge."""

    def __init__(self, engine: Engine, endpoints: Sequence[Endpoint], edges: Iterable[Edge]):
        self._engine = engine
        self._by_key = {ep.key: ep for ep in endpoints}
        index = {ep.key: i for i, ep in enumerate(endpoints)}
        matrix = engine.allowed_matrix(endpoints)
        column: dict[tuple[int, int, str], int] = {}
        for d, ep in enumerate(endpoints):
            for q, p in enumerate(ep.ports):
                # Two container ports may share a number and protocol (different
                # names): the first decides, as the API server's port lookup does.
                column.setdefault((d, p.port, p.protocol), q)
        self._allowed: dict[Edge, bool] = {}
        for e in edges:
            d = index[e.dst]
            self._allowed[e] = bool(matrix[(d, column[(d, e.port, e.protocol)])] >> index[e.src] & 1)
        self._verdicts: dict[Edge, Verdict] = {}

    def allowed(self, edge: Edge) -> bool:
        return self._allowed[edge]

    def __getitem__(self, edge: Edge) -> Verdict:
        v = self._verdicts.get(edge)
        if v is None:
            self._allowed[edge]  # noqa: B018  (an edge outside the matrix is a KeyError, as in a dict)
            v = self._verdicts[edge] = self._engine.evaluate(self._by_key[edge.src], self._by_key[edge.dst],
                                                             edge.port, edge.protocol)
        return v

    def __iter__(self):
        return iter(self._allowed)

    def __len__(self) -> int:
        return len(self._allowed)

    def __contains__(self, edge) -> bool:
        return edge in self._allowed


def predict_matrix(profile, policies: Iterable[Mapping]) -> Predictions:
    """``predict`` over the profile's own endpoints, as a ``Predictions``:
    the allowed bit of every edge at once, each Verdict when asked for."""
    return Predictions(engine_for(profile, policies), profile.endpoints, profile.edges())
