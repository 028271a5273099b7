"""The one seam for subprocesses (k3d, kubectl, helm, docker exec).

``Runner.run`` resolves the program on a PATH that starts with the
project-local tool directory (``./.dashi/bin``, filled by ``inv tools``),
runs it, and raises ``CommandFailed`` (argv + output tail) on a non-zero
exit. ``FakeRunner`` beside it records every argv, stdin and environment and
answers from a script, so unit tests assert exact invocations without any
of the tools installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cluster.errors import CommandFailed, ToolMissing
from cluster.invoked import command
from cluster.paths import default_bin_dir

_INSTALL_HINTS = {
    "k3d": "run `{tools}` (installs a pinned k3d into ./.dashi/bin) or see https://k3d.io",
    "helm": "run `{tools}` (installs a pinned helm into ./.dashi/bin) or see https://helm.sh/docs/intro/install/",
    "kubectl": "run `{tools}` (installs a pinned kubectl into ./.dashi/bin) or see https://kubernetes.io/docs/tasks/tools/",
    "docker": "install Docker (https://docs.docker.com/engine/install/)",
}


def install_hint(tool: str) -> str:
    """How to get a missing tool, naming our own installer as the user runs it."""
    return _INSTALL_HINTS.get(tool, "install it").format(tools=command("tools"))


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def output(self) -> str:
        return "\n".join(p for p in (self.stdout.rstrip(), self.stderr.rstrip()) if p)



def tool_version(runner: "Runner", argv: list[str], parse: Callable[[str], tuple[int, int, int] | None],
                 hint: str = "") -> tuple[int, int, int]:
    """Run a tool's version command and parse what it prints; a ToolMissing
    naming the tool (and how to fix it, ``hint``) when it cannot be read."""
    out = runner.run(argv).stdout
    v = parse(out)
    if v is None:
        raise ToolMissing(f"{argv[0]}: cannot read its version from {out.strip()[:80]!r}"
                          + (f" — {hint}" if hint else ""))
    return v


class Runner:
    """Runs external programs. ``bin_dir`` is searched before $PATH."""

    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()

    def search_path(self) -> str:
        return os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", "")])

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.search_path())

    def run(self, argv: list[str], input: str | None = None, check: bool = True,
            capture: bool = True, env: dict[str, str] | None = None,
            timeout: float | None = None) -> Result:
        argv = [str(a) for a in argv]
        exe = self.which(argv[0])
        if exe is None:
            raise ToolMissing(f"{argv[0]}: not found on PATH (nor in {self.bin_dir}) — "
                              f"{install_hint(argv[0])}")
        full_env = dict(os.environ)
        full_env["PATH"] = self.search_path()
        full_env.update(env or {})
        try:
            proc = subprocess.run([exe, *argv[1:]], input=input, text=True, env=full_env,
                                  stdout=subprocess.PIPE if capture else None,
                                  stderr=subprocess.PIPE if capture else None,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or "") if isinstance(e.stdout, str) else ""
            raise CommandFailed(argv, 124, out + f"\n(timed out after {timeout:.0f}s)") from e
        except OSError as e:
            raise CommandFailed(argv, 127, str(e)) from e
        res = Result(tuple(argv), proc.returncode, proc.stdout or "", proc.stderr or "")
        if check and res.returncode != 0:
            raise CommandFailed(argv, res.returncode, res.output)
        return res


# --------------------------------------------------------------------------
# The fake, for tests


@dataclass
class Call:
    argv: tuple[str, ...]
    input: str | None
    env: dict[str, str] | None

    @property
    def cmd(self) -> str:
        return shlex.join(self.argv)


Responder = Callable[[Call], Result]


@dataclass
class FakeRunner(Runner):
    """Records calls; answers from ``script`` (argv prefix -> Result or callable).

    Tools listed in ``tools`` exist (``which`` finds them under /fake/bin);
    calling a program not listed raises ToolMissing like the real runner.
    The first matching prefix wins; a prefix may be answered several times.
    Unscripted calls succeed with empty output.
    """

    tools: set[str] = field(default_factory=lambda: {"k3d", "kubectl", "helm", "docker"})
    script: list[tuple[tuple[str, ...], Result | Responder]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self):
        self.bin_dir = Path("/fake/bin")

    def which(self, name: str) -> str | None:
        return f"/fake/bin/{name}" if name in self.tools else None

    def on(self, *prefix: str, stdout: str = "", stderr: str = "", returncode: int = 0,
           respond: Responder | None = None) -> "FakeRunner":
        self.script.append((tuple(prefix), respond or Result(tuple(prefix), returncode, stdout, stderr)))
        return self

    def run(self, argv, input=None, check=True, capture=True, env=None, timeout=None) -> Result:
        argv = tuple(str(a) for a in argv)
        if self.which(argv[0]) is None:
            raise ToolMissing(f"{argv[0]}: not found on PATH (nor in {self.bin_dir}) — "
                              f"{install_hint(argv[0])}")
        call = Call(argv, input, dict(env) if env else None)
        self.calls.append(call)
        res = Result(argv, 0)
        for prefix, answer in self.script:
            if argv[:len(prefix)] == prefix:
                res = answer(call) if callable(answer) else Result(argv, answer.returncode,
                                                                    answer.stdout, answer.stderr)
                break
        if check and res.returncode != 0:
            raise CommandFailed(list(argv), res.returncode, res.output)
        return res

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls]
