"""Per-user rate limits on the costly routes (submit, predict), with the `limits` library.

Counts live in Redis when one is configured (shared by every API process and host), else
in the process's memory (each gunicorn process then counts on its own). A request over the
limit is a 429 with `Retry-After`.
"""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies

from service.core.config import Settings
from service.core.errors import ServiceError


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"


class RateLimits:
    def __init__(self, settings: Settings):
        self.rules = {"submit": settings.submit_rate_limit, "predict": settings.predict_rate_limit}
        url = settings.rate_limit_storage_url
        if url is None:
            url = settings.broker_url if settings.broker_url.startswith("redis") else "memory://"
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(url))
        self.items = {action: parse(rule) for action, rule in self.rules.items() if rule}

    def hit(self, action: str, user_id: str) -> None:
        """Count one `action` of the user; a RateLimited (429) when over the limit."""
        item = self.items.get(action)
        if item is None or self.limiter.hit(item, "labtrain", action, user_id):
            return
        reset = self.limiter.get_window_stats(item, "labtrain", action, user_id).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(
            f"too many {action} requests: the limit is {self.rules[action]}; try again in {retry_after} s",
            field=action,
            details={"limit": self.rules[action], "retry_after": retry_after},
        )
