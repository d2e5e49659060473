"""Job specs from a file and from `labtrain submit`'s flags."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def read_spec_file(path: str) -> dict[str, Any]:
    """A YAML or JSON job spec (JSON is YAML too); `-` reads stdin."""
    import yaml  # only `submit FILE` needs it

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path} is neither valid YAML nor JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise click.ClickException(
            f'{path} must hold one job spec, a mapping such as {{"dataset": "iris", "algorithm": "knn"}}'
        )
    return spec


def no_spec_message(catalog: dict[str, Any]) -> str:
    """What `labtrain submit` says when given nothing: the kinds of job this server runs, as its
    catalog lists them (GET /api/v1/algorithms, `families`), each by the spec key that selects it."""
    kinds = ", ".join(f"{f['key']} ({f['title']})" for f in catalog.get("families", []))
    return f"give a job spec FILE, or flags; a job spec names one of: {kinds} (`labtrain algorithms` shows each)"


def loose_value(text: str) -> Any:
    """5 -> 5, 0.1 -> 0.1, true -> True, null -> None, [1,2] -> list; anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_value(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint=option)
    return name.strip(), value


def parse_space(text: str) -> tuple[str, dict[str, Any]]:
    """One search dimension in the compact syntax:
    NAME=int:LOW:HIGH[:log|:step=S], NAME=float:LOW:HIGH[:log|:step=S], NAME=cat:A,B,C."""
    name, value = key_value(text, "--space")
    kind, _, rest = value.partition(":")
    kind = kind.strip().lower()
    if kind in ("cat", "categorical", "choice"):
        choices = [loose_value(c.strip()) for c in rest.split(",") if c.strip()]
        if not choices:
            raise click.BadParameter(f"{text!r}: give the choices, e.g. {name}=cat:a,b", param_hint="--space")
        return name, {"type": "categorical", "choices": choices}
    if kind not in ("int", "float"):
        raise click.BadParameter(
            f"{text!r}: the type is int, float or cat (e.g. {name}=int:1:30)", param_hint="--space"
        )
    parts = rest.split(":")
    if len(parts) < 2:
        raise click.BadParameter(f"{text!r}: give low and high, e.g. {name}={kind}:1:30", param_hint="--space")
    dimension: dict[str, Any] = {"type": kind, "low": loose_value(parts[0]), "high": loose_value(parts[1])}
    for extra in parts[2:]:
        if extra == "log":
            dimension["log"] = True
        elif extra.startswith("step="):
            dimension["step"] = loose_value(extra[len("step=") :])
        else:
            raise click.BadParameter(f"{text!r}: {extra!r} is neither 'log' nor 'step=S'", param_hint="--space")
    return name, dimension


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """extra laid over base, nested mappings merged key by key (flags refine a spec file)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def spec_from_flags(options: dict[str, Any]) -> dict[str, Any]:
    """The part of a job spec the flags describe; unset flags add nothing."""
    spec: dict[str, Any] = {}
    if options["name"]:
        spec["name"] = options["name"]
    if options.get("course"):
        spec["course"] = options["course"]
    if options["dataset"]:
        spec["dataset"] = (
            {"id": options["dataset"], "target": options["target"]} if options["target"] else options["dataset"]
        )
    if options["algorithm"]:
        spec["algorithm"] = options["algorithm"]
    params = dict(key_value(p, "--param") for p in options["param"])
    if params:
        spec["params"] = {name: loose_value(value) for name, value in params.items()}
    if options["framework"]:
        spec["framework"] = options["framework"]
    if options["network"]:
        spec["network"] = {"preset": options["network"]}
    training = {key: options[key] for key in ("epochs", "batch_size", "learning_rate") if options[key] is not None}
    if training:
        spec["training"] = training
    if options["device"]:
        spec["device"] = options["device"]
    if options.get("queue"):
        spec["queue"] = options["queue"]
    if options["cv"] is not None:
        spec["evaluation"] = {"cv": options["cv"]}
    search = _search(options)
    if search:
        spec["search"] = search
    return spec


def _search(options: dict[str, Any]) -> dict[str, Any]:
    search: dict[str, Any] = {}
    if options["search"]:
        search["strategy"] = options["search"]
    space = dict(parse_space(s) for s in options["space"])
    if options["space_json"]:
        try:
            extra = json.loads(options["space_json"])
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--space-json") from None
        if not isinstance(extra, dict):
            raise click.BadParameter("must be a JSON object of dimensions", param_hint="--space-json")
        space.update(extra)
    if space:
        search["space"] = space
    for key in ("trials", "parallel", "metric"):
        if options[key] is not None:
            search[key] = options[key]
    return search
