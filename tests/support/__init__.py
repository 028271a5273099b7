"""What the tests share: worlds built on the fakes, the CLI run as a process, the
Docker engine the tests start, the upstream conformance cases and the engine's
truth-table builders."""

from pathlib import Path

# The repository the tests run in.
ROOT = Path(__file__).resolve().parents[2]
