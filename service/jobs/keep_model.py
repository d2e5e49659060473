"""Whether a search's trial keeps its model (a search's `keep_models`, service/search/spec.py).

With `keep_models: "best"` the search driver gives each trial it submits the best score of
the search so far, under KEEP_MODEL in the trial's stored spec; the worker saves the trial's
model only when its own score is at least that good. The search's best trial always keeps
its model: it was at least as good as every score before it. A trial the search submitted
before any score came, and every trial of a search with `"all"`, have no rule: they keep theirs.
"""

from __future__ import annotations

import math
from typing import Any

KEEP_MODEL = "keep_model"  # {"metric", "direction", "better_than"} in a trial's stored spec


def rule(metric: str, direction: str, best: float | None) -> dict[str, Any] | None:
    """The rule a trial is submitted with, given the search's best score so far (None: no rule)."""
    if best is None or not math.isfinite(best):
        return None
    return {"metric": metric, "direction": direction, "better_than": best}


def split(stored: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A stored spec as its family's run reads it, and the trial's rule (None: no rule)."""
    if KEEP_MODEL not in stored:
        return stored, None
    spec = dict(stored)
    return spec, spec.pop(KEEP_MODEL)


def not_kept(keep: dict[str, Any] | None, score: float | None) -> str | None:
    """Why a trial with this score keeps no model; None when it keeps it (no rule, no finite
    score to judge, or a score at least as good as the best it was submitted with: a tie keeps
    its model, so the search's best trial has one whichever of the tied trials it is)."""
    if keep is None or score is None or not math.isfinite(score):
        return None
    best, metric = keep["better_than"], keep["metric"]
    worse = score < best if keep["direction"] == "maximize" else score > best
    if not worse:
        return None
    return (
        f"its {metric} {score:.6g} is worse than the search's best when the trial was submitted "
        f"({best:.6g}); the search keeps only the models that could be its best (keep_models: best)"
    )
