"""Observed traffic, offline: flows read from what a CNI recorded, placed on
a profile's endpoints and replayed against each policy step.

- ``model``: a flow (``Flow``) between two ends (``Peer``) as the source
  reported them: namespace, pod name, pod labels, address, and a kind
  (pod, host, the API server, world, unknown);
- ``formats``: the files users hand over: ``hubble observe -o json`` (and
  ``-o jsonpb``), Calico's flow logs (Felix's ``flows.log`` JSON and
  Goldmane's emitted flows), and the recordings ``inv observe`` keeps;
- ``recording``: a recording on disk (peers once, one line per flow),
  written with caps on flows and bytes, read back fast;
- ``resolve``: a peer placed on a profile endpoint, or the reason it
  cannot be (counted and shown, never dropped silently);
- ``replay``: the observed edges against every step with the engine: what
  each step would newly block (and the policy that would), windows of the
  rollout, edges no intended edge covers; ``draft`` turns observed edges
  into matrix.yaml entries for a person to review.

Pure: no client imports (the live recording from Hubble is
``cluster.live.observe.flows``).
"""
