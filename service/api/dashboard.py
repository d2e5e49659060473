"""The web dashboard: a single page at `/` whose scripts, styles and charts are all served
from here, so it works on a lab network with no internet access."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, send_from_directory

STATIC = Path(__file__).parent / "static" / "dashboard"

bp = Blueprint("dashboard", __name__, static_folder=str(STATIC), static_url_path="/dashboard")

# Only our own origin: the page must not depend on (or leak tokens to) any other host.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
def index():
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    return response
