"""``reachability --expect FILE``: the connectivity of a manifest tree
against what it was, a JSON file ``reachability`` printed then (kept beside
the manifests, so a change to connectivity is a change to that file, seen
in review). Every endpoint that came or went, every pair's port ranges
gained or lost and every declared port newly allowed or blocked is named;
the pre-commit hook ``dashi-reachability`` fails on any of them.

Pure: two dicts in, lines out; the expected file is read and checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

from cluster.errors import ManifestError

# reachability's exit code when the tree's connectivity is not the expected
# one, as policies-diff's when a change opens an edge it should not.
DIFFERS_EXIT = 3


def check_outside(expect: str | Path, resources: str | Path) -> None:
    """The expected file must not be read as a manifest of the tree: outside
    it, or hidden (reachability skips hidden files and directories)."""
    tree, f = Path(resources).resolve(), Path(expect).resolve()
    if f == tree or tree not in f.parents or any(p.startswith(".") for p in f.relative_to(tree).parts):
        return
    hidden = Path(expect).with_name("." + f.name)
    raise ManifestError(f"--expect: inside {resources}, it would be read as a manifest; hide it ({hidden}: "
                        "hidden files are skipped) or keep it outside the tree", path=str(expect))


def _fail(path: str, field: str, what: str) -> ManifestError:
    return ManifestError(f"{field}: {what} (the file `dashi reachability -r DIR` prints)", path=path)


def load_expected(path: str | Path) -> dict:
    """The expected reachability, its shape checked: one line naming the
    file and the field when it is not what ``reachability`` prints."""
    p = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ManifestError(f"cannot read it: {e.strerror or e}", path=p) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"not JSON: {e}", path=p) from None
    if not isinstance(data, dict):
        raise _fail(p, "(top level)", "must be an object with endpoints, allowed and ranges")
    for key in ("endpoints", "allowed", "ranges"):
        if not isinstance(data.get(key), list):
            raise _fail(p, key, "missing, or not a list")
    for i, e in enumerate(data["endpoints"]):
        if not isinstance(e, str):
            raise _fail(p, f"endpoints[{i}]", "must be a string ns/name")
    for i, a in enumerate(data["allowed"]):
        if not (isinstance(a, dict) and all(isinstance(a.get(k), str) for k in ("src", "dst", "protocol"))
                and isinstance(a.get("port"), int)):
            raise _fail(p, f"allowed[{i}]", "must be {src, dst, protocol, port}")
    for i, r in enumerate(data["ranges"]):
        if not (isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("src", "dst", "protocol"))
                and isinstance(r.get("ports"), list)
                and all(isinstance(s, list) and len(s) == 2 and all(isinstance(n, int) for n in s)
                        for s in r["ports"])):
            raise _fail(p, f"ranges[{i}]", "must be {src, dst, protocol, ports: [[lo, hi], ...]}")
    return data


def _spans(ports) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports) or "none"


def compare(expected: dict, actual: dict) -> list[str]:
    """What changed from ``expected`` to ``actual``, one line each ("+" came,
    "-" went); empty when they are the same."""
    lines = []
    was, now = set(expected["endpoints"]), set(actual["endpoints"])
    lines += [f"+ endpoint {e}" for e in sorted(now - was)] + [f"- endpoint {e}" for e in sorted(was - now)]

    def by_pair(rs) -> dict:
        return {(r["src"], r["dst"], r["protocol"]): sorted(map(tuple, r["ports"])) for r in rs}

    a, b = by_pair(expected["ranges"]), by_pair(actual["ranges"])
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            src, dst, proto = key
            if key not in a:
                lines.append(f"+ {src} -> {dst} {proto} {_spans(b[key])}")
            elif key not in b:
                lines.append(f"- {src} -> {dst} {proto} {_spans(a[key])}")
            else:
                lines.append(f"~ {src} -> {dst} {proto} {_spans(b[key])} (was {_spans(a[key])})")

    def declared(rs) -> set:
        return {(r["src"], r["dst"], r["port"], r["protocol"]) for r in rs}

    x, y = declared(expected["allowed"]), declared(actual["allowed"])
    lines += [f"+ {s} -> {d} {n}/{p} (a declared port, now allowed)" for s, d, n, p in sorted(y - x)]
    lines += [f"- {s} -> {d} {n}/{p} (a declared port, no longer allowed)" for s, d, n, p in sorted(x - y)]
    return lines
