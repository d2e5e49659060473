"""A job's tier: `debug` (short; may take a batch job's slot) or `batch` (the default).

A debug job runs for at most LABTRAIN_DEBUG_TIME_LIMIT_S; asking for more is a 422 naming
`tier`. The dispatcher considers debug jobs before batch ones, and one that has waited
LABTRAIN_PREEMPT_AFTER_S asks a running batch job to yield (service/lab/preemption.py).
"""

from __future__ import annotations

from typing import Literal

from service.core.config import Settings
from service.core.errors import SpecError

DEBUG, BATCH = "debug", "batch"
TIERS = (DEBUG, BATCH)
RANK = {DEBUG: 0, BATCH: 1}  # lower goes first

Tier = Literal["debug", "batch"]
TIER_HELP = (
    "debug: a short run (at most the debug time limit) that may take a batch job's slot after a short "
    "wait; batch: the default"
)


def rank(tier: str) -> int:
    """Where a tier's jobs go in the queue: lower first (an unknown tier as batch)."""
    return RANK.get(tier, RANK[BATCH])


def time_limit(tier: str, asked: int | None, limit: int, settings: Settings) -> int:
    """The run time a job gets: what it asked, at most the user's limit and, for a debug job,
    the debug time limit (asking for more is a 422 naming `tier`)."""
    if tier != DEBUG:
        return min(asked or limit, limit)
    cap = min(settings.debug_time_limit_s, limit)
    if asked and asked > cap:
        raise SpecError(
            f"a debug job runs for at most {cap} s, and this one asks for {asked} s; "
            "ask for less time, or leave tier at batch",
            field="tier",
        )
    return min(asked or cap, cap)
