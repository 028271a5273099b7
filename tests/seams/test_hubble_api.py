"""The committed Hubble stubs are exactly what tools/generate_hubble_api.py
makes from the pinned Cilium module's protos (with the pinned grpcio-tools)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import generate_hubble_api as gen  # noqa: E402

sys.path.pop(0)


def test_the_stubs_are_generated_from_the_pinned_module(tmp_path):
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install -e '.[test]')")
    mod = gen.module_dir()
    if mod is None:
        pytest.skip(f"the {gen.MODULE}@{gen.HUBBLE_API_MODULE_VERSION} module is not in a Go module cache here "
                    "(tests/e2e/hostcluster/build.sh puts it in $DASHI_E2E_CACHE/gomod) and `go` is missing")
    written = gen.generate(mod, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == list(gen.KEEP)
    for rel in gen.KEEP:
        assert (tmp_path / rel).read_text() == (gen.OUT / rel).read_text(), (
            f"{rel} differs from what {gen.MODULE}@{gen.HUBBLE_API_MODULE_VERSION} generates: "
            "run python tools/generate_hubble_api.py")


def test_the_stubs_import_from_the_package():
    from cluster.seams.hubbleapi.observer import observer_pb2, observer_pb2_grpc

    assert observer_pb2.DESCRIPTOR.name == "observer/observer.proto"
    assert hasattr(observer_pb2_grpc, "ObserverStub")
    assert "from flow import" not in (gen.OUT / "observer" / "observer_pb2.py").read_text()
