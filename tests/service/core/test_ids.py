"""Ids (service/core/orm.py new_id): time-ordered, so one owner's jobs start in the order sent."""

from __future__ import annotations

import os

import pytest

from service.core import orm


@pytest.mark.fast
def test_ids_made_in_one_millisecond_still_grow_in_the_order_made():
    ids = [orm.new_id() for _ in range(5000)]  # many share a millisecond
    assert len({i[:12] for i in ids}) < len(ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 22 and int(i, 16) >= 0 for i in ids)


@pytest.mark.fast
def test_a_clock_set_back_does_not_make_an_id_sort_before_the_last(monkeypatch):
    first = orm.new_id()
    monkeypatch.setattr(orm.time, "time", lambda: 1_000.0)  # far in the past
    assert orm.new_id() > first


@pytest.mark.fast
def test_a_forked_child_draws_its_own_random_part():
    last = orm.new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child forgot the parent's last id, so it cannot make the parent's next
        forgot = orm._last_id == [0, 0]
        os.write(write, f"{forgot} {orm.new_id()}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    forgot, child = os.read(read, 64).decode().split()
    os.close(read)
    assert forgot == "True" and len(child) == 22 and child > last
    assert orm.new_id() > last  # the parent counts on from its own
