"""A GPU worker with LABTRAIN_GPU_MPS=1 starts NVIDIA's MPS control daemon, and carries on
without it where the driver does not ship it (a stand-in for the daemon here: no GPU)."""

from __future__ import annotations

import pytest

from workers import mps

pytestmark = pytest.mark.fast


def test_the_daemon_is_started_in_the_background_where_it_is_installed(tmp_path, monkeypatch):
    called = tmp_path / "called"
    control = tmp_path / mps.CONTROL
    control.write_text(f'#!/bin/sh\necho "$@" > {called}\n')
    control.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert mps.start_daemon() is True
    assert called.read_text().strip() == "-d"


def test_a_daemon_that_will_not_start_or_is_missing_leaves_the_worker_running(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert mps.start_daemon() is False
    control = tmp_path / mps.CONTROL
    control.write_text("#!/bin/sh\necho 'no GPU' >&2\nexit 1\n")
    control.chmod(0o755)
    assert mps.start_daemon() is False
