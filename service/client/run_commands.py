"""`labtrain runs`: the MLflow runs that are no job (logged from a laptop with
MLFLOW_TRACKING_URI set to labtrain), newest first, as GET /api/v1/runs lists them: id, name,
experiment, status, when it started and a few of its latest metrics. Their ids go to
`labtrain compare` beside jobs'."""

from __future__ import annotations

from typing import Any

import click

from service.client import display
from service.client.common import connect, emit_json, json_option, note

SHOWN_METRICS = 3  # latest values a row shows; --json has them all
MAX_NAME = 30


@click.command()
@click.option("--experiment", metavar="NAME", help="Only the runs of this experiment (its name or id).")
@click.option("--owner", metavar="USER", help="Only this user's runs (for a course's staff and admins).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Runs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Every run, page after page.")
@json_option
def runs(experiment: str | None, owner: str | None, limit: int, all_pages: bool, as_json: bool) -> None:
    """Your MLflow runs that are no job, newest first (a course's staff see the course's).

    \b
    labtrain runs --experiment lr-sweep
    labtrain compare RUN RUN JOB
    """
    api = connect()
    items, cursor = [], None
    while True:
        page = api.get("/runs", experiment=experiment, owner=owner, limit=limit, cursor=cursor)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not all_pages or not cursor:
            break
    if as_json:
        return emit_json({"items": items, "next_cursor": cursor})
    if not items:
        return note("no runs" + (f" in experiment {experiment}" if experiment else ""))
    click.echo(
        display.table(
            ["ID", "NAME", "EXPERIMENT", "STATUS", "STARTED", "METRICS"],
            [
                [
                    run["id"],
                    _cut(run.get("name") or "-"),
                    _cut(run["experiment"]["name"]),
                    run["status"],
                    _started(run),
                    metrics_text(run),
                ]
                for run in items
            ],
        )
    )
    if cursor:
        note(f"more runs: --all, or --limit above {limit}")


def metrics_text(run: dict[str, Any]) -> str:
    """The first few latest metrics, `key value`, and how many more there are."""
    metrics = list((run.get("metrics") or {}).items())
    text = " ".join(f"{key} {display.number(value)}" for key, value in metrics[:SHOWN_METRICS])
    more = (run.get("metric_count") or len(metrics)) - min(len(metrics), SHOWN_METRICS)
    return (text + (f" (+{more})" if more > 0 else "")) or "-"


def _started(run: dict[str, Any]) -> str:
    since = display.seconds_since(run.get("start_time"))
    return f"{display.duration(since)} ago" if since is not None else "-"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"
