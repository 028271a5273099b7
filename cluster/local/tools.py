"""`inv tools`: pinned k3d, helm and kubectl into ./.dashi/bin, checksum-verified.

Each download is verified before anything is installed: against a SHA-256
pinned in cluster/versions.py when there is one, otherwise against the
checksum file the publisher ships beside the artifact (k3d: the release's
checksums.txt; helm: <archive>.sha256sum; kubectl: kubectl.sha256). A
mismatch installs nothing. The download base of every tool can be replaced
(``--base-url`` / $DASHI_TOOLS_BASE_URL, laid out as <base>/<tool>/<upstream
layout>) for a mirror or for tests with a local server.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cluster import versions
from cluster.errors import DashiError
from cluster.paths import default_bin_dir

BASE_URL_ENV = "DASHI_TOOLS_BASE_URL"
# A 50 MB binary on a slow link; a stalled connection fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 120


@dataclass(frozen=True)
class Artifact:
    tool: str
    version: str
    url: str
    checksum_url: str
    member: str | None  # path inside a .tar.gz, None for a raw binary


def platform_pair() -> tuple[str, str]:
    system = platform.system().lower()
    if system not in ("linux", "darwin"):
        raise DashiError(f"inv tools supports Linux and macOS, not {platform.system()}: install k3d, helm "
                         "and kubectl yourself")
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise DashiError(f"inv tools has no pinned binaries for CPU {machine!r}")
    return system, arch


def artifact(tool: str, os_name: str, arch: str, base: str | None = None) -> Artifact:
    if tool == "k3d":
        b = base or versions.K3D_DOWNLOAD_BASE
        v = versions.K3D_VERSION
        return Artifact(tool, v, f"{b}/{v}/k3d-{os_name}-{arch}", f"{b}/{v}/checksums.txt", None)
    if tool == "helm":
        b = base or versions.HELM_DOWNLOAD_BASE
        v = versions.HELM_VERSION
        name = f"helm-{v}-{os_name}-{arch}.tar.gz"
        return Artifact(tool, v, f"{b}/{name}", f"{b}/{name}.sha256sum", f"{os_name}-{arch}/helm")
    if tool == "kubectl":
        b = base or versions.KUBECTL_DOWNLOAD_BASE
        v = versions.KUBECTL_VERSION
        url = f"{b}/{v}/bin/{os_name}/{arch}/kubectl"
        return Artifact(tool, v, url, url + ".sha256", None)
    raise DashiError(f"unknown tool {tool!r}: choose from {', '.join(TOOLS)}")


TOOLS = ("k3d", "helm", "kubectl")


def expected_sha256(text: str, filename: str) -> str | None:
    """The digest for ``filename`` in a checksum file: either one bare hash
    (kubectl.sha256) or "<hash>  <name>" lines (sha256sum output; names may
    carry a directory or a '*' binary marker)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and len(lines[0].split()) == 1:
        return lines[0].lower()
    for ln in lines:
        parts = ln.split()
        if len(parts) >= 2 and os.path.basename(parts[-1].lstrip("*")) == filename:
            return parts[0].lower()
    return None


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise DashiError(f"download failed: {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DashiError(f"download failed: {url}: {getattr(e, 'reason', e)}") from e


def _stamp(bin_dir: Path, tool: str) -> Path:
    return bin_dir / f".{tool}.installed"


def install_one(tool: str, *, bin_dir: Path, os_name: str, arch: str, base_url: str | None = None,
                fetch: Callable[[str], bytes] = _fetch, pinned: dict | None = None) -> str:
    base = f"{base_url.rstrip('/')}/{tool}" if base_url else None
    art = artifact(tool, os_name, arch, base)
    target = bin_dir / tool
    stamp = _stamp(bin_dir, tool)
    if target.exists() and stamp.exists() and stamp.read_text().split()[0] == art.version:
        return f"{tool} {art.version}: already installed in {bin_dir}"
    data = fetch(art.url)
    digest = hashlib.sha256(data).hexdigest()
    pin = (pinned if pinned is not None else versions.TOOL_SHA256).get((tool, os_name, arch))
    if pin:
        want, source = pin.lower(), "the SHA-256 pinned in cluster/versions.py"
    else:
        filename = art.url.rsplit("/", 1)[-1]
        want = expected_sha256(fetch(art.checksum_url).decode("utf-8", "replace"), filename)
        source = art.checksum_url
        if not want:
            raise DashiError(f"{tool} {art.version}: {art.checksum_url} lists no checksum for {filename}; "
                             "nothing installed")
    if digest != want:
        raise DashiError(f"{tool} {art.version}: checksum mismatch for {art.url} (expected {want} from {source}, "
                         f"got {digest}); nothing installed")
    if art.member:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                f = tar.extractfile(art.member)
                if f is None:
                    raise KeyError(art.member)
                data = f.read()
        except (tarfile.TarError, KeyError) as e:
            raise DashiError(f"{tool} {art.version}: {art.url} has no {art.member} inside ({e}); nothing installed") from e
    bin_dir.mkdir(parents=True, exist_ok=True)
    tmp = bin_dir / f".{tool}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, target)  # atomic: a half-written binary is never on PATH
    stamp.write_text(f"{art.version} {digest}\n")
    return f"{tool} {art.version}: installed {target} (sha256 {digest[:12]}… verified against {source})"


def install(names: list[str] | None = None, *, bin_dir: Path | None = None, base_url: str | None = None,
            os_name: str | None = None, arch: str | None = None,
            fetch: Callable[[str], bytes] = _fetch) -> list[str]:
    names = names or list(TOOLS)
    for n in names:
        if n not in TOOLS:
            raise DashiError(f"unknown tool {n!r}: choose from {', '.join(TOOLS)}")
    if os_name is None or arch is None:
        os_name, arch = platform_pair()
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
    return [install_one(n, bin_dir=bin_dir, os_name=os_name, arch=arch, base_url=base_url, fetch=fetch)
            for n in names]
