"""A test whose infrastructure is missing skips, unless the run requires that infrastructure."""

import pytest

from support.availability import unavailable


def test_a_missing_kind_skips_where_nothing_is_required(monkeypatch):
    monkeypatch.delenv("DASHI_REQUIRE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="^no Docker engine$"):
        unavailable("docker", "no Docker engine")


def test_a_required_kind_fails_instead(monkeypatch):
    monkeypatch.setenv("DASHI_REQUIRE", "e2e, docker")
    with pytest.raises(pytest.fail.Exception) as e:
        unavailable("docker", "no Docker engine")
    assert str(e.value) == "no Docker engine (this run requires docker: DASHI_REQUIRE=e2e, docker)"
    monkeypatch.setenv("DASHI_REQUIRE", "e2e")
    with pytest.raises(pytest.skip.Exception):
        unavailable("docker", "no Docker engine")
