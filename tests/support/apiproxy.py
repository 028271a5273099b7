"""A TLS-terminating proxy in front of a real API server, that can stop answering.

For the real-cluster tests of an API server that hangs: a client given
``kubeconfig()`` talks to the test cluster through this proxy, which speaks
TLS with its own certificate (made with ``openssl``) and forwards each
connection to the API server with the client credentials of the test
cluster's kubeconfig. ``mode`` says what it does with a new connection, and
with the traffic of the ones already open:

* ``pass``: forwards everything;
* ``hold-exec``: a request to a pod's ``/exec`` (the exec websocket's
  upgrade) is read and never answered, everything else is forwarded: an API
  server whose exec streams hang (a kubelet or a streaming proxy gone
  silent) while the API itself answers;
* ``hold-all``: nothing is answered any more, open connections included:
  a dead SSH tunnel or load balancer that still accepts connections.

Each client connection is served by one thread, which alone reads and
writes both TLS sockets of the pair (an SSL object must not be used by two
threads at once).
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import yaml

MODES = ("pass", "hold-exec", "hold-all")


def _data(entry: dict, key: str, workdir: Path, name: str) -> str | None:
    """A kubeconfig's ``key-data`` (base64) or ``key`` (a path), as a file path."""
    if entry.get(f"{key}-data"):
        path = workdir / name
        path.write_bytes(base64.b64decode(entry[f"{key}-data"]))
        path.chmod(0o600)
        return str(path)
    return entry.get(key)


class ApiProxy:
    def __init__(self, kubeconfig: str, workdir: Path, context: str | None = None):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        name = context or config["current-context"]
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
        url = urlsplit(cluster["server"])
        self.upstream = (url.hostname, url.port or 443)
        workdir.mkdir(parents=True, exist_ok=True)
        self.upstream_tls = ssl.create_default_context(cafile=_data(cluster, "certificate-authority", workdir, "ca.crt"))
        cert, key = (_data(user, "client-certificate", workdir, "client.crt"),
                     _data(user, "client-key", workdir, "client.key"))
        if not (cert and key):
            raise ValueError(f"{kubeconfig}: the proxy forwards with the client certificate of context {name}, "
                             "which has none")
        self.upstream_tls.load_cert_chain(cert, key)
        # The proxy's own certificate, for 127.0.0.1: the client checks it
        # against certificate-authority-data as it would any API server's.
        self.cert, own_key = workdir / "proxy.crt", workdir / "proxy.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=dashi-test-proxy", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(own_key), "-out", str(self.cert)], check=True, capture_output=True)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(self.cert), str(own_key))
        self.mode = "pass"
        self.held: list[socket.socket] = []  # connections kept open and silent
        self.closed = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name="api-proxy", daemon=True).start()

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode

    def kubeconfig(self, path: Path, context: str) -> str:
        """A kubeconfig whose context ``context`` reaches the cluster through the proxy."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {
                "server": f"https://127.0.0.1:{self.port}",
                "certificate-authority-data": base64.b64encode(self.cert.read_bytes()).decode()}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}]}))
        return str(path)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for conn in self.held:
            try:
                conn.close()
            except OSError:
                pass

    # -- serving --------------------------------------------------------------

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="api-proxy-conn", daemon=True).start()

    def _hold(self) -> None:
        self.closed.wait()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "hold-all":
                return self._hold()  # accepted, never a word: not even the TLS handshake
            client = self.tls.wrap_socket(conn, server_side=True)
            self.held.append(client)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            if self.mode == "hold-all" or (self.mode == "hold-exec" and "/exec?" in request_line):
                return self._hold()
            upstream = self.upstream_tls.wrap_socket(socket.create_connection(self.upstream, timeout=10),
                                                     server_hostname=self.upstream[0])
            upstream.settimeout(None)
            self.held.append(upstream)
            upstream.sendall(head)
            self._relay(client, upstream)
        except (OSError, ssl.SSLError):
            return

    def _relay(self, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        peer = {client: upstream, upstream: client}
        while not self.closed.is_set():
            if self.mode == "hold-all":
                return self._hold()  # an open connection goes silent too
            ready = [s for s in peer if s.pending()] or select.select(list(peer), [], [], 0.2)[0]
            for src in ready:
                data = src.recv(65536)
                if not data:
                    return
                if self.mode == "hold-all":
                    return self._hold()
                peer[src].sendall(data)
