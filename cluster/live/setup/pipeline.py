"""A set-up pipeline as an ordered list of named stages (after kind's create.go).

"Stage" is this module's word; "step" means a policy step of a profile and
nothing else.

``cluster-up`` (cluster.local.lifecycle) and ``prepare``
(cluster.live.setup.prepare) are each such a list. A ``Stage`` has a name,
a title, the ``Action``s it performs (each one can describe itself, so
``--dry-run`` prints exactly what a real run executes),
an optional ``check`` that says "already done" (that is what makes a re-run
on a healthy cluster change nothing), and an optional ``undo``.

``run_stages`` prints a status line per stage that starts with a spinner and
the elapsed time and ends with the outcome and its duration. A failed stage
reports the failed command and its output tail; what ran is undone only when
the user asked for cleanup, otherwise the cluster is left for inspection.

Titles, notes, plans, commands and their output are printed as plain text,
never as rich markup: YAML such as ``policyCIDRMatchMode: [nodes]`` or a
command's output would otherwise lose every ``[...]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import yaml
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from cluster.errors import CommandFailed, DashiError
from cluster.live.observe.poll import wait_until
from cluster.live.safety.lease import Hold
from cluster.live.setup.canary import CanaryResult
from cluster.paths import REPO_ROOT
from cluster.seams.kube import Kube
from cluster.ui import display, elapsed, indent


class CommandRunner(Protocol):
    """What a pipeline needs of the subprocess seam (cluster.seams.runner.Runner)."""

    def run(self, argv: list[str], input: str | None = None, check: bool = True, capture: bool = True,
            env: dict[str, str] | None = None, timeout: float | None = None): ...


# --------------------------------------------------------------------------
# The session a pipeline runs in


@dataclass
class SetupContext:
    """What a pipeline's stages hand on to later stages and to its summary.
    ``prepare`` uses these; ``cluster-up`` (cluster.local.lifecycle) extends
    them with what its own stages find."""

    hold: Hold | None = None  # the lock and lease, when the whole pipeline holds them (prepare)
    cni: str | None = None  # the policy engine detected on the cluster
    standins: str = ""  # what the stand-ins stage did
    canary: CanaryResult | None = None  # what the canary measured
    canary_line: str = ""  # its verdict, as printed


@dataclass
class Session:
    runner: CommandRunner | None
    console: Console
    kube_factory: Callable[[str], Kube] | None = None
    context: str | None = None
    dry_run: bool = False
    cleanup_on_failure: bool = False
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    ctx: "SetupContext" = field(default_factory=lambda: SetupContext())
    _kube: Kube | None = None
    _progress: Callable[[str], None] | None = None

    @property
    def kube(self) -> Kube:
        """The cluster API, connected on first use (the cluster may not exist before)."""
        if self._kube is None:
            if self.kube_factory is None:
                raise DashiError("internal: no Kubernetes client for this session")
            self._kube = self.kube_factory(self.context)
        return self._kube

    def progress(self, detail: str) -> None:
        if self._progress:
            self._progress(detail)


# --------------------------------------------------------------------------
# Actions: what a stage does, printable and executable


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


class Action:
    def describe(self, s: Session) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def execute(self, s: Session) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Run(Action):
    """An external command through the runner. ``files`` are shown in the plan."""

    argv: list[str]
    input: str | None = None
    env: dict[str, str] | None = None
    files: tuple[Path, ...] = ()
    why: str = ""

    def describe(self, s: Session) -> str:
        out = []
        if self.why:
            out.append(f"# {self.why}")
        out.append("$ " + display(self.argv, self.env))
        if self.input:
            out.append("  with stdin:")
            out.append(indent(self.input, "    "))
        for f in self.files:
            out.append(f"  {_rel(f)}:")
            out.append(indent(Path(f).read_text(), "    "))
        return "\n".join(out)

    def execute(self, s: Session) -> str | None:
        s.progress(display(self.argv, self.env))
        return s.runner.run(self.argv, input=self.input, env=self.env).stdout


@dataclass
class WriteFile(Action):
    path: Path
    content: str

    def describe(self, s: Session) -> str:
        return f"write {_rel(self.path)}:\n" + indent(self.content, "    ")

    def execute(self, s: Session) -> str | None:
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.content)
        return None


@dataclass
class Apply(Action):
    """Server-side apply of objects through the Kube seam."""

    objects: list[dict]
    why: str = ""

    def describe(self, s: Session) -> str:
        head = f"# {self.why}\n" if self.why else ""
        body = yaml.safe_dump_all(self.objects, sort_keys=False).rstrip()
        return head + "apply (server-side, field manager dashi-cluster):\n" + indent(body, "    ")

    def execute(self, s: Session) -> str | None:
        for obj in self.objects:
            s.kube.apply(obj)
        return None


@dataclass
class Wait(Action):
    """Poll ``probe`` until it reports ready, or fail after ``timeout_s``."""

    what: str
    probe: Callable[[Session], tuple[bool, str]]
    timeout_s: float
    interval_s: float = 2.0

    def describe(self, s: Session) -> str:
        return f"wait until {self.what} (timeout {int(self.timeout_s)}s)"

    def execute(self, s: Session) -> str | None:
        return poll(s, self.what, self.probe, self.timeout_s, self.interval_s)


@dataclass
class Note(Action):
    """Plan text for what a custom stage does (it executes nothing itself)."""

    text: str

    def describe(self, s: Session) -> str:
        return self.text

    def execute(self, s: Session) -> str | None:
        return None


def poll(s: Session, what: str, probe: Callable[[Session], tuple[bool, str]],
         timeout_s: float, interval_s: float = 2.0) -> str:
    """Wait in a session until ``probe`` is ready. API errors count as "not
    yet": the API server restarts and settles while a CNI comes up."""
    return wait_until(what, lambda: probe(s), timeout_s=timeout_s, interval_s=interval_s, clock=s.clock,
                      sleep=s.sleep, progress=lambda d: s.progress(f"{what}: {d}"), retry_api_errors=True)


# --------------------------------------------------------------------------
# Steps


@dataclass
class Stage:
    name: str
    title: str
    actions: Callable[[Session], list[Action]] = lambda s: []
    check: Callable[[Session], str | None] | None = None
    run: Callable[[Session], str | None] | None = None
    undo: Callable[[Session], None] | None = None
    verify: bool = False  # only looks: never counts as a change

    def plan(self, s: Session) -> list[Action]:
        return self.actions(s)


@dataclass
class Outcome:
    name: str
    title: str
    status: str  # "changed" | "unchanged" | "verified" | "failed"
    note: str
    seconds: float


class StageFailed(DashiError):
    def __init__(self, stage: Stage, cause: Exception, left_for_inspection: str):
        self.stage = stage
        self.cause = cause
        self.exit_code = getattr(cause, "exit_code", 1)
        super().__init__(f"stage '{stage.name}' failed: {cause}"
                         + (f"\n{left_for_inspection}" if left_for_inspection else ""))


def _execute(stage: Stage, s: Session) -> str | tuple[bool, str] | None:
    if stage.run is not None:
        return stage.run(s)
    for action in stage.actions(s):
        action.execute(s)
    return None


def run_stages(stages: list[Stage], s: Session, *, after_failure: str = "") -> list[Outcome]:
    """Run stages in order; see the module docstring for the contract."""
    outcomes: list[Outcome] = []
    done: list[Stage] = []
    n = len(stages)
    for i, stage in enumerate(stages, 1):
        label = f"[{i}/{n}] {stage.title}"
        t0 = s.clock()
        with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(),
                      console=s.console, transient=True) as prog:
            task = prog.add_task(label)
            s._progress = lambda d, _t=task: prog.update(_t, description=f"{label} — {d}"[:160])
            try:
                already = stage.check(s) if stage.check else None
                if already:
                    status, note = ("verified" if stage.verify else "unchanged"), already
                else:
                    got = _execute(stage, s)
                    # A custom run may return (changed, note) when only it can
                    # tell whether anything changed (an idempotent apply).
                    changed, note = got if isinstance(got, tuple) else (True, got or "")
                    status = "verified" if stage.verify else ("changed" if changed else "unchanged")
            except (DashiError, KeyboardInterrupt) as e:
                s._progress = None
                prog.stop()
                secs = s.clock() - t0
                s.console.print(Text.assemble(("✗", "red"), f" {label} — failed after {elapsed(secs)}"))
                if isinstance(e, CommandFailed):
                    s.console.print(f"  command: {display(e.argv)}", markup=False)
                    tail = "\n".join(e.output.strip().splitlines()[-20:])
                    if tail:
                        s.console.print(indent(tail, "  | "), markup=False)
                outcomes.append(Outcome(stage.name, stage.title, "failed", str(e), secs))
                if isinstance(e, KeyboardInterrupt):
                    raise
                left = _after_failure(stages, done, stage, s, after_failure)
                raise StageFailed(stage, e, left) from e
            finally:
                s._progress = None
        secs = s.clock() - t0
        mark = {"changed": "✓", "unchanged": "=", "verified": "✓"}[status]
        suffix = " (no change)" if status == "unchanged" else ""
        s.console.print(Text.assemble((mark, "green"), f" {label}{suffix}{' — ' + note if note else ''} ",
                                      (f"({elapsed(secs)})", "dim")))
        outcomes.append(Outcome(stage.name, stage.title, status, note, secs))
        done.append(stage)
    return outcomes


def _after_failure(stages: list[Stage], done: list[Stage], failed: Stage, s: Session,
                   hint: str) -> str:
    if not s.cleanup_on_failure:
        return hint
    s.console.print("cleaning up (--cleanup-on-failure):")
    for stage in reversed([*done, failed]):
        if stage.undo is None:
            continue
        try:
            stage.undo(s)
            s.console.print(f"  undone: {stage.title}", markup=False)
        except DashiError as e:
            s.console.print(f"  could not undo {stage.title}: {e}", style="yellow", markup=False)
    return ""


def nothing_changed(outcomes: list[Outcome]) -> bool:
    return all(o.status in ("unchanged", "verified") for o in outcomes)


def print_plan(stages: list[Stage], s: Session) -> None:
    for i, stage in enumerate(stages, 1):
        s.console.print(Text(f"\n{i}. {stage.title}", style="bold"))
        actions = stage.plan(s)
        if stage.check is not None:
            actions = [Note("(skipped at run time when already done)"), *actions]
        for a in actions:
            s.console.print(indent(a.describe(s), "   "), markup=False)
