"""The project's own error types.

Every error a user can cause or meet (bad input, a missing tool, a failed
command, an unreachable cluster) is one of these. Tasks turn them into a
one-line message and a non-zero exit; only bugs show a traceback.
"""

from __future__ import annotations


class DashiError(Exception):
    """Base of every expected failure. ``str(err)`` is the one-line message."""

    exit_code = 1


class ManifestError(DashiError):
    """A manifest file or object is invalid. Names the file and the object."""

    def __init__(self, message: str, *, path: str | None = None, obj: str | None = None):
        self.path = path
        self.obj = obj
        where = ": ".join(p for p in (path, obj) if p)
        super().__init__(f"{where}: {message}" if where else message)


class Invalid(ValueError):
    """A value is invalid (a label key, a selector, a port, ...); ``str()``
    says why. Raised by the checks that do not know the file or the object;
    ``at()`` makes it a ManifestError that names them."""

    def at(self, field: str, path: str | None = None, obj: str | None = None) -> ManifestError:
        return ManifestError(f"{field}: {self}", path=path, obj=obj)


class ToolMissing(DashiError):
    """An external tool (docker, k3d, kubectl, helm) is absent or too old."""


class CommandFailed(DashiError):
    """An external command exited non-zero. Carries argv and the output tail."""

    def __init__(self, argv: list[str], returncode: int, output: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        msg = f"command failed (exit {returncode}): {' '.join(argv)}"
        super().__init__(msg + (f"\n{tail}" if tail else ""))


class KubeError(DashiError):
    """The Kubernetes API refused or failed a call. ``status`` is the HTTP
    status when the API server answered (None when it did not)."""

    status: int | None = None


class KubeUnreachable(KubeError):
    """The API server did not answer: connection refused or reset, a timeout,
    TLS failure, a dropped websocket. Nothing can be concluded about the
    cluster, only that it could not be asked."""


class KubeConflict(KubeError):
    """409: the object already exists (create) or changed since it was read
    (update with a stale resourceVersion)."""

    status = 409


class SnapshotError(DashiError):
    """A snapshot is missing, corrupt or does not match its checksum."""


class StateError(DashiError):
    """The tool's own record of a cluster (step record, state directory) is unreadable."""


class LockError(DashiError):
    """Another run holds the lock for this cluster."""


class GuardError(DashiError):
    """A destructive action on a cluster that is not ours was not confirmed."""


class VerificationFailed(DashiError):
    """Live traffic disagreed with the prediction or the intent."""
