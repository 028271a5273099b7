"""The files the tool writes and reads back (cluster.yamlio): its fast paths
give what PyYAML's safe loader and dumper give, text for text and value for
value, on generated documents that carry what YAML makes hard (strings that
look like other types, anchors and aliases, non-string keys, unicode)."""

from __future__ import annotations

import math
import random

import pytest
import yaml

from cluster import yamlio

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Strings the dumper must quote (or not) exactly as PyYAML does.
WORDS = ["", "a", "yes", "no", "null", "~", "012", "0x1f", "1.5", "1e3", "-", "a: b", "#c", "x\ny", " lead",
         "trail ", "é✓", "日本", "true", "on", "2024-01-01", "@x", "'q'", '"d"', "*a", "&b", "!t", "%p",
         "a" * 90 + " b" * 30, "---", "...", "[x]", "{y}", "\t", "\x07", "1_000", ".inf", "NaN", "<<"]
OPTIONS = [{}, {"sort_keys": False, "default_flow_style": False, "allow_unicode": True},
           {"default_flow_style": None}, {"sort_keys": True, "default_flow_style": True},
           {"default_style": '"'}, {"width": 40, "indent": 4}]


def _document(rng: random.Random, shared: list | None, depth: int = 0):
    """Scalars of every plain type, maps (string and other keys) and lists;
    with ``shared``, some maps and lists appear twice (anchors, aliases)."""
    r = rng.random()
    if depth > 4 or r < 0.4:
        return rng.choice([rng.choice(WORDS), rng.randint(-5, 10 ** 12), True, False, None, rng.random(), 1.0])
    if shared and rng.random() < 0.1:
        return rng.choice(shared)
    if r < 0.7:
        out = {}
        for _ in range(rng.randrange(5)):
            out[rng.choice(WORDS + [1, 2, True, None])] = _document(rng, shared, depth + 1)
    else:
        out = [_document(rng, shared, depth + 1) for _ in range(rng.randrange(5))]
    if shared is not None:
        shared.append(out)
    return out


def _same(a, b) -> bool:
    """Equal, of the same types all the way down, in the same key order (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _outcome(f, *args):
    try:
        return "ok", f(*args)
    except yaml.YAMLError as e:
        return "error", type(e).__name__, str(e)


def _agree(want, got) -> bool:
    return want == got if want[0] == "error" else got[0] == "ok" and _same(want[1], got[1])


@pytest.mark.parametrize("seed", range(2))
def test_dump_writes_the_text_the_safe_dumper_writes(seed):
    rng = random.Random(seed)
    for i in range(100):
        data = _document(rng, [] if i % 2 else None)
        for kw in OPTIONS:
            assert yamlio.dump(data, **kw) == yaml.dump(data, Dumper=DUMPER, **kw), (data, kw)


@pytest.mark.parametrize("seed", range(2))
def test_load_reads_what_the_safe_loader_reads(seed):
    rng = random.Random(seed)
    for i in range(100):
        data = _document(rng, [] if i % 2 else None)
        for kw in ({}, {"default_flow_style": None}, {"default_style": "'"}):
            text = yaml.dump(data, Dumper=DUMPER, **kw)
            for t in (text, text.encode(), text.encode("utf-16")):
                assert _agree(_outcome(yaml.load, t, LOADER), _outcome(yamlio.load, t)), t
            two = text + "---\n" + text
            assert _agree(_outcome(lambda t: list(yaml.load_all(t, Loader=LOADER)), two),
                          _outcome(yamlio.load_all, two)), two


@pytest.mark.parametrize("text", [
    "", "---\n", "a: &x [1, 2]\nb: *x\n", "? [1, 2]\n: v\n", "{[1]: 2}\n", "<<: {a: 1}\nb: 2\n",
    "a: 0o12\nb: 012\nc: 0x1F\nd: 1_000\ne: 1.5\nf: .inf\ng: 2024-01-01\nh: !!binary aGVsbG8=\n",
    "a: b\n---\nc: d\n", "x: !!str 12\ny: !!int '7'\n", "- ~\n- Null\n- yes\n- On\n- 'no'\n", "*a\n",
    "a: [b\n",
])
def test_hard_texts_read_the_same(text):
    for t in (text, text.encode()):
        assert _agree(_outcome(yaml.load, t, LOADER), _outcome(yamlio.load, t)), t
        assert _agree(_outcome(lambda t: list(yaml.load_all(t, Loader=LOADER)), t), _outcome(yamlio.load_all, t)), t


@pytest.mark.parametrize("text, key, line", [
    ("a: 1\nb: 2\na: 3\n", "a", 3),  # the fast path
    ("x: &x [1]\ny: {p: *x, p: 2}\n", "p", 2),  # aliases: PyYAML's own constructor
    ("spec:\n  ingress:\n  - ports: [80]\n    ports: [443]\n", "ports", 4),
    ("m: !!map {k: 1, k: 2}\n", "k", 1),  # a tag: PyYAML's constructor too
])
def test_a_key_written_twice_is_refused_where_pyyaml_keeps_the_last(text, key, line):
    assert yaml.load(text, Loader=LOADER) is not None  # PyYAML alone says nothing
    with pytest.raises(yamlio.DuplicateKey) as err:
        yamlio.load(text)
    assert (err.value.key, err.value.problem_mark.line + 1) == (key, line)
    assert f"duplicate key {key!r}" in str(err.value)


def test_a_merge_key_may_be_overridden():
    """What merging is for: keys a `<<` brings in are the defaults of the map."""
    assert yamlio.load("base: &b {a: 1, b: 2}\nm:\n  <<: *b\n  b: 3\n")["m"] == {"a": 1, "b": 3}
