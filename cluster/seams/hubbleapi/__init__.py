"""Hubble's Observer API: the Python stubs generated from the .proto files of
the pinned Cilium module (github.com/cilium/cilium v1.20.2, api/v1/observer,
api/v1/flow, api/v1/relay) by tools/generate_hubble_api.py with grpcio-tools.

They are committed rather than generated at install time: generating needs
the Cilium Go module (which pip cannot fetch) and grpcio-tools (a compiler
nobody should need to install the tool). tests/seams/test_hubble_api.py
regenerates them from the module and requires identical files. Only
cluster.seams.hubble imports them.
"""
