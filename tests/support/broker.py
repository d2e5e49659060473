"""What waits in a broker queue, read without taking it: Redis's list, or the serverless
broker's message table (kombu's SQLAlchemy transport)."""

from __future__ import annotations

import redis
from sqlalchemy import create_engine, text


def waiting_messages(broker_url: str, queue: str) -> list[str]:
    if broker_url.startswith("redis"):
        client = redis.Redis.from_url(broker_url)
        try:
            return [m.decode() for m in client.lrange(queue, 0, -1)]
        finally:
            client.close()
    engine = create_engine(broker_url.removeprefix("sqla+"))
    try:
        with engine.connect() as conn:
            tables = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
            if "kombu_message" not in tables:
                return []  # nothing was ever sent
            return list(
                conn.execute(
                    text(
                        "SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
                        "WHERE q.name = :queue AND m.visible"
                    ),
                    {"queue": queue},
                ).scalars()
            )
    finally:
        engine.dispose()
