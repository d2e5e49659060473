"""`labtrain compare JOB JOB ...`: jobs (or a search's trials) side by side, as GET
/api/v1/compare returns them: a table of parameters and final metrics, one column per job, the
rows that differ marked with `*` (and bold on a terminal), each metric's curve as a sparkline;
`--csv FILE` writes the comparison as CSV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from service.client.common import connect, emit_json, json_option, note
from service.client.display import number

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII_LEVELS = "_.-~=+*#"  # for a terminal that cannot write the blocks
SPARK_WIDTH = 8
MAX_CELL = 28  # characters of one cell; longer values (a layer list's JSON) are cut
MAX_NAME = 40


@click.command()
@click.argument("ids", nargs=-1)
@click.option("--search", "search_id", metavar="ID", help="Compare a search's trials (the search's id).")
@click.option("--csv", "csv_file", metavar="FILE", help="Also write the comparison as CSV to FILE (- for stdout only).")
@click.option("--differences", "-d", "only_differences", is_flag=True, help="Show only the rows that differ.")
@json_option
def compare(ids: tuple[str, ...], search_id: str | None, csv_file: str | None, only_differences: bool,
            as_json: bool) -> None:  # fmt: skip
    """Put jobs side by side: parameters and final metrics, one column per job; rows that differ
    are marked with *. An id may also be an MLflow run's (`labtrain runs` lists yours).

    \b
    labtrain compare JOB JOB JOB
    labtrain compare --search SEARCH --csv trials.csv
    """
    if bool(ids) == bool(search_id):
        raise click.UsageError("give two or more job or run ids (labtrain runs), or --search with a search's id")
    query = {"search": search_id} if search_id else {"ids": ",".join(ids)}
    api = connect()
    if csv_file:
        text = api.request("GET", "/compare", params={**query, "format": "csv"}).text
        if csv_file == "-":
            click.echo(text, nl=False)
            return
        Path(csv_file).write_text(text, encoding="utf-8")
        note(f"wrote {max(0, len(text.splitlines()) - 1)} rows to {csv_file}")
    comparison = api.get("/compare", **query)
    if as_json:
        return emit_json(comparison)
    if not comparison["items"]:
        note("the search has no trials yet")
        return
    for line, differs in table_lines(comparison, only_differences, spark_levels()):
        click.echo(click.style(line, bold=True) if differs else line)
    if comparison.get("omitted"):
        note(f"{comparison['omitted']} more trials not shown (at most 50 are compared: the best of the leaderboard)")


def table_lines(comparison: dict[str, Any], only_differences: bool, levels: str) -> list[tuple[str, bool]]:
    """The table's lines, each with whether it is a row that differs. A row is (name, its cells,
    whether it differs); a section's title is a row with no cells."""
    items, differ = comparison["items"], comparison["differ"]
    statuses = [item["status"] for item in items]
    body: list[tuple[str, list[str] | None, bool]] = [
        ("id", [item["id"] for item in items], False),
        ("status", statuses, len(set(statuses)) > 1),
    ]
    params = [
        (name, [_value(item["params"].get(name)) for item in items], name in differ["params"])
        for name in comparison["params"]
    ]
    metrics = [
        (name, [_metric(item, name, levels) for item in items], name in differ["metrics"])
        for name in comparison["metrics"]
    ]
    for title, section in (("parameters", params), ("final metrics", metrics)):
        shown = [row for row in section if row[2] or not only_differences]
        if shown:
            body += [(title, None, False), *shown]
    labels = [_cut(item["label"], MAX_CELL) for item in items]
    name_width = max(len(_cut(name, MAX_NAME)) for name, _cells, _differs in body)
    widths = [max([len(label)] + [len(cells[i]) for _n, cells, _d in body if cells]) for i, label in enumerate(labels)]

    def line(mark: str, name: str, cells: list[str]) -> str:
        return "  ".join([f"{mark} {name.ljust(name_width)}", *(c.ljust(w) for c, w in zip(cells, widths))]).rstrip()

    lines = [(line(" ", "", labels), False)]
    for name, cells, differs in body:
        if cells is None:
            lines.append((f"  {name}", False))
        else:
            lines.append((line("*" if differs else " ", _cut(name, MAX_NAME), cells), differs))
    return lines


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _cut(number(value), MAX_CELL)


def _metric(item: dict[str, Any], name: str, levels: str) -> str:
    """The final value (the job's metric, else its curve's last point) and the curve's sparkline."""
    points = ((item.get("series") or {}).get(name) or {}).get("points") or []
    final = item["metrics"].get(name, points[-1][1] if points else None)
    text = "-" if final is None else number(final)
    if len(points) > 1:
        text += " " + sparkline([y for _x, y in points], levels)
    return text


def sparkline(values: list[float], levels: str = BLOCKS, width: int = SPARK_WIDTH) -> str:
    """The values' shape in `width` characters at most: low to high as the levels go."""
    if len(values) > width:
        last = len(values) - 1
        values = [values[round(i * last / (width - 1))] for i in range(width)]
    low, high = min(values), max(values)
    if high == low:
        return levels[len(levels) // 2] * len(values)
    top = len(levels) - 1
    return "".join(levels[round((v - low) / (high - low) * top)] for v in values)


def spark_levels() -> str:
    """The blocks where stdout can write them, else plain ASCII."""
    try:
        BLOCKS.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_LEVELS
    return BLOCKS


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
