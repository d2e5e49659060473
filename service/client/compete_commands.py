"""`labtrain compete ...`: a course competition from a student's side (submit a model or a
predictions file, read the leaderboard, choose the final submissions) and an instructor's
(create one), over HTTP like every client command. COMPETITION is the competition's id, as
`labtrain compete list COURSE` shows it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from service.client import display
from service.client.common import connect, emit_json, json_option, note


@click.group()
def compete() -> None:
    """Course competitions: create one (instructors), submit, read the leaderboard, select your final submissions."""


@compete.command("create")
@click.argument("course")
@click.argument("name")
@click.option(
    "--test",
    "test_set",
    required=True,
    help="The labelled hidden test set: a CSV file (uploaded as your own data set) or a data set id.",
)
@click.option("--target", required=True, help="The test set's label column.")
@click.option("--metric", required=True, help="accuracy, macro_f1 (classification); rmse, mae, r2 (regression).")
@click.option("--closes-at", required=True, help="When submissions end: ISO 8601, e.g. 2027-01-31T23:59:00Z.")
@click.option("--train", "train_name", help="The course data set students train on (its name in the course).")
@click.option(
    "--public-fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="The share of the test set the public leaderboard scores.",
)
@click.option("--daily-limit", type=int, default=5, show_default=True, help="Submissions per student per UTC day.")
@click.option(
    "--final-selections",
    type=int,
    default=2,
    show_default=True,
    help="How many submissions each student selects for the final ranking.",
)
@json_option
def create(course: str, name: str, test_set: str, target: str, metric: str, closes_at: str,
           train_name: str | None, public_fraction: float, daily_limit: int, final_selections: int,
           as_json: bool) -> None:  # fmt: skip
    """Create a competition in COURSE (its instructors); prints its id.

    \b
    labtrain compete create DL-2026 aicup --test hidden.csv --target label --metric macro_f1 \\
        --closes-at 2027-01-31T23:59:00Z --train aicup-train
    """
    api = connect()
    path = Path(test_set)
    if path.is_file():  # students never see it: it is the instructor's own data set
        uploaded = api.post("/datasets", files={"file": (path.name, path.read_bytes())}, data={"target": target})
        test_set = uploaded["id"]
    body = {
        "name": name,
        "metric": metric,
        "test": test_set,
        "target": target,
        "closes_at": closes_at,
        "public_fraction": public_fraction,
        "daily_limit": daily_limit,
        "final_selections": final_selections,
        **({"train": {"course": course, "name": train_name}} if train_name else {}),
    }
    answer = api.post(f"/courses/{course}/competitions", json=body)
    if as_json:
        return emit_json(answer)
    click.echo(answer["id"])
    note(f"{name} is open in {course} until {answer.get('closes_at')}")


@compete.command("list")
@click.argument("course")
@json_option
def list_competitions(course: str, as_json: bool) -> None:
    """The competitions of COURSE (its members)."""
    items = connect().get(f"/courses/{course}/competitions")["items"]
    if as_json:
        return emit_json(items)
    rows = [[c["id"], c["name"], c["metric"], c.get("phase"), c.get("closes_at")] for c in items]
    click.echo(display.table(["ID", "NAME", "METRIC", "PHASE", "CLOSES"], rows))


@compete.command("submit")
@click.argument("competition")
@click.option("--model", "model_id", help="The id of one of your models.")
@click.option("--file", "predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A predictions CSV: id,prediction, one row per test input.")  # fmt: skip
@json_option
def submit(competition: str, model_id: str | None, predictions: Path | None, as_json: bool) -> None:
    """Submit a model or a predictions file; prints the submission's id (scored by a job)."""
    if (model_id is None) == (predictions is None):
        raise click.UsageError("give exactly one of --model ID or --file preds.csv")
    api = connect()
    if model_id is not None:
        answer = api.post(f"/competitions/{competition}/submissions", json={"model": model_id})
    else:
        files = {"file": (predictions.name, predictions.read_bytes(), "text/csv")}
        answer = api.post(f"/competitions/{competition}/submissions", files=files)
    if as_json:
        return emit_json(answer)
    click.echo(answer["id"])
    note(f"submitted; scoring. {answer.get('left_today')} submissions left today (resets {answer.get('resets_at')})")


@compete.command("leaderboard")
@click.argument("competition")
@json_option
def leaderboard(competition: str, as_json: bool) -> None:
    """The public leaderboard while open, the private one once closed."""
    board = connect().get(f"/competitions/{competition}/leaderboard")
    if as_json:
        return emit_json(board)
    better = "higher" if board.get("higher_is_better") else "lower"
    click.echo(f"{board.get('name')}: {board.get('phase')} leaderboard, {board.get('metric')} ({better} is better)")
    rows = [[r["rank"], r["user"], _score(r["score"]), r["submissions"], r["submitted_at"]] for r in board["rows"]]
    click.echo(display.table(["RANK", "USER", "SCORE", "SUBMISSIONS", "SUBMITTED"], rows))
    if board.get("left_today") is not None:
        note(f"{board['left_today']} submissions left today")


@compete.command("submissions")
@click.argument("competition")
@json_option
def submissions(competition: str, as_json: bool) -> None:
    """Your submissions (staff: everyone's), newest first, with their scores."""
    found = connect().get(f"/competitions/{competition}/submissions")
    if as_json:
        return emit_json(found)
    rows = [
        [
            s["id"],
            s["user"],
            s["kind"],
            s["status"],
            _score(s["public_score"]),
            _score(s["private_score"]),
            "yes" if s["selected"] else "",
            s.get("error") or "",
        ]
        for s in found["items"]
    ]
    click.echo(display.table(["ID", "USER", "KIND", "STATUS", "PUBLIC", "PRIVATE", "SELECTED", "ERROR"], rows))
    if found.get("left_today") is not None:
        note(f"{found['left_today']} submissions left today; select up to {found.get('final_selections')}")


@compete.command("select")
@click.argument("competition")
@click.argument("submission")
@click.option("--unselect", is_flag=True, help="Take the submission out of your final choices.")
@json_option
def select(competition: str, submission: str, unselect: bool, as_json: bool) -> None:
    """Choose a scored submission for the final (private) ranking."""
    path = f"/competitions/{competition}/submissions/{submission}/select"
    answer = connect().post(path, json={"selected": not unselect})
    if as_json:
        return emit_json(answer)
    note(f"submission {submission} {'unselected' if unselect else 'selected'} for the final ranking")


@compete.command("inputs")
@click.argument("competition")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the test inputs (CSV with an id column).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing file.")
def inputs(competition: str, output: Path, force: bool) -> None:
    """Save the test set's inputs (never its labels), to predict on and submit with --file."""
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; use --force to replace it")
    data = connect().request("GET", f"/competitions/{competition}/test-inputs").content
    partial = output.with_name(f".{output.name}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    rows = data.count(b"\n") - 1
    note(f"saved the test inputs to {output} ({rows} rows)")


def _score(value: Any) -> str | None:
    return None if value is None else f"{value:.4f}"
