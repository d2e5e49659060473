"""Sweeping the groups killed workers left, on this machine's real cgroups (root, as a
worker running code jobs is): never a group another worker is just making."""

from __future__ import annotations

import os
import time
import uuid

from service.sandbox import cgroups
from service.sandbox.cgroups import Hierarchy, Limits


def test_a_sweep_leaves_a_young_empty_group_and_removes_an_old_one():
    hierarchy = Hierarchy()
    group = hierarchy.create(f"test-sweep-{uuid.uuid4().hex[:8]}", Limits(64 * 1024 * 1024, 8, 1))
    try:
        # Another worker's sandbox between its group's making and its process's arrival: empty.
        hierarchy.sweep()
        assert all(folder.exists() for folder in group.folders.values())
        # A worker killed long ago left it. Its folders are made old, not the clock moved on: a
        # sweep at a later clock would take every other sandbox's young group too (tests run in
        # parallel).
        long_ago = time.time() - cgroups.STALE_AFTER_S - 1
        for folder in group.folders.values():
            os.utime(folder, (long_ago, long_ago))
        hierarchy.sweep()
        assert not any(folder.exists() for folder in group.folders.values())
    finally:
        group.remove()
