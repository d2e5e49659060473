"""`labtrain courses ...` and `labtrain me`: a course's making, its roster and staff, and what
each of your courses has left of its budget. Over HTTP, like every client command."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import click

from service.client import display
from service.client.common import connect, emit_json, json_option, note


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


@click.command()
@json_option
def me(as_json: bool) -> None:
    """Who you are, and for each of your courses: your role, what you used and what is left."""
    found = connect().get("/me")
    if as_json:
        return emit_json(found)
    click.echo(f"{found['user']}{' (admin)' if found.get('admin') else ''}")
    for course in found.get("courses") or []:
        click.echo(f"  {course['name']} ({', '.join(_roles(course))}): {_left(course)}")
    if not found.get("courses"):
        click.echo("  in no course")


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
    """'budget: 0.4 of 10 GPU-hours left this term, 150 of 200 CPU-hours'."""
    budget, left = course.get("budget") or {}, course.get("left") or {}
    used = course.get("used") or {}
    parts = []
    for key, label in (("gpu_hours", "GPU-hours"), ("cpu_hours", "CPU-hours")):
        if budget.get(key) is None:
            parts.append(f"{display.number(used.get(key, 0))} {label} used (no limit)")
        else:
            parts.append(f"{display.number(left.get(key, 0))} of {budget[key]:g} {label} left this term")
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
