"""YAML for the files this tool writes and reads back (state, snapshots,
exports), and the fast paths every YAML reader here shares: the safe
subset, through libyaml when PyYAML was built with it (about nine times
faster to parse than the pure-Python parser) and the pure-Python classes
otherwise. Manifests people wrote are read by ``cluster.policy.manifests``,
which keeps positions for its messages and uses ``Loader`` and
``document`` from here.

libyaml parses and emits in C, but asks Python for the tag of every
scalar (twice per scalar when emitting) and PyYAML builds and represents
every node in Python. Both are done here at a fraction of their cost for
the shapes these files have (maps, lists, strings, ints, booleans, null),
with the same result: anything else is handed to PyYAML's own code. One
difference, on both paths: a mapping that names a key twice is refused
(``DuplicateKey``) where PyYAML keeps the last value."""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any

import yaml

_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

YAMLError = yaml.YAMLError

# The safe resolver, asked for the tag of a node by its kind, text and
# implicitness alone (the safe loader and dumper have no path resolvers),
# so the answer can be kept: files repeat the same few thousand keys and
# values.
_RESOLVER = yaml.resolver.Resolver()
_resolve = lru_cache(maxsize=1 << 16)(partial(yaml.resolver.Resolver.resolve, _RESOLVER))


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names a key twice. PyYAML keeps the last value without a
    word, so the analysis would describe another object than the one the
    user wrote; the API server's strict field validation (kubectl's
    default) refuses duplicate fields. ``mapping`` is the node, ``key`` the
    key, ``problem_mark`` where its second occurrence starts."""

    def __init__(self, mapping, key_node, key):
        super().__init__(None, None, f"duplicate key {key!r}", key_node.start_mark)
        self.mapping, self.key = mapping, key


class Loader(_CLoader):
    """The safe loader with a cached resolver; the path resolver hooks,
    which the safe loader has none of, are C no-ops (the composer ignores
    what they return). Duplicate keys are refused (``DuplicateKey``)."""

    resolve = staticmethod(_resolve)
    descend_resolver = staticmethod({}.get)  # (parent, index) -> ignored
    ascend_resolver = staticmethod(tuple)  # () -> ignored

    def construct_mapping(self, node, deep=False):
        # PyYAML's own path (aliases, merge keys, tags): the keys written in
        # this mapping must be distinct; those a merge key brings in may be
        # overridden, which is what merging is for.
        if isinstance(node, yaml.MappingNode):
            _unique_keys(node, lambda k: self.construct_object(k, deep=True))
        return super().construct_mapping(node, deep)


def _unique_keys(node, key_of) -> None:
    """Raise DuplicateKey for the first key ``node`` names twice (merge keys aside)."""
    seen = set()
    for k, _ in node.value:
        if k.tag == _MERGE:
            continue
        key = k.value if k.__class__ is _SCALAR and k.tag == _STR else key_of(k)
        try:
            if key in seen:
                raise DuplicateKey(node, k, key)
            seen.add(key)
        except TypeError:  # an unhashable key: SafeConstructor says so when it builds the map
            return


_STR, _INT, _MAP, _SEQ, _MERGE, _BOOL, _NULL = (
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "map", "seq", "merge", "bool", "null"))
_SCALAR, _MAPPING, _SEQUENCE = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode


def construct(node, loader):
    """A node as Python data, as SafeConstructor builds it, for maps, lists,
    strings and decimal ints at a third of its cost; anything else (bools,
    floats, timestamps, merge keys, tags) is handed to SafeConstructor node
    by node. Only for a document without aliases (every node is visited
    once); a key that cannot be hashed raises TypeError (SafeConstructor
    says it properly: see ``document``)."""
    cls = node.__class__
    if cls is _SCALAR:
        if node.tag == _STR:
            return node.value
        v = node.value
        if node.tag == _INT and v.isdigit() and (v[0] != "0" or v == "0"):  # "012" is octal in YAML 1.1
            return int(v)
    elif cls is _MAPPING:
        if node.tag == _MAP:
            # String keys and values (most of a file) are taken here rather
            # than in a call each.
            out = {}
            for k, v in node.value:
                if k.__class__ is _SCALAR and k.tag == _STR:
                    key = k.value
                elif k.tag == _MERGE:
                    return loader.construct_object(node, deep=True)
                else:
                    key = construct(k, loader)
                out[key] = v.value if v.__class__ is _SCALAR and v.tag == _STR else construct(v, loader)
            if len(out) != len(node.value):  # a key written twice (one comparison a map)
                _unique_keys(node, lambda k: construct(k, loader))
            return out
    elif cls is _SEQUENCE and node.tag == _SEQ:
        return [x.value if x.__class__ is _SCALAR and x.tag == _STR else construct(x, loader) for x in node.value]
    return loader.construct_object(node, deep=True)


def document(node, loader, aliases: bool):
    """One composed document as Python data: ``construct``, or PyYAML's
    own constructor where the text has aliases or a key cannot be hashed."""
    if not aliases:
        try:
            return construct(node, loader)
        except TypeError:
            pass
        finally:
            loader.constructed_objects, loader.recursive_objects = {}, {}
    return loader.construct_document(node)


def may_alias(text: str | bytes) -> bool:
    """Whether the text may hold an alias: there is none without a '*'."""
    return ("*" if isinstance(text, str) else b"*") in text


def load(text: str | bytes) -> Any:
    """The one document of ``text`` (None for an empty text), as ``yaml.safe_load``."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else document(node, loader, may_alias(text))
    finally:
        loader.dispose()


def load_all(text: str | bytes) -> list:
    """Every document of a multi-document text (None for an empty one)."""
    loader = Loader(text)
    try:
        aliases = may_alias(text)
        docs = []
        while loader.check_node():
            docs.append(document(loader.get_node(), loader, aliases))
        return docs
    finally:
        loader.dispose()


def _resolve_for_emitter(kind, value, implicit):
    # The emitter also asks for the tag of each map and list, passing its
    # nodes (a list, which cannot be a cache key); those are answered as
    # the resolver answers them.
    if kind is _SCALAR:
        return _resolve(kind, value, implicit)
    return _RESOLVER.resolve(kind, value, implicit)


class Dumper(_CDumper):
    """The safe dumper with a cached resolver, no-op path resolver hooks,
    and the plain types represented in one call each. Dicts and lists are
    still remembered by identity, so one that appears twice becomes an
    anchor and an alias as SafeRepresenter makes it."""

    resolve = staticmethod(_resolve_for_emitter)
    descend_resolver = staticmethod({}.get)
    ascend_resolver = staticmethod(tuple)

    def represent_data(self, data):
        t = data.__class__
        if t is str:
            return _SCALAR(_STR, data, style=self.default_style)
        if t is dict or t is list:
            key = id(data)
            if key in self.represented_objects:  # the second time: an alias
                return self.represented_objects[key]
            self.object_keeper.append(data)
            self.alias_key = key
            if t is list:
                return self.represent_sequence(_SEQ, data)
            return self.represent_mapping(_MAP, data)
        if t is bool:
            return _SCALAR(_BOOL, "true" if data else "false", style=self.default_style)
        if t is int:
            return _SCALAR(_INT, str(data), style=self.default_style)
        if data is None:
            return _SCALAR(_NULL, "null", style=self.default_style)
        return super().represent_data(data)


def dump(data: Any, **kw) -> str:
    return yaml.dump(data, Dumper=Dumper, **kw)
