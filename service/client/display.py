"""Human-readable text for jobs: tables, ages, progress lines and final metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_since(value: str | None) -> float | None:
    moment = parse_time(value)
    return max(0.0, (datetime.now(UTC) - moment).total_seconds()) if moment else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def scalar_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The plain numbers of a metrics mapping (confusion matrices and per-fold lists left out)."""
    return [(k, v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def metrics_text(metrics: dict[str, Any] | None) -> str:
    return " ".join(f"{k} {number(v)}" for k, v in scalar_metrics(metrics))


def percent(job: dict[str, Any]) -> str:
    fraction = (job.get("progress") or {}).get("fraction")
    return f"{fraction:.0%}" if isinstance(fraction, (int, float)) else "-"


def progress_text(job: dict[str, Any]) -> str:
    """One line on where a job stands, without timing (that changes on every look)."""
    status, progress = job["status"], job.get("progress") or {}
    if status == "queued":
        if (job.get("waiting") or {}).get("message"):  # held by its course budget until a grant
            return f"queued, waiting: {job['waiting']['message']}"
        position = job.get("position")
        return f"queued: position {position} in the {job.get('queue')} queue" if position else "queued"
    if status != "running":
        return status
    if "trials_done" in progress:  # a search
        planned = progress.get("trials") or (job.get("spec") or {}).get("search", {}).get("trials", "?")
        text = f"trials {progress.get('trials_done', 0)}/{planned}"
        if progress.get("best_value") is not None:
            text += f" best {number(progress['best_value'])} {_params(progress.get('best_params'))}"
        return text
    if "evaluations" in progress:  # an optimisation
        budget = (job.get("spec") or {}).get("optimize", {}).get("evaluations", "?")
        text = f"evaluations {progress.get('evaluations', 0)}/{budget}"
        if progress.get("best_value") is not None:
            text += f" best {number(progress['best_value'])}"
        return text
    if "epochs" in progress:
        return f"epoch {progress.get('epoch', 0)}/{progress['epochs']} {metrics_text(progress.get('metrics'))}".rstrip()
    return f"running {percent(job)}"


def eta_text(job: dict[str, Any]) -> str:
    """Elapsed time and, from the fraction done so far, the time left."""
    if job["status"] != "running":
        return ""
    elapsed = seconds_since(job.get("started_at"))
    fraction = (job.get("progress") or {}).get("fraction")
    if elapsed is None:
        return ""
    text = f"{duration(elapsed)} elapsed"
    if isinstance(fraction, (int, float)) and 0 < fraction < 1:
        text += f", eta {duration(elapsed * (1 - fraction) / fraction)}"
    return text


def epoch_line(data: dict[str, Any]) -> str:
    skip = {"epoch", "epochs", "epoch_time"}
    metrics = " ".join(f"{k} {number(v)}" for k, v in data.items() if k not in skip and isinstance(v, (int, float)))
    return f"epoch {data.get('epoch')}/{data.get('epochs')} {metrics}".rstrip()


def final_lines(job: dict[str, Any]) -> list[str]:
    """What a finished job came to: its metrics and model, or its error."""
    took = ""
    started, finished = parse_time(job.get("started_at")), parse_time(job.get("finished_at"))
    if started and finished:
        took = f" in {duration((finished - started).total_seconds())}"
    lines = [f"job {job['id']} {job['status']}{took}"]
    error = job.get("error")
    if error:
        lines.append(f"error: {error.get('message')} ({error.get('code')})")
    for name, value in scalar_metrics(job.get("metrics")):
        lines.append(f"  {name}: {number(value)}")
    result = job.get("result") or {}
    if result.get("best_value") is not None:
        lines.append(f"  best value: {number(result['best_value'])} {_params(result.get('best_params'))}".rstrip())
    if result.get("model_id"):
        lines.append(f"  model: {result['model_id']}")
    return lines


def _params(params: Any) -> str:
    if isinstance(params, dict):
        return " ".join(f"{k}={number(v)}" for k, v in params.items())
    if isinstance(params, list) and len(params) > 6:
        return f"[{', '.join(number(v) for v in params[:6])}, ...]"
    return "" if params is None else str(params)
