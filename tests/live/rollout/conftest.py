"""The rollout's tests: a profile deployed on a fake cluster, with a fake clock
and a state directory of its own."""

import pytest
from support.rollout_world import RolloutWorld


@pytest.fixture
def world(tmp_path) -> RolloutWorld:
    """The environments profile's stand-ins on a fake cluster that drops denied packets."""
    return RolloutWorld(tmp_path)
