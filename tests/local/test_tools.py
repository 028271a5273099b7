"""`inv tools` against a local HTTP server on 127.0.0.1 that plays both the
mirror (binaries in the upstream layouts) and the publishers (their checksum
files), with right and with wrong checksums. The fake binaries print what
the pinned tools print for the version check."""

import hashlib
import http.server
import io
import os
import subprocess
import tarfile
import threading

import pytest

from support import cli_process
from cluster import versions
from cluster.errors import DashiError
from cluster.local import tools
from support.local_world import KUBECTL_VERSION_OUT, free_port
from support import ROOT

OS, ARCH = "linux", "amd64"
REPO = ROOT


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_tgz(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{OS}-{ARCH}/helm")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


# What each pinned tool prints for the version check `inv tools` runs
# (the same outputs the preflight fixtures cite).
K3D_OUT = "k3d version v5.9.0\nk3s version v1.33.4-k3s1 (default)\n"
HELM_OUT = "v3.19.2+g8766e71\n"
KUBECTL_OUT = KUBECTL_VERSION_OUT


def script(out: str) -> bytes:
    return f"#!/bin/sh\ncat <<'EOF'\n{out.rstrip()}\nEOF\n".encode()


def binaries(k3d_out: str = K3D_OUT) -> dict[str, bytes]:
    return {"k3d": script(k3d_out), "helm": script(HELM_OUT), "kubectl": script(KUBECTL_OUT)}


def release_files(bins: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Path -> bytes under /<tool>/..., as tools.artifact lays out binaries and checksum files."""
    bins = bins or binaries()
    helm = helm_tgz(bins["helm"])
    k, h, kc = versions.K3D_VERSION, versions.HELM_VERSION, versions.KUBECTL_VERSION
    helm_name = f"helm-{h}-{OS}-{ARCH}.tar.gz"
    return {
        f"/k3d/{k}/k3d-{OS}-{ARCH}": bins["k3d"],
        # k3d's Makefile gen-checksum: `sha256sum _dist/*` > checksums.txt, other platforms included.
        f"/k3d/{k}/checksums.txt": (f"{'0' * 64}  _dist/k3d-darwin-arm64\n"
                                    f"{sha(bins['k3d'])}  _dist/k3d-{OS}-{ARCH}\n").encode(),
        f"/helm/{helm_name}": helm,
        f"/helm/{helm_name}.sha256sum": f"{sha(helm)}  {helm_name}\n".encode(),
        f"/kubectl/{kc}/bin/{OS}/{ARCH}/kubectl": bins["kubectl"],
        f"/kubectl/{kc}/bin/{OS}/{ARCH}/kubectl.sha256": sha(bins["kubectl"]).encode(),
    }


def _is_checksum(path: str) -> bool:
    return path.endswith(("sha256", "sha256sum", ".txt"))


def tampered(tool: str) -> dict[str, bytes]:
    """A mirror that serves a different binary for ``tool`` and a checksum file that matches it."""
    bins = binaries()
    bins[tool] = bins[tool] + b"# tampered\n"
    return release_files(bins)


@pytest.fixture
def server():
    """One loopback server: /mirror/... is the --base-url mirror, /publisher/...
    stands in for the publishers (it serves only checksum files)."""
    genuine = release_files()
    state = {"mirror": dict(genuine), "publisher": {p: b for p, b in genuine.items() if _is_checksum(p)},
             "hits": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["hits"].append(self.path)
            side, _, rest = self.path.lstrip("/").partition("/")
            body = state.get(side, {}).get("/" + rest) if side in ("mirror", "publisher") else None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.update(url=url, mirror_url=f"{url}/mirror", publisher_url=f"{url}/publisher")
    yield state
    httpd.shutdown()
    httpd.server_close()


def install(server, names, bin_dir, **kw):
    return tools.install(names, bin_dir=bin_dir, base_url=server["mirror_url"], publisher_url=server["publisher_url"],
                         os_name=OS, arch=ARCH, **kw)


def test_installs_all_three_verified_against_the_publisher(server, tmp_path):
    bin_dir = tmp_path / "bin"
    lines = install(server, None, bin_dir)
    assert [ln.split(":")[0] for ln in lines] == ["k3d v5.9.0", "helm v3.19.2", "kubectl v1.33.4"]
    assert all(": installed " in ln and f"verified against {server['publisher_url']}/" in ln for ln in lines)
    for name in ("k3d", "helm", "kubectl"):
        assert os.access(bin_dir / name, os.X_OK)
    assert subprocess.run([bin_dir / "k3d", "version"], capture_output=True, text=True).stdout == K3D_OUT
    # helm came out of its archive, not the archive itself.
    assert (bin_dir / "helm").read_bytes() == binaries()["helm"]
    # Binaries from the mirror, checksums from the publisher, never the other way round.
    assert all(_is_checksum(h) for h in server["hits"] if h.startswith("/publisher/"))
    assert not any(_is_checksum(h) for h in server["hits"] if h.startswith("/mirror/"))


@pytest.mark.parametrize("tool", ["k3d", "helm", "kubectl"])
def test_a_mirror_cannot_vouch_for_its_own_binary(server, tmp_path, tool):
    server["mirror"] = tampered(tool)  # binary and its checksum file agree with each other
    with pytest.raises(DashiError, match=f"{tool} .*checksum mismatch.*from {server['publisher_url']}/.*"
                                         "nothing installed"):
        install(server, [tool], tmp_path)
    assert not (tmp_path / tool).exists()
    assert not list(tmp_path.glob(".*.tmp"))
    assert not any(_is_checksum(h) for h in server["hits"] if h.startswith("/mirror/"))


def test_an_unreachable_publisher_installs_nothing(server, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DashiError) as ei:
        tools.install(["k3d"], bin_dir=tmp_path, base_url=server["mirror_url"], publisher_url=closed,
                      os_name=OS, arch=ARCH)
    msg = str(ei.value)
    assert msg.startswith("k3d v5.9.0: cannot verify it: the publisher's checksum could not be read")
    assert "never taken from a mirror" in msg and "TOOL_SHA256" in msg and "\n" not in msg
    assert not (tmp_path / "k3d").exists()
    assert server["hits"] == []  # nothing downloaded that could not be verified


def test_second_run_downloads_nothing(server, tmp_path):
    install(server, ["k3d"], tmp_path)
    hits = len(server["hits"])
    (line,) = install(server, ["k3d"], tmp_path)
    assert "already installed" in line and "reports v5.9.0" in line
    assert len(server["hits"]) == hits


def test_a_replaced_binary_is_reinstalled(server, tmp_path):
    install(server, ["kubectl"], tmp_path)
    (tmp_path / "kubectl").write_bytes(script(KUBECTL_OUT) + b"# edited\n")
    (line,) = install(server, ["kubectl"], tmp_path)
    assert "reinstalled (" in line and "is not the file that was verified" in line
    assert (tmp_path / "kubectl").read_bytes() == binaries()["kubectl"]


def test_a_binary_that_fails_its_version_check_is_reinstalled(server, tmp_path):
    # The publisher's checksum matches, but the binary reports another version.
    wrong = release_files(binaries(k3d_out="k3d version v5.8.3\nk3s version v1.31.5-k3s1 (default)\n"))
    server["mirror"], server["publisher"] = wrong, {p: b for p, b in wrong.items() if _is_checksum(p)}
    install(server, ["k3d"], tmp_path)
    genuine = release_files()
    server["mirror"], server["publisher"] = genuine, {p: b for p, b in genuine.items() if _is_checksum(p)}
    (line,) = install(server, ["k3d"], tmp_path)
    assert "reinstalled (" in line and "reports v5.8.3 when run, not v5.9.0" in line
    assert subprocess.run([tmp_path / "k3d", "version"], capture_output=True, text=True).stdout == K3D_OUT


def test_a_binary_that_does_not_run_is_reinstalled(server, tmp_path):
    install(server, ["helm"], tmp_path)
    (tmp_path / "helm").chmod(0o644)
    (line,) = install(server, ["helm"], tmp_path)
    assert "reinstalled (" in line and "reports no version" in line
    assert os.access(tmp_path / "helm", os.X_OK)


def test_a_pinned_digest_wins_and_needs_no_checksum_file(server, tmp_path):
    with pytest.raises(DashiError, match="pinned in cluster/versions.py"):
        tools.install_one("kubectl", bin_dir=tmp_path, os_name=OS, arch=ARCH, base_url=server["mirror_url"],
                          pinned={("kubectl", OS, ARCH): "ab" * 32})
    good = sha(binaries()["kubectl"])
    line = tools.install_one("kubectl", bin_dir=tmp_path, os_name=OS, arch=ARCH, base_url=server["mirror_url"],
                             pinned={("kubectl", OS, ARCH): good})
    assert "pinned" in line
    assert not any(_is_checksum(h) for h in server["hits"])


def test_missing_download_is_a_clear_error(server, tmp_path):
    server["mirror"] = {}
    with pytest.raises(DashiError, match="download failed: .*HTTP 404"):
        install(server, ["helm"], tmp_path)


def test_checksum_file_formats():
    assert tools.expected_sha256("ABC123\n", "kubectl") == "abc123"
    text = "aaa  _dist/k3d-linux-amd64\nbbb *k3d-darwin-arm64\n"
    assert tools.expected_sha256(text, "k3d-linux-amd64") == "aaa"
    assert tools.expected_sha256(text, "k3d-darwin-arm64") == "bbb"
    assert tools.expected_sha256(text, "k3d-windows-amd64.exe") is None


def test_upstream_urls_and_checksums_stay_with_the_publisher():
    assert tools.artifact("k3d", "linux", "amd64").url == \
        "https://github.com/k3d-io/k3d/releases/download/v5.9.0/k3d-linux-amd64"
    assert tools.artifact("helm", "darwin", "arm64").checksum_url == \
        "https://get.helm.sh/helm-v3.19.2-darwin-arm64.tar.gz.sha256sum"
    assert tools.artifact("kubectl", "linux", "arm64").checksum_url == \
        "https://dl.k8s.io/release/v1.33.4/bin/linux/arm64/kubectl.sha256"
    mirrored = tools.artifact("k3d", "linux", "amd64", base="http://mirror.example/k3d")
    assert mirrored.url == "http://mirror.example/k3d/v5.9.0/k3d-linux-amd64"
    assert mirrored.checksum_url == "https://github.com/k3d-io/k3d/releases/download/v5.9.0/checksums.txt"


def test_unknown_tool():
    with pytest.raises(DashiError, match="unknown tool 'kind'"):
        tools.install(["kind"], os_name=OS, arch=ARCH)


def test_task_takes_no_checksum_from_the_mirror_and_fails_in_one_line(server, tmp_path):
    """`inv tools` with $DASHI_TOOLS_BASE_URL: the checksum is asked of the
    real publisher. Its traffic is sent to a closed port on 127.0.0.1 (an
    HTTPS proxy that refuses), so the test reaches nothing outside."""
    if tools.platform_pair() != (OS, ARCH):
        pytest.skip("the fake release only carries linux/amd64")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(DASHI_HOME=str(tmp_path), DASHI_TOOLS_BASE_URL=server["mirror_url"],
               https_proxy=f"http://127.0.0.1:{free_port()}", HTTPS_PROXY=f"http://127.0.0.1:{free_port()}")
    bad = cli_process.run("tools", "--only", "k3d", env=env, cwd=REPO)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    err = bad.stderr.strip()
    assert err.startswith("error: k3d v5.9.0: cannot verify it: the publisher's checksum could not be read "
                          "(download failed: https://github.com/k3d-io/k3d/releases/download/v5.9.0/checksums.txt")
    assert len(err.splitlines()) == 1
    assert server["hits"] == []  # neither the mirror's checksum nor the unverifiable binary was fetched
    assert not (tmp_path / "bin" / "k3d").exists()
