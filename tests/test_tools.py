"""`inv tools` against a local HTTP server on 127.0.0.1 serving fake releases
in the upstream layouts, with right and with wrong checksums."""

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from cluster import versions
from cluster.errors import DashiError
from cluster.local import tools

OS, ARCH = "linux", "amd64"
REPO = Path(__file__).resolve().parent.parent


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_tgz(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{OS}-{ARCH}/helm")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def release_files(corrupt: str | None = None) -> dict[str, bytes]:
    """Path -> bytes under <base>/<tool>/..., as tools.artifact lays them out."""
    k3d = b"#!/bin/sh\necho 'k3d version v5.9.0'\n"
    helm = helm_tgz(b"#!/bin/sh\necho v3.19.2\n")
    kubectl = b"#!/bin/sh\necho kubectl\n"
    k, h, kc = versions.K3D_VERSION, versions.HELM_VERSION, versions.KUBECTL_VERSION
    helm_name = f"helm-{h}-{OS}-{ARCH}.tar.gz"
    files = {
        f"/k3d/{k}/k3d-{OS}-{ARCH}": k3d,
        # sha256sum output of a release directory, other platforms included.
        f"/k3d/{k}/checksums.txt": (f"{'0' * 64}  _dist/k3d-darwin-arm64\n"
                                    f"{sha(k3d)}  _dist/k3d-{OS}-{ARCH}\n").encode(),
        f"/helm/{helm_name}": helm,
        f"/helm/{helm_name}.sha256sum": f"{sha(helm)}  {helm_name}\n".encode(),
        f"/kubectl/{kc}/bin/{OS}/{ARCH}/kubectl": kubectl,
        f"/kubectl/{kc}/bin/{OS}/{ARCH}/kubectl.sha256": sha(kubectl).encode(),
    }
    if corrupt:
        key = next(p for p in files if p.startswith(f"/{corrupt}/") and not p.endswith(("sha256", "sha256sum", ".txt")))
        files[key] = files[key] + b"tampered"
    return files


@pytest.fixture
def server():
    state = {"files": release_files(), "hits": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["hits"].append(self.path)
            body = state["files"].get(self.path)
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
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_installs_all_three_verified(server, tmp_path):
    bin_dir = tmp_path / "bin"
    lines = tools.install(bin_dir=bin_dir, base_url=server["url"], os_name=OS, arch=ARCH)
    assert [ln.split(":")[0] for ln in lines] == ["k3d v5.9.0", "helm v3.19.2", "kubectl v1.33.4"]
    assert all("verified against" in ln for ln in lines)
    for name in ("k3d", "helm", "kubectl"):
        assert os.access(bin_dir / name, os.X_OK)
    assert subprocess.run([bin_dir / "k3d"], capture_output=True, text=True).stdout == "k3d version v5.9.0\n"
    # helm came out of its archive, not the archive itself.
    assert (bin_dir / "helm").read_bytes() == b"#!/bin/sh\necho v3.19.2\n"


def test_second_run_downloads_nothing(server, tmp_path):
    tools.install(["k3d"], bin_dir=tmp_path, base_url=server["url"], os_name=OS, arch=ARCH)
    hits = len(server["hits"])
    (line,) = tools.install(["k3d"], bin_dir=tmp_path, base_url=server["url"], os_name=OS, arch=ARCH)
    assert "already installed" in line
    assert len(server["hits"]) == hits


@pytest.mark.parametrize("tool", ["k3d", "helm", "kubectl"])
def test_wrong_checksum_installs_nothing(server, tmp_path, tool):
    server["files"] = release_files(corrupt=tool)
    with pytest.raises(DashiError, match=f"{tool} .*checksum mismatch.*nothing installed"):
        tools.install([tool], bin_dir=tmp_path, base_url=server["url"], os_name=OS, arch=ARCH)
    assert not (tmp_path / tool).exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_pinned_digest_wins_over_the_checksum_file(server, tmp_path):
    with pytest.raises(DashiError, match="pinned in cluster/versions.py"):
        tools.install_one("kubectl", bin_dir=tmp_path, os_name=OS, arch=ARCH, base_url=server["url"],
                          pinned={("kubectl", OS, ARCH): "ab" * 32})
    good = sha(server["files"][f"/kubectl/{versions.KUBECTL_VERSION}/bin/{OS}/{ARCH}/kubectl"])
    line = tools.install_one("kubectl", bin_dir=tmp_path, os_name=OS, arch=ARCH, base_url=server["url"],
                             pinned={("kubectl", OS, ARCH): good})
    assert "pinned" in line
    assert not any(h.endswith(".sha256") for h in server["hits"])


def test_missing_download_is_a_clear_error(server, tmp_path):
    server["files"] = {}
    with pytest.raises(DashiError, match="download failed: .*HTTP 404"):
        tools.install(["helm"], bin_dir=tmp_path, base_url=server["url"], os_name=OS, arch=ARCH)


def test_checksum_file_formats():
    assert tools.expected_sha256("ABC123\n", "kubectl") == "abc123"
    text = "aaa  _dist/k3d-linux-amd64\nbbb *k3d-darwin-arm64\n"
    assert tools.expected_sha256(text, "k3d-linux-amd64") == "aaa"
    assert tools.expected_sha256(text, "k3d-darwin-arm64") == "bbb"
    assert tools.expected_sha256(text, "k3d-windows-amd64.exe") is None


def test_upstream_urls():
    assert tools.artifact("k3d", "linux", "amd64").url == \
        "https://github.com/k3d-io/k3d/releases/download/v5.9.0/k3d-linux-amd64"
    assert tools.artifact("helm", "darwin", "arm64").checksum_url == \
        "https://get.helm.sh/helm-v3.19.2-darwin-arm64.tar.gz.sha256sum"
    assert tools.artifact("kubectl", "linux", "arm64").checksum_url == \
        "https://dl.k8s.io/release/v1.33.4/bin/linux/arm64/kubectl.sha256"


def test_unknown_tool():
    with pytest.raises(DashiError, match="unknown tool 'kind'"):
        tools.install(["kind"], os_name=OS, arch=ARCH)


def test_task_uses_env_base_url_and_fails_in_one_line(server, tmp_path):
    env = dict(os.environ, DASHI_HOME=str(tmp_path), DASHI_TOOLS_BASE_URL=server["url"])
    if tools.platform_pair() != (OS, ARCH):
        pytest.skip("the fake release only carries linux/amd64")
    ok = subprocess.run([sys.executable, "-m", "invoke", "tools", "--only", "k3d"], cwd=REPO, env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "bin" / "k3d").exists()
    server["files"] = release_files(corrupt="kubectl")
    bad = subprocess.run([sys.executable, "-m", "invoke", "tools", "--only", "kubectl"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: kubectl v1.33.4: checksum mismatch")
    assert len(bad.stderr.strip().splitlines()) == 1
