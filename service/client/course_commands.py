"""`labtrain courses ...` and `labtrain me`: a course's making, its roster and staff, its
students' use and grants of hours, and what each of your courses has left of its budget and
where your queued jobs stand. Over HTTP, like every client command."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import click

from service.client import display
from service.client.common import connect, emit_json, json_option, note
from service.client.uploads import Payload, human_size, send


@click.group()
def courses() -> None:
    """Courses: create one (admin), import its roster and add TAs (instructor), list and show them."""


@courses.command("create")
@click.argument("name")
@click.option("--term-end", required=True, metavar="YYYY-MM-DD", help="The last day of the term.")
@click.option("--instructor", "instructors", multiple=True, required=True, help="An instructor's user name; repeat.")
@click.option(
    "--gpu-hours", type=click.FloatRange(0), help="Each student's GPU-hours for the term (default: no limit)."
)
@click.option(
    "--cpu-hours", type=click.FloatRange(0), help="Each student's CPU-hours for the term (default: no limit)."
)
@click.option("--week-gpu-hours", type=click.FloatRange(0), help="A weekly cap on each student's GPU-hours.")
@click.option("--share", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="The course's weight against other courses on the lab's queue.")  # fmt: skip
@json_option
def create(name: str, term_end: str, instructors: tuple[str, ...], share: float, as_json: bool, **hours: Any) -> None:
    """Create a course (admins only).

    \b
    labtrain courses create DL-2026 --term-end 2027-01-31 --instructor prof --gpu-hours 10 --cpu-hours 200
    """
    budget = {key: value for key, value in hours.items() if value is not None}
    body = {"name": name, "term_end": term_end, "instructors": list(instructors), "share": share}
    body["budget"] = budget or None
    course = connect().post("/courses", json=body)
    if as_json:
        return emit_json(course)
    click.echo(course["name"])
    note(f"course {course['name']} created, term ends {course['term_end']}")


@courses.command("list")
@json_option
def list_courses(as_json: bool) -> None:
    """Your courses and your roles in them (an admin's: every course)."""
    found = connect().get("/courses")
    items = found["items"] if isinstance(found, dict) else found
    if as_json:
        return emit_json(items)
    rows = [[c["name"], ", ".join(_roles(c)) or "-", c.get("term_end") or "-", _budget(c.get("budget"))] for c in items]
    click.echo(display.table(["COURSE", "YOUR ROLES", "TERM ENDS", "BUDGET PER STUDENT"], rows))


@courses.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """A course: its term, budget, share and members."""
    course = connect().get(f"/courses/{name}")
    if as_json:
        return emit_json(course)
    click.echo(f"{course['name']}: term ends {course.get('term_end')}, budget {_budget(course.get('budget'))}")
    members = course.get("members") or []
    if members:
        click.echo(display.table(["USER", "ROLES"], [[m.get("user"), ", ".join(_roles(m))] for m in members]))


@courses.command("roster")
@click.argument("name")
@click.argument("roster", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tokens-out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where each new student's token is written, once, as `id,token` rows (mode 600).")  # fmt: skip
@json_option
def roster(name: str, roster: Path, tokens_out: Path, as_json: bool) -> None:
    """Import a roster CSV (header `id,name,email`): new students get accounts, existing users are
    enrolled. The new tokens are shown by the server this once and written to --tokens-out only."""
    if tokens_out.exists():
        raise click.BadParameter(
            f"{tokens_out} exists; tokens are written to a new file only", param_hint="--tokens-out"
        )
    answer = connect().post(f"/courses/{name}/roster", files={"file": (roster.name, roster.read_bytes(), "text/csv")})
    _write_tokens(tokens_out, answer.get("created") or [])
    if as_json:
        return emit_json(
            {"created": [c["id"] for c in answer.get("created") or []], "enrolled": answer.get("enrolled")}
        )
    note(
        f"{len(answer.get('enrolled') or [])} students enrolled in {name}, "
        f"{len(answer.get('created') or [])} of them new accounts (their tokens in {tokens_out})"
    )


@courses.command("member")
@click.argument("name")
@click.argument("user")
@click.option("--role", type=click.Choice(["ta", "student", "instructor"]), default="ta", show_default=True)
@click.option("--remove", is_flag=True, help="Take the role away instead.")
@json_option
def member(name: str, user: str, role: str, remove: bool, as_json: bool) -> None:
    """Give a user a role in the course (a TA, by default), or take it away (instructors)."""
    api = connect()
    if remove:
        api.request("DELETE", f"/courses/{name}/members/{user}", params={"role": role})
        answer: Any = {"course": name, "user": user, "removed": role}
    else:
        answer = api.request("PUT", f"/courses/{name}/members/{user}", json={"role": role}).json()
    if as_json:
        return emit_json(answer)
    note(f"{user} {'is no longer' if remove else 'is now'} {role} in {name}")


@courses.command("usage")
@click.argument("name")
@json_option
def usage(name: str, as_json: bool) -> None:
    """Each student's budget, grants, use and what is left (instructors and TAs)."""
    rows = connect().get(f"/courses/{name}/usage")["items"]
    if as_json:
        return emit_json(rows)
    click.echo(
        display.table(
            ["USER", "NAME", "JOBS", "GPU-H USED", "GPU-H LEFT", "CPU-H USED", "CPU-H LEFT", "GRANTED"],
            [
                [
                    row["user"],
                    row.get("name"),
                    row.get("jobs"),
                    display.number(row["used"]["gpu_hours"]),
                    _hours(row["left"]["gpu_hours"]),
                    display.number(row["used"]["cpu_hours"]),
                    _hours(row["left"]["cpu_hours"]),
                    _granted(row.get("granted")),
                ]
                for row in rows
            ],
        )
    )


@courses.command("grant")
@click.argument("name")
@click.argument("user")
@click.option("--gpu-hours", type=click.FloatRange(0), default=0.0, help="GPU-hours to add to the student's budget.")
@click.option("--cpu-hours", type=click.FloatRange(0), default=0.0, help="CPU-hours to add to the student's budget.")
@json_option
def grant(name: str, user: str, gpu_hours: float, cpu_hours: float, as_json: bool) -> None:
    """Give a student hours on top of the course's budget (instructors); a job their budget held starts.

    \b
    labtrain courses grant DL-2026 ann --gpu-hours 2
    """
    if not (gpu_hours or cpu_hours):
        raise click.UsageError("give --gpu-hours or --cpu-hours (or both) above 0")
    answer = connect().post(
        f"/courses/{name}/grants", json={"user": user, "gpu_hours": gpu_hours, "cpu_hours": cpu_hours}
    )
    if as_json:
        return emit_json(answer)
    note(f"{user} in {name}: {_left(answer).removeprefix('budget: ')}")


@click.command()
@json_option
def me(as_json: bool) -> None:
    """Who you are; for each of your courses: your role, what you used and what is left (this
    week's too, where the course caps weeks); and where your queued jobs stand."""
    found = connect().get("/me")
    if as_json:
        return emit_json(found)
    click.echo(f"{found['user']}{' (admin)' if found.get('admin') else ''}")
    for course in found.get("courses") or []:
        click.echo(f"  {course['name']} ({', '.join(_roles(course))}): {_left(course)}")
        if course.get("week"):
            week = course["week"]
            click.echo(
                f"    this week: {display.number(week['left'])} of {week['cap']:g} GPU-hours left "
                f"(resets {week['resets_at']})"
            )
        _queue_lines(course.get("queue") or [])
    if not found.get("courses"):
        click.echo("  in no course")
    _queue_lines(found.get("queue") or [], indent="  ")
    if found.get("storage"):
        click.echo(f"  storage: {_storage(found['storage'])}")


def _queue_lines(queued: list[dict[str, Any]], indent: str = "    ") -> None:
    for job in queued:
        where = f"position {job['position']} in the {job['queue']} queue" if job.get("position") else "queued"
        if (job.get("waiting") or {}).get("message"):
            where += f", waiting: {job['waiting']['message']}"
        elif job.get("estimated_start"):
            where += f", estimated start {job['estimated_start']}"
        click.echo(f"{indent}job {job['id']} {job.get('name') or ''}".rstrip() + f": {where}")


def _storage(storage: dict[str, Any]) -> str:
    """'1.2 GB of 20 GB used (datasets 1 GB, jobs 200 MB)'."""
    kinds = ", ".join(f"{kind} {human_size(size)}" for kind, size in (storage.get("by_kind") or {}).items() if size)
    used = f"{human_size(storage['used_bytes'])} of {human_size(storage['quota_bytes'])} used"
    return f"{used} ({kinds})" if kinds else used


def _hours(left: float | None) -> str:
    return "no limit" if left is None else display.number(left)


def _granted(granted: dict[str, float] | None) -> str:
    parts = [f"{granted[key]:g} {label}" for key, label in (("gpu_hours", "GPU-h"), ("cpu_hours", "CPU-h"))
             if (granted or {}).get(key)]  # fmt: skip
    return ", ".join(parts) or "-"


def _roles(entry: dict[str, Any]) -> list[str]:
    roles = entry.get("roles") or ([entry["role"]] if entry.get("role") else [])
    return [str(role) for role in roles]


def _budget(budget: dict[str, Any] | None) -> str:
    if not budget:
        return "no limit"
    parts = [f"{budget[key]:g} {label}" for key, label in (("gpu_hours", "GPU-h"), ("cpu_hours", "CPU-h"))
             if budget.get(key) is not None]  # fmt: skip
    if budget.get("week_gpu_hours") is not None:
        parts.append(f"{budget['week_gpu_hours']:g} GPU-h a week")
    return ", ".join(parts) or "no limit"


def _left(course: dict[str, Any]) -> str:
    """'budget: 0.4 of 10 GPU-hours left this term, 150 of 200 CPU-hours' (grants included)."""
    budget, left = course.get("budget") or {}, course.get("left") or {}
    used, granted = course.get("used") or {}, course.get("granted") or {}
    parts = []
    for key, label in (("gpu_hours", "GPU-hours"), ("cpu_hours", "CPU-hours")):
        if budget.get(key) is None:
            parts.append(f"{display.number(used.get(key, 0))} {label} used (no limit)")
        else:
            total = budget[key] + (granted.get(key) or 0)
            parts.append(f"{display.number(left.get(key, 0))} of {total:g} {label} left this term")
    return "budget: " + ", ".join(parts)


def _write_tokens(path: Path, created: list[dict[str, Any]]) -> None:
    """`id,token` rows in a file only its owner may read, made before anything is written to it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "token"])
    for row in created:
        writer.writerow([row["id"], row["token"]])
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", newline="") as handle:
        handle.write(buffer.getvalue())


# ---------------------------------------------------------------- course data sets


@courses.command("dataset")
@click.argument("course")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "dataset_name", required=True, help="Its name in the course, e.g. aicup-train.")
@click.option("--target", help="A CSV's column to predict (the default target of jobs on it).")
@json_option
def publish_dataset(course: str, file: Path, dataset_name: str, target: str | None, as_json: bool) -> None:
    """Publish a data set to the course (instructors): a CSV, an NPZ or a zip of class folders.
    Every member trains on it, read-only, as {"course": COURSE, "name": NAME}.

    \b
    labtrain courses dataset DL-2026 train.csv --name aicup-train --target label
    """
    fields = {"name": dataset_name, "target": target}
    answer = send(connect(), Payload.of_file(file), "dataset", f"/courses/{course}/datasets", fields)
    if as_json:
        return emit_json(answer)
    click.echo(answer["id"])
    note(
        f"{answer['name']} published to {course} ({answer.get('rows')} rows); "
        f'specs name it "dataset": {{"course": "{course}", "name": "{answer["name"]}"}}'
    )


@courses.command("datasets")
@click.argument("course")
@json_option
def list_datasets(course: str, as_json: bool) -> None:
    """The course's data sets (its members)."""
    items = connect().get(f"/courses/{course}/datasets")["items"]
    if as_json:
        return emit_json(items)
    rows = [[d["name"], d.get("kind"), d.get("rows"), d.get("target") or "-", d["id"]] for d in items]
    click.echo(display.table(["NAME", "KIND", "ROWS", "TARGET", "ID"], rows))
