"""What a notebook written for Colab meets in a labtrain job, installed in its kernel at start
(labtrain_job/notebook.py writes the IPython startup file that calls `install`).

- `!pip install x` / `%pip install x`: jobs have no network. A package that is installed
  already is said so and the notebook goes on; one that is not fails the cell with a message
  naming what is installed.
- `from google.colab import drive` (or any google.colab import): fails with a message saying
  where the job's data set and outputs are instead.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys

# `!pip ...`, `!pip3 ...`, `!python -m pip ...` become the `%pip` magic below.
_SHELL_PIP = re.compile(r"^(\s*)!\s*(?:pip3?|python3?\s+-m\s+pip)\b(.*)$")
_REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_OFFLINE = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
COLAB_MESSAGE = (
    "google.colab exists only on Colab. In a labtrain job the data set the job names is at "
    'labtrain_job.dataset_path() (read-only; choose it with `labtrain run --dataset` or "dataset" in the '
    "job), files you write to labtrain_job.outputs_dir() become the job's artifacts, and there is no Drive "
    "to mount: remove the google.colab lines."
)


class PackageNotInstalled(ImportError):
    """A `pip install` asked for a package this server does not have (and cannot fetch)."""


def install(shell) -> None:
    """Installs the shims in an IPython shell (the notebook's kernel)."""
    shell.input_transformers_cleanup.append(_pip_lines_to_magic)
    shell.register_magic_function(pip_magic, magic_kind="line", magic_name="pip")
    sys.meta_path.insert(0, _NoColab())


def _pip_lines_to_magic(lines: list[str]) -> list[str]:
    return [_SHELL_PIP.sub(r"\1%pip\2", line) for line in lines]


def pip_magic(line: str) -> None:
    words = shlex.split(line)
    if not words or words[0] != "install":  # pip list, show, freeze: they need no network
        subprocess.run([sys.executable, "-m", "pip", *words], check=False, env={**os.environ, **_OFFLINE})
        return
    wanted = _requirements(words[1:])
    installed = _installed()
    missing = [name for name in wanted if _normal(name) not in installed]
    present = [f"{name} {installed[_normal(name)]}" for name in wanted if _normal(name) in installed]
    if missing:
        raise PackageNotInstalled(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here, and jobs have no "
            "network to install anything (`pip install` only works on Colab). Ask your lab's admin to add "
            f"{'it' if len(missing) == 1 else 'them'} to the workers (`!pip list` shows the versions). Installed "
            "here: " + ", ".join(sorted(installed))
        )
    print(
        "labtrain: jobs have no network, so `pip install` was skipped; "
        + (f"already installed: {', '.join(present)}" if present else "nothing to install")
    )


def _requirements(words: list[str]) -> list[str]:
    """Package names from pip's arguments (options, versions and extras dropped; -r files read)."""
    names, skip_next = [], False
    for index, word in enumerate(words):
        if skip_next:
            skip_next = False
            continue
        if word in ("-r", "--requirement"):
            names += _requirement_file(words[index + 1] if index + 1 < len(words) else "")
            skip_next = True
        elif word in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint"):
            skip_next = True
        elif not word.startswith("-"):
            match = _REQUIREMENT_NAME.match(word)
            if match:
                names.append(match.group(0))
    return names


def _requirement_file(path: str) -> list[str]:
    try:
        with open(path) as handle:
            lines = [line.split("#")[0].strip() for line in handle]
    except OSError:
        return []
    return _requirements([line for line in lines if line])


def _installed() -> dict[str, str]:
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[_normal(name)] = dist.version
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _NoColab(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "google.colab" or fullname.startswith("google.colab."):
            raise ModuleNotFoundError(COLAB_MESSAGE, name=fullname)
        return None
