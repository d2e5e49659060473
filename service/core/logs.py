"""Process logs as text (default) or one JSON object a line (`LABTRAIN_LOG_FORMAT=json`),
which log collectors (Loki, Elasticsearch, journald) take as they are.

Every line written while a job runs carries its `job_id`: the runner sets it in a context
variable for the job's duration (and its watch thread sets its own), and a filter on the
handlers copies it onto each record.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("labtrain_job_id", default=None)
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if getattr(record, "job_id", None):
            line["job_id"] = record.job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_format(handlers: list[logging.Handler], log_format: str) -> None:
    """Give these handlers our format and the job-id filter (Celery makes its own handlers)."""
    for handler in handlers:
        handler.setFormatter(formatter(log_format))
        if not any(isinstance(f, JobIdFilter) for f in handler.filters):
            handler.addFilter(JobIdFilter())


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger of a labtrain process: one stream handler in the chosen format."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    root.setLevel(level)
    use_format(root.handlers, log_format)
