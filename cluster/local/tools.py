"""`inv tools`: pinned k3d, helm and kubectl into ./.dashi/bin, checksum-verified.

Each download is verified before anything is installed: against a SHA-256
pinned in cluster/versions.py when there is one, otherwise against the
checksum file the publisher ships beside the artifact (k3d: the release's
checksums.txt, `sha256sum _dist/*` in k3d's Makefile gen-checksum; helm:
<archive>.sha256sum; kubectl: kubectl.sha256). A mismatch installs nothing.

The binaries may come from a mirror (``--base-url`` / $DASHI_TOOLS_BASE_URL,
laid out as <base>/<tool>/<upstream layout>); their checksum never does. It
comes from the pin or from the publisher's own URL, so a mirror cannot serve
a different binary as "verified".

An installed tool counts as installed only while it is the file that was
verified (its SHA-256 is recorded beside it) and it reports the pinned
version when run; otherwise it is downloaded and verified again.
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
from cluster.invoked import command
from cluster.local import helm, k3d, preflight
from cluster.paths import default_bin_dir
from cluster.seams.runner import Runner

BASE_URL_ENV = "DASHI_TOOLS_BASE_URL"
# A 50 MB binary on a slow link; a stalled connection fails instead of hanging.
DOWNLOAD_TIMEOUT_S = 120
# Each tool prints its version in milliseconds; a binary that hangs is broken.
VERSION_TIMEOUT_S = 10

# How each tool reports its version, and how we read it (the preflight's readers).
VERSION_CHECK = {
    "k3d": (k3d.VERSION_ARGV[1:], k3d.parse_version),
    "helm": (helm.VERSION_ARGV[1:], helm.parse_version),
    "kubectl": (preflight.KUBECTL_VERSION_ARGV[1:], preflight.parse_kubectl_version),
}


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
        raise DashiError(f"{command('tools')} supports Linux and macOS, not {platform.system()}: install k3d, helm "
                         "and kubectl yourself")
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise DashiError(f"{command('tools')} has no pinned binaries for CPU {machine!r}")
    return system, arch


def artifact(tool: str, os_name: str, arch: str, base: str | None = None,
             checksum_base: str | None = None) -> Artifact:
    """Where ``tool`` is downloaded from (``base``: a mirror's <url>/<tool>) and
    where its checksum is read (``checksum_base``: the publisher unless a test
    stands in for it; never derived from ``base``)."""
    if tool == "k3d":
        b, cb = base or versions.K3D_DOWNLOAD_BASE, checksum_base or versions.K3D_CHECKSUM_BASE
        v = versions.K3D_VERSION
        return Artifact(tool, v, f"{b}/{v}/k3d-{os_name}-{arch}", f"{cb}/{v}/checksums.txt", None)
    if tool == "helm":
        b, cb = base or versions.HELM_DOWNLOAD_BASE, checksum_base or versions.HELM_CHECKSUM_BASE
        v = versions.HELM_VERSION
        name = f"helm-{v}-{os_name}-{arch}.tar.gz"
        return Artifact(tool, v, f"{b}/{name}", f"{cb}/{name}.sha256sum", f"{os_name}-{arch}/helm")
    if tool == "kubectl":
        b, cb = base or versions.KUBECTL_DOWNLOAD_BASE, checksum_base or versions.KUBECTL_CHECKSUM_BASE
        v = versions.KUBECTL_VERSION
        path = f"{v}/bin/{os_name}/{arch}/kubectl"
        return Artifact(tool, v, f"{b}/{path}", f"{cb}/{path}.sha256", None)
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


def reported_version(tool: str, exe: Path) -> str | None:
    """What ``exe`` says its version is ("v5.9.0"), or None when it does not
    run or prints no version. Runs exactly that file, not whatever PATH finds."""
    args, parse = VERSION_CHECK[tool]
    try:
        res = Runner(exe.parent).run([str(exe), *args], check=False, timeout=VERSION_TIMEOUT_S)
    except DashiError:
        return None
    v = parse(res.stdout) if res.returncode == 0 else None
    return versions.fmt_version(v) if v else None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def installed_problem(tool: str, version: str, bin_dir: Path) -> str | None:
    """None when ``bin_dir/tool`` is the verified ``version``; else why not."""
    target, stamp = bin_dir / tool, _stamp(bin_dir, tool)
    if not target.exists():
        return "not installed"
    if not stamp.exists():
        return f"{target} was not installed by {command('tools')}"
    recorded = stamp.read_text().split()
    if not recorded or recorded[0] != version:
        return f"{target} is {recorded[0] if recorded else 'of unknown version'}, not {version}"
    if len(recorded) < 2 or _sha256_file(target) != recorded[1]:
        return f"{target} is not the file that was verified"
    got = reported_version(tool, target)
    if got != version:
        return f"{target} reports {got or 'no version'} when run, not {version}"
    return None


def _publisher_sha256(art: Artifact, fetch: Callable[[str], bytes]) -> str:
    filename = art.url.rsplit("/", 1)[-1]
    try:
        text = fetch(art.checksum_url).decode("utf-8", "replace")
    except DashiError as e:
        raise DashiError(f"{art.tool} {art.version}: cannot verify it: the publisher's checksum could not be read "
                         f"({e}); nothing installed. The checksum is never taken from a mirror: let this machine "
                         "reach the publisher, or pin the SHA-256 in cluster/versions.py TOOL_SHA256") from e
    want = expected_sha256(text, filename)
    if not want:
        raise DashiError(f"{art.tool} {art.version}: {art.checksum_url} lists no checksum for {filename}; "
                         "nothing installed")
    return want


def install_one(tool: str, *, bin_dir: Path, os_name: str, arch: str, base_url: str | None = None,
                fetch: Callable[[str], bytes] = _fetch, pinned: dict | None = None,
                checksum_base: str | None = None) -> str:
    base = f"{base_url.rstrip('/')}/{tool}" if base_url else None
    art = artifact(tool, os_name, arch, base, checksum_base)
    target = bin_dir / tool
    stamp = _stamp(bin_dir, tool)
    problem = installed_problem(tool, art.version, bin_dir)
    if problem is None:
        return f"{tool} {art.version}: already installed in {bin_dir} (verified, reports {art.version})"
    pin = (pinned if pinned is not None else versions.TOOL_SHA256).get((tool, os_name, arch))
    if pin:
        want, source = pin.lower(), "the SHA-256 pinned in cluster/versions.py"
    else:
        # Read before the download: no point fetching 50 MB that cannot be verified.
        want, source = _publisher_sha256(art, fetch), art.checksum_url
    data = fetch(art.url)
    digest = hashlib.sha256(data).hexdigest()
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
    # The stamp records the digest of the installed file itself (for helm,
    # the binary out of the verified archive), so a replaced file is noticed.
    stamp.write_text(f"{art.version} {hashlib.sha256(data).hexdigest()}\n")
    again = f"reinstalled ({problem}): " if problem != "not installed" else "installed "
    return f"{tool} {art.version}: {again}{target} (sha256 {digest[:12]}… verified against {source})"


def install(names: list[str] | None = None, *, bin_dir: Path | None = None, base_url: str | None = None,
            os_name: str | None = None, arch: str | None = None,
            fetch: Callable[[str], bytes] = _fetch, publisher_url: str | None = None) -> list[str]:
    """Install ``names`` (default all). ``publisher_url`` stands in for the
    publishers, laid out like a mirror (<url>/<tool>/...): tests only, the
    command line has no way to set it."""
    names = names or list(TOOLS)
    for n in names:
        if n not in TOOLS:
            raise DashiError(f"unknown tool {n!r}: choose from {', '.join(TOOLS)}")
    if os_name is None or arch is None:
        os_name, arch = platform_pair()
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
    return [install_one(n, bin_dir=bin_dir, os_name=os_name, arch=arch, base_url=base_url, fetch=fetch,
                        checksum_base=f"{publisher_url.rstrip('/')}/{n}" if publisher_url else None)
            for n in names]
