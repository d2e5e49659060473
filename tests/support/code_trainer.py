"""The code trainer driven in process, on real sandboxes (bubblewrap and cgroups, as a worker
makes them), with no service around it: a job's source written to the store and its typed run
(tests/support/trainers.py has the reporter that records what the trainer says)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from service.code.spec import CodeRun
from service.core import storage
from service.core.config import Settings
from service.sandbox.probe import capabilities
from workers.trainers import code as code_trainer
from workers.trainers.base import DataSource


def sandbox_settings(home: Path, **overrides: str) -> Settings:
    """A worker's settings living in `home`; the test is skipped where no sandbox can be made."""
    settings = Settings.from_env_map({"LABTRAIN_HOME": str(home), **overrides})
    settings.ensure_dirs()
    found = capabilities(settings)
    if "sandbox_error" in found:
        pytest.skip(f"no sandbox on this machine: {found['sandbox_error']}")
    return settings


def code_job(
    settings: Settings,
    name: str,
    script: str | None = None,
    attempt: int = 1,
    device: str = "cpu",
    files: dict[str, str | bytes] | None = None,
    entrypoint: str = "train.py",
):
    """(run, inputs) of a code job whose source `name` holds `script` as train.py (dedented), or
    `files` as they are; ready for code_trainer.train."""
    source = storage.source_dir(settings, name)
    source.mkdir(parents=True, exist_ok=True)
    for path, content in (files or {"train.py": textwrap.dedent(script or "")}).items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (source / path).write_bytes(content)
        else:
            (source / path).write_text(content)
    run = CodeRun.model_validate(
        {
            "code": {"source": name, "entrypoint": entrypoint, "args": []},
            "resources": {"memory_mb": 2048, "cpus": 1, "time_limit_s": 600},
            "device": device,
            "device_requested": device,
        }
    )
    inputs = code_trainer.load_data(
        run, DataSource(data_dir=settings.data_dir, settings=settings, job_id=f"job-{name}", attempt=attempt)
    )
    return run, inputs
