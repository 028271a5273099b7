"""YAML for the files this tool writes and reads back (state, snapshots):
the safe subset, through libyaml when PyYAML was built with it (about nine
times faster to load than the pure-Python parser) and the pure-Python
classes otherwise. Manifests people wrote are read by
``cluster.policy.manifests``, which keeps positions for its messages."""

from __future__ import annotations

from typing import Any

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

YAMLError = yaml.YAMLError


def load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_all(text: str) -> list:
    """Every document of a multi-document text (None for an empty one)."""
    return list(yaml.load_all(text, Loader=_Loader))


def dump(data: Any, **kw) -> str:
    return yaml.dump(data, Dumper=_Dumper, **kw)
