"""The Python environment a sandbox runs: the worker's own, named by one path everywhere.

bubblewrap binds what a link points to, so the environment is mounted at its resolved path;
PATH and the interpreter a sandbox starts must name it by that same path. An install reached
through a link (a deploy's `current -> release-N`, or `.venv` itself a link) would otherwise
be mounted at one path and looked for at another, and every program would exit 127.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PythonEnvironment:
    prefix: Path  # the environment (a virtual environment's folder), resolved
    base_prefix: Path  # the installation it was made from, resolved
    interpreter: Path  # the interpreter, by the resolved folder it is in

    @property
    def bin(self) -> Path:
        """The environment's programs: first on a sandbox's PATH."""
        return self.prefix / "bin"

    @property
    def folders(self) -> list[Path]:
        """What a sandbox mounts read-only (/usr is there already)."""
        return [p for p in sorted({self.base_prefix, self.prefix}) if not str(p).startswith("/usr")]


def python_environment(
    prefix: str = sys.prefix, base_prefix: str = sys.base_prefix, executable: str = sys.executable
) -> PythonEnvironment:
    """This process's environment (or the one the arguments describe). The interpreter keeps its
    own name, only its folder is resolved: a virtual environment's bin/python is a link to the
    base interpreter, which started by its own path would not find the environment."""
    interpreter = Path(executable)
    return PythonEnvironment(
        prefix=Path(prefix).resolve(),
        base_prefix=Path(base_prefix).resolve(),
        interpreter=interpreter.parent.resolve() / interpreter.name,
    )
