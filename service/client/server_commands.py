"""`labtrain login`, `queue` and `algorithms`: the connection and what the server offers."""

from __future__ import annotations

import os
from typing import Any

import click

from service.client import display
from service.client.api import Api
from service.client.common import connect, emit_json, json_option
from service.client.config import URL_ENV, Login, save_login


@click.command()
@click.option(
    "--url",
    default=lambda: os.environ.get(URL_ENV, "http://127.0.0.1:8000"),
    show_default="$LABTRAIN_URL or http://127.0.0.1:8000",
    help="The labtrain server.",
)
@click.option("--token", prompt=True, hide_input=True, help="Your token (`labtrain users create` printed it).")
@json_option
def login(url: str, token: str, as_json: bool) -> None:
    """Check a token against the server and remember both for later commands."""

    if "://" not in url:
        url = f"http://{url}"  # `labtrain login --url gpu-server:8000` means plain HTTP
    found = Login(url.rstrip("/"), token.strip())
    Api(found).get("/jobs", limit=1)  # a wrong token or URL fails here, before anything is stored
    path = save_login(found)
    if as_json:
        emit_json({"url": found.url, "config": str(path)})
    else:
        click.echo(f"logged in to {found.url} (saved in {path})")


@click.command()
@json_option
def queue(as_json: bool) -> None:
    """Queued and running jobs per queue, workers online, and your queued jobs."""
    answer = connect().get("/queue")
    if as_json:
        return emit_json(answer)
    for name, q in answer["queues"].items():
        click.echo(f"{name}: {q['queued']} queued, {q['running']} running{_queue_details(q)}")
        for worker in q["workers"]:
            gpu = worker.get("gpu")
            gpu_text = f", GPU {gpu['name']} {gpu.get('memory_mb') or '?'} MB" if gpu else ""
            click.echo(f"  worker {worker['name']} ({worker['concurrency']} at once{gpu_text})")
        if not q["workers"]:
            click.echo("  no worker online")
    for name, q in (answer.get("not_configured") or {}).items():  # removed by an admin: nothing starts there
        click.echo(f"{name}: {q['queued']} queued, {q['running']} running  [not configured: {q['message']}]")
    mine = answer.get("your_queued_jobs") or []
    if mine:
        click.echo("\nyour queued jobs:")
        click.echo(
            display.table(
                ["POSITION", "ID", "NAME", "QUEUE", "AGE"],
                [
                    [
                        j["position"] or "-",  # none in a queue no longer configured
                        j["id"],
                        j["name"],
                        j["queue"],
                        display.duration(display.seconds_since(j["created_at"])),
                    ]
                    for j in mine
                ],
            )
        )


def _queue_details(q: dict) -> str:
    """Where it runs and what it takes (servers before named queues did not say)."""
    if "backend" not in q:
        return ""
    where = f"SLURM partition {q['partition']}" if q.get("partition") else q["backend"]
    most = ", ".join(f"{k} {v}" for k, v in (q.get("max") or {}).items())
    return f"  [{q['device']}, {where}" + (f", at most {most}" if most else "") + "]"


@click.command()
@json_option
def algorithms(as_json: bool) -> None:
    """The catalog: algorithms, networks, search and optimisation strategies, with their parameters."""
    catalog = connect().get("/algorithms")
    if as_json:
        return emit_json(catalog)
    click.echo('Algorithms ("algorithm", parameters in "params")')
    for algorithm in catalog.get("algorithms", []):
        click.echo(f"  {algorithm['name']}: {algorithm.get('title', '')} [{', '.join(algorithm.get('tasks', []))}]")
        _parameters(algorithm.get("parameters", []))
    networks = catalog.get("networks", {})
    click.echo('\nNetworks ("framework", "network")')
    for framework, apis in networks.get("frameworks", {}).items():
        click.echo(f"  {framework}: apis {', '.join(apis)}")
    for preset in networks.get("presets", []):
        click.echo(f"  preset {preset['name']}: {preset.get('title', '')}")
    layers = [
        f"{layer['type']}({', '.join(p['name'] for p in layer.get('parameters', []))})"
        for layer in networks.get("layers", [])
    ]
    click.echo(f"  layers: {', '.join(layers)}")
    click.echo("  training:")
    _parameters(networks.get("training", []))
    click.echo('\nSearch strategies ("search")')
    for strategy in (catalog.get("search") or {}).get("strategies", []):
        click.echo(f"  {strategy['name']}: {strategy.get('title', '')}")
        _parameters(strategy.get("parameters", []))
    optimize = catalog.get("optimize", {})
    click.echo('\nOptimisation ("optimize")')
    for strategy in optimize.get("strategies", []):
        click.echo(f"  {strategy['name']}: {strategy.get('title', '')}")
        _parameters(strategy.get("parameters", []))
    for function in optimize.get("functions", []):
        click.echo(f"  function {function['name']}: {function.get('title', '')}")


def _parameters(parameters: list[dict[str, Any]]) -> None:
    for p in parameters:
        default = f" default {p['default']}" if p.get("default") is not None else ""
        description = f"  {p['description']}" if p.get("description") else ""
        click.echo(f"      {p['name']}: {_accepts(p.get('accepts', []))}{default}{description}")


def _accepts(accepts: list[dict[str, Any]]) -> str:
    """`integer 1..30 or null`, `uniform|distance`, from a parameter's accepted types."""
    kinds = []
    for a in accepts:
        if a.get("type") == "choice":
            kinds.append("|".join(str(c) for c in a.get("choices", [])))
            continue
        low = a.get("minimum", a.get("exclusiveMinimum"))
        high = a.get("maximum", a.get("exclusiveMaximum"))
        bounds = f" {'' if low is None else low}..{'' if high is None else high}" if (low, high) != (None, None) else ""
        kinds.append(f"{a.get('type', '?')}{bounds}")
    return " or ".join(kinds) or "any"
