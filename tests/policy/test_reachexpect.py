"""`reachability --expect FILE`: a manifest tree's connectivity against the
file reachability printed before (what the pre-commit hook runs)."""

from __future__ import annotations

import json

import pytest

from cluster.errors import ManifestError
from cluster.policy.reachability import reachability
from cluster.policy.reachexpect import compare, load_expected
from support import cli_process
from support.manifest_trees import RESOURCES, write


def test_the_same_tree_is_as_expected_and_a_change_names_every_edge(tmp_path):
    tree = write(tmp_path / "tree", RESOURCES)
    expected = reachability(tree)
    assert compare(expected, reachability(tree)) == []
    policy = tree / "policies" / "deny.yaml"
    # db also admits prom, on 5432 only
    policy.write_text(policy.read_text() + "    - from: [{namespaceSelector: {matchLabels: {team: ops}}}]\n"
                      "      ports: [{port: 5432}]\n")
    assert compare(expected, reachability(tree)) == [
        "+ ops/prom -> shop/db TCP 5432",
        "+ ops/prom -> shop/db 5432/TCP (a declared port, now allowed)"]
    assert compare(reachability(tree), expected) == [
        "- ops/prom -> shop/db TCP 5432",
        "- ops/prom -> shop/db 5432/TCP (a declared port, no longer allowed)"]
    changed = {**expected, "endpoints": expected["endpoints"] + ["shop/cache"],
               "ranges": [dict(r, ports=[[1, 80]]) if r["src"] == "ops/prom" and r["dst"] == "shop/web"
                          and r["protocol"] == "TCP" else r for r in expected["ranges"]]}
    assert compare(changed, expected) == [
        "- endpoint shop/cache",
        "~ ops/prom -> shop/web TCP 1-65535 (was 1-80)"]


def test_the_cli_exit_codes_and_lines(tmp_path):
    tree = write(tmp_path / "tree", RESOURCES)
    expect = tmp_path / "reachability.json"
    first = cli_process.run("reachability", "-r", str(tree), cli="dashi")
    expect.write_text(first.stdout)
    same = cli_process.run("reachability", "-r", str(tree), "--expect", str(expect), cli="dashi")
    assert same.returncode == 0, same.stderr
    assert same.stdout == (f"reachability -r {tree} is as {expect} expects: 3 endpoints, "
                           f"{len(json.loads(first.stdout)['ranges'])} pairs with allowed traffic\n")
    (tree / "policies" / "deny.yaml").unlink()  # db admits everyone
    moved = cli_process.run("reachability", "-r", str(tree), "-N", "shop", "--expect", str(expect), cli="dashi")
    assert moved.returncode == 3
    lines = moved.stdout.splitlines()
    assert lines[0] == f"reachability -r {tree} -N shop differs from {expect} in 7 place(s):"
    assert lines[1:-1] == [
        "  + ops/prom -> shop/db SCTP 1-65535", "  + ops/prom -> shop/db TCP 1-65535",
        "  + ops/prom -> shop/db UDP 1-65535", "  + shop/web -> shop/db SCTP 1-65535",
        "  ~ shop/web -> shop/db TCP 1-65535 (was 5432)", "  + shop/web -> shop/db UDP 1-65535",
        "  + ops/prom -> shop/db 5432/TCP (a declared port, now allowed)"]
    assert lines[-1] == f"if the change is intended, record it: dashi reachability -r {tree} -N shop > {expect}"


@pytest.mark.parametrize("content, message", [
    ("nope", "not JSON"),
    ("[]", "(top level): must be an object"),
    ('{"endpoints": [], "allowed": []}', "ranges: missing, or not a list"),
    ('{"endpoints": [1], "allowed": [], "ranges": []}', "endpoints[0]: must be a string"),
    ('{"endpoints": [], "allowed": [{"src": "a"}], "ranges": []}', "allowed[0]: must be {src, dst, protocol, port}"),
    ('{"endpoints": [], "allowed": [], "ranges": [{"src": "a", "dst": "b", "protocol": "TCP", "ports": [[1]]}]}',
     "ranges[0]: must be {src, dst, protocol, ports: [[lo, hi], ...]}"),
])
def test_a_bad_expected_file_is_one_line_naming_it(tmp_path, content, message):
    f = tmp_path / "r.json"
    f.write_text(content)
    with pytest.raises(ManifestError) as err:
        load_expected(f)
    assert str(err.value).startswith(f"{f}: ") and message in str(err.value)
    proc = cli_process.run("reachability", "-r", str(write(tmp_path / "t", RESOURCES)), "--expect", str(f),
                           cli="dashi")
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.startswith(f"error: {f}: ")
    assert "Traceback" not in proc.stderr


def test_the_expected_file_inside_the_tree_must_be_hidden(tmp_path):
    tree = write(tmp_path / "tree", RESOURCES)
    shown = cli_process.run("reachability", "-r", str(tree), "--expect", str(tree / "reachability.json"),
                            cli="dashi")
    assert shown.returncode == 1 and shown.stderr == (
        f"error: {tree / 'reachability.json'}: --expect: inside {tree}, it would be read as a manifest; hide it "
        f"({tree / '.reachability.json'}: hidden files are skipped) or keep it outside the tree\n")
    hidden = tree / ".reachability.json"
    hidden.write_text(json.dumps(reachability(tree)))
    assert cli_process.run("reachability", "-r", str(tree), "--expect", str(hidden), cli="dashi").returncode == 0
