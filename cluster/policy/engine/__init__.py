"""A pure NetworkPolicy (networking.k8s.io/v1) evaluator.

It imports no client: it reads policies as plain dicts (as in YAML) and
decides, for a source, a destination, a port and a protocol, whether the
traffic is allowed, naming the policies and rules that decided it.

The semantics, case by case (the Kubernetes API reference and the upstream
e2e network policy tests are the reference):

* A pod is isolated for a direction when at least one policy in its
  namespace selects it (``spec.podSelector``) and lists that direction in
  its policy types. Unisolated directions allow everything.
* ``policyTypes`` absent: defaulted exactly as the API server does:
  ``[Ingress]``, plus ``Egress`` when ``spec.egress`` has at least one rule
  (an empty ``egress: []`` adds nothing).
* Policies add up: traffic is allowed in a direction if any rule of any
  selecting policy allows it. Traffic is allowed end to end only if the
  source's egress AND the destination's ingress allow it.
* Rules: an absent or empty rule list allows nothing; a rule with ``from`` /
  ``to`` absent or empty matches every peer, including addresses outside the
  cluster; ``ports`` absent or empty matches every port and protocol.
* Peers: ``podSelector`` alone picks pods in the policy's own namespace;
  ``namespaceSelector`` alone picks every pod in the matching namespaces;
  both in one peer means AND (pods matching in namespaces matching); two
  peers mean OR. A nil selector is "not set"; an empty selector ``{}``
  matches everything. Every namespace carries ``kubernetes.io/metadata.name``.
  ``ipBlock`` matches an address in ``cidr`` and in none of ``except``; it
  applies to pods only when their IP is known (the API leaves ipBlock-vs-pod
  behaviour to the plugin, and offline we rarely know pod IPs).
* Selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists,
  DoesNotExist), ANDed. NotIn and DoesNotExist match a pod without the key.
* Ports: protocol defaults to TCP; a numeric port, optionally a range up to
  ``endPort``; a named port resolves on the destination pod to a container
  port with that name AND the rule's protocol (a name whose container port
  has another protocol opens nothing); a rule entry with protocol only
  matches every port of that protocol.
* The node ("host"): traffic from the node to its local pods (kubelet
  probes, ``kubectl port-forward``, which enters through the pod's own
  loopback) is always allowed; NetworkPolicy does not apply to it.

A subset of Cilium's CiliumNetworkPolicy (cilium.io/v2) compiles into the
same model (``cluster.policy.engine.cilium``): egress to the ``kube-apiserver``
entity, which is the external endpoint found as the backends of the
default/kubernetes Service (``Endpoint.is_kube_apiserver``). Cilium adds up
the allows of its own policies and of NetworkPolicies alike, so they are
simply more policies here.

Invalid input raises ``ManifestError`` naming the policy; nothing panics.

One concept per module, each importing only those listed after it
(pyproject.toml holds the order, ``lint-imports`` checks it):

* ``predictions``: a profile's predictions (``engine_for``, ``predict``,
  ``Predictions``, ``predict_matrix``).
* ``evaluate``: per-edge verdicts (``Engine``, ``Verdict``,
  ``DirectionVerdict``, ``DATAPLANES``).
* ``compile``: a manifest into a ``Policy`` (``compile_policy``), and
  ``matrix``: the whole matrix as bitsets (``allowed_matrix``,
  ``port_ranges``, ``source_ranges``), each unaware of the other.
* ``cilium``: the CiliumNetworkPolicy subset.
* ``model``: the values (``Endpoint``, ``Port``, ``Edge``, ``HOST``,
  ``Policy``, ``Rule``, ``Peer``, ``PortRule``, the constants) and
  ``parse_selector``.

Import each name from the module that defines it.
"""

from __future__ import annotations
