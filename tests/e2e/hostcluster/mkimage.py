#!/usr/bin/env python3
"""Assemble a single-layer container image as a docker-archive tarball
(the `docker save` format) from files on the host, without any daemon.

Why: there is no container registry to pull from and no docker here; the
test cluster needs a handful of tiny images (pause, coredns, agnhost) under
their exact upstream names so that nothing ever tries to pull.
`ctr images import` reads this format and keeps the name from RepoTags.

The output is reproducible: fixed mtimes/owners, sorted entries.
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import tarfile

EPOCH = "1970-01-01T00:00:00Z"


class Layer:
    def __init__(self):
        self.entries = {}  # path -> (TarInfo, bytes|None)

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.add_dir("/" + "/".join(parts[:i]), 0o755, parents=False)

    def add_dir(self, path, mode=0o755, parents=True):
        path = path.rstrip("/") or "/"
        if path == "/" or path in self.entries:
            return
        if parents:
            self._parents(path)
        ti = tarfile.TarInfo(path.lstrip("/"))
        ti.type, ti.mode = tarfile.DIRTYPE, mode
        self.entries[path] = (ti, None)

    def add_bytes(self, path, data, mode=0o644):
        self._parents(path)
        ti = tarfile.TarInfo(path.lstrip("/"))
        ti.size, ti.mode = len(data), mode
        self.entries[path] = (ti, data)

    def add_file(self, src, path, mode):
        with open(src, "rb") as f:
            self.add_bytes(path, f.read(), mode)

    def add_symlink(self, path, target):
        self._parents(path)
        ti = tarfile.TarInfo(path.lstrip("/"))
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
        self.entries[path] = (ti, None)

    def tar_bytes(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                ti, data = self.entries[path]
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "root", "root"
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True, help="full image ref, e.g. registry.k8s.io/pause:3.10")
    ap.add_argument("--entrypoint", default="null", help="JSON list")
    ap.add_argument("--cmd", default="null", help="JSON list")
    ap.add_argument("--user", default="")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--expose", action="append", default=[], help="e.g. 53/udp")
    ap.add_argument("--file", action="append", default=[], help="SRC:DST:MODE(octal)")
    ap.add_argument("--dir", action="append", default=[], help="DST[:MODE]")
    ap.add_argument("--symlink", action="append", default=[], help="DST:TARGET")
    ap.add_argument("--busybox", help="install host's static busybox at this path, with applet links in /bin")
    ap.add_argument("--passwd", action="store_true", help="add minimal /etc/passwd, /etc/group, nsswitch, hosts")
    ap.add_argument("--extra-user", action="append", default=[], help="an /etc/passwd line")
    ap.add_argument("--extra-group", action="append", default=[], help="an /etc/group line")
    a = ap.parse_args()

    layer = Layer()
    layer.add_dir("/tmp", 0o1777)
    for spec in a.file:
        src, dst, mode = spec.rsplit(":", 2)
        layer.add_file(src, dst, int(mode, 8))
    for spec in a.dir:
        dst, _, mode = spec.partition(":")
        layer.add_dir(dst, int(mode, 8) if mode else 0o755)
        if mode:  # explicit mode wins over an earlier default
            layer.entries[dst][0].mode = int(mode, 8)
    for spec in a.symlink:
        dst, target = spec.split(":", 1)
        layer.add_symlink(dst, target)
    if a.busybox:
        bb = "/bin/busybox"
        layer.add_file(bb, a.busybox, 0o755)
        applets = subprocess.run([bb, "--list"], check=True, capture_output=True, text=True).stdout.split()
        for app in applets:
            if app != "busybox" and "/bin/" + app not in layer.entries:
                layer.add_symlink("/bin/" + app, a.busybox)
    if a.passwd:
        users = ["root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin"]
        groups = ["root:x:0:", "nogroup:x:65534:"]
        layer.add_bytes("/etc/passwd", ("\n".join(users + a.extra_user) + "\n").encode())
        layer.add_bytes("/etc/group", ("\n".join(groups + a.extra_group) + "\n").encode())
        layer.add_bytes("/etc/nsswitch.conf", b"hosts: files dns\n")
        layer.add_dir("/root", 0o700)

    layer_tar = layer.tar_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    env = a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {
            "Env": env,
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "User": a.user,
            "WorkingDir": "/",
            "ExposedPorts": {p: {} for p in a.expose} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "tests/e2e/hostcluster/mkimage.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:"):] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [a.name], "Layers": [layer_name]}]

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            t.addfile(ti, io.BytesIO(data))
        put(config_name, config_bytes)
        put(layer_name, layer_tar)
        put("manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.name} ({len(layer_tar) // 1024} KiB layer)")


if __name__ == "__main__":
    main()
