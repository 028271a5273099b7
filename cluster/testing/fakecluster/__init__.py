"""The fake cluster behind the ``Kube`` seam, for tests and benchmarks only.

One concept per module, each importing only those below it (a contract in
pyproject.toml):

    kube.py         FakeKube: the pieces below in one object, seeded like k3s
    podexec.py      exec in pods: what agnhost connect, nc and nslookup print
    network.py      the simulated CNI: which packets pass, and its lag
    cilium.py       the Cilium model: served kinds, CiliumNetworkPolicy
    controllers.py  workloads to pods, ServiceAccounts, namespace termination
    faults.py       calls that fail on purpose, an API server that goes away
    admission.py    what the API server refuses before it stores an object
    store.py        the objects, the API verbs, resourceVersion, the call record
    clock.py        FakeClock, beside the rest

Every piece is a subclass of ``store.Store`` adding to the hooks the store
calls (see store.py); ``FakeKube`` combines them, so its attributes and
methods are those of all the pieces. Import each name from the module that
defines it: this package re-exports nothing.
"""
