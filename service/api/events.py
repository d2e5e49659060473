"""The event streams' routes, as Flask sees them: `GET /api/v1/events` (the state of the
caller's jobs as they change; the dashboard's job list) here, and a job's own stream, which
the job routes answer with `stream` when the client asks for `text/event-stream`.

Flask checks the request (token, ownership, arguments) and then hands the stream to the
server's streaming side (service/api/streams.py) with a header naming the feed; the body is
sent from there, without a thread. Served by a plain WSGI server instead (Flask's test
client), a job's stream polls, holding its thread, and the jobs stream sends the state of
the jobs now and ends (the client reconnects after the retry delay).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, request

from service.api.auth import current_user, db_session, reads_only
from service.api.context import services
from service.api.event_feeds import RETRY_MS, JobFeed, JobsFeed, poll_stream, stream_response
from service.courses.access import is_staff_anywhere

bp = Blueprint("events", __name__, url_prefix="/api/v1/events")

SCOPE_KEY = "labtrain.streams"  # set by the streaming side on every request it passes to Flask
HANDOFF_HEADER = "X-Labtrain-Stream"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("")
@reads_only
def my_jobs():
    """Each job the caller may see whenever it changes (their own; a course's for its staff; an
    admin's: everyone's), as `job` events;
    first every queued or running one. A client that reconnects gets them all again."""
    user = current_user()
    staff = not user.is_admin and is_staff_anywhere(db_session(), user.id)
    return stream({"kind": "jobs", "user": user.id, "everyone": user.is_admin, "staff": staff})


def stream(feed: dict[str, Any]) -> Response:
    scope = request.environ.get("asgi.scope")
    if isinstance(scope, dict) and scope.get(SCOPE_KEY):
        return Response(status=200, headers={HANDOFF_HEADER: json.dumps(feed)})
    if feed["kind"] == "jobs":  # it never ends by itself: here, the state now, then reconnect
        return stream_response(snapshot(services().db, feed_from(feed)))
    return stream_response(poll_stream(services().db, feed_from(feed)))


def snapshot(db, feed: JobsFeed):
    yield f"retry: {RETRY_MS}\n\n"
    yield feed.read(db)[0]


def feed_from(spec: dict[str, Any]) -> JobFeed | JobsFeed:
    if spec["kind"] == "job":
        return JobFeed(spec["job"], spec["after"])
    return JobsFeed(spec["user"], everyone=spec["everyone"], staff=spec.get("staff", False))
