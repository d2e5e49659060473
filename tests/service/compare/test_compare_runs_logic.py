"""A run's items without a server: its params' text read as a job's values would be, its curves
from its metric rows (the last value at a step, non-finite values left out, a key with very
many rows sampled and thinned), and a run's id no one else finds."""

from __future__ import annotations

import math

import pytest

from service.compare.runs import MAX_ROWS_PER_KEY, find_runs, param_value, run_series
from service.compare.series import MAX_POINTS
from service.core.orm import TrackingMetric, User
from service.tracking import store
from service.tracking.principal import UserPrincipal

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "text,value",
    [
        ("0.01", 0.01),
        ("32", 32),
        ("-3", -3),
        ("1e-3", 0.001),
        ("True", True),
        ("false", False),
        ("adam", "adam"),
        ("nan", "nan"),
        ("inf", "inf"),
        (" 1", " 1"),
        ("", ""),
        ("[8, 8]", "[8, 8]"),
        ("1" * 41, "1" * 41),
    ],
)
def test_a_params_text_is_a_number_or_a_flag_where_it_reads_as_one(text, value):
    assert param_value(text) == value and type(param_value(text)) is type(value)


def _run(db, owner: str, rows: list[tuple[str, float, int]]) -> str:
    with db.session() as session:
        user = session.query(User).filter_by(name=owner).one()
        run_id = store.create_run(session, UserPrincipal(user), "0", 1000, [], "r").info.run_id
        session.add_all(
            TrackingMetric(run_id=run_id, key=key, value=value, timestamp=index, step=step)
            for index, (key, value, step) in enumerate(rows)
        )
    return run_id


def test_a_runs_curves_are_by_step_bounded_and_sampled(db, alice, bob):
    many = 3 * MAX_ROWS_PER_KEY
    rows = [("loss", 1.0, 0), ("loss", 0.5, 0), ("loss", math.inf, 1), ("loss", 0.25, 2)]
    rows += [("long", float(step), step) for step in range(many)]
    run_id = _run(db, "alice", rows)
    with db.session() as session:
        series, sampled = run_series(session, run_id)
        assert series["loss"].x == "step" and series["loss"].points == [[0, 0.5], [2, 0.25]]
        long = series["long"].points
        assert sampled and len(long) == MAX_POINTS and long[-1] == [many - 1, many - 1.0]
        assert all(y == x for x, y in long)

        alice_user = session.query(User).filter_by(name="alice").one()
        bob_user = session.query(User).filter_by(name="bob").one()
        found = find_runs(session, alice_user, [run_id, "f" * 32, "x"])
        assert list(found) == [run_id] and found[run_id].downsampled and found[run_id].kind == "run"
        assert found[run_id].metrics == {"long": many - 1.0, "loss": 0.25}
        assert find_runs(session, bob_user, [run_id]) == {}


def test_a_run_with_no_metrics_has_no_curves(db, alice):
    with db.session() as session:
        assert run_series(session, _run(db, "alice", [])) == ({}, False)
