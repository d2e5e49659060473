"""The built-in data sets as GET /api/v1/datasets lists them (installed or not, the subset or the
full set, how to install), and `POST /api/v1/datasets/builtin/<name>/fetch`: an admin installs
one from its published location in a thread of this process (service/data/fetch.py does it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask

from service.api.auth import current_user
from service.api.context import services
from service.core.errors import Conflict, Forbidden, NotFound
from service.data import fetch
from service.data.arrays import IMAGE_BUILTINS, builtin_array_info
from service.data.known import KNOWN
from service.data.tables import DataError
from service.data.tasks import CLASSIFICATION

bp = Blueprint("builtin_datasets", __name__, url_prefix="/api/v1/datasets/builtin")
log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/<name>/fetch")
def fetch_builtin(name: str):
    if not current_user().is_admin:
        raise Forbidden("only an admin installs data sets on the server")
    if name not in KNOWN:
        raise NotFound(f"no data set {name!r} to fetch; the server fetches {', '.join(KNOWN)}", field="name")
    settings = services().settings
    try:
        held = fetch.claim(name, settings.data_dir)
    except fetch.FetchError as exc:
        raise Conflict(exc.message, code="fetch_running") from None
    tracker = fetch.Tracker(KNOWN[name], settings.data_dir)
    threading.Thread(
        target=_run, args=(name, settings.data_dir, settings.datasets_mirror, held, tracker), daemon=True
    ).start()
    return image_builtin_view(name), 202, {"Location": f"/api/v1/datasets/{name}"}


def _run(name: str, data_dir: Path, mirror: str | None, held: fetch.Claim, tracker: fetch.Tracker) -> None:
    try:
        fetch.fetch(name, data_dir, mirror=mirror, force=True, progress=tracker, claimed=True)
    except fetch.FetchError as exc:
        tracker.finish(exc)
    except Exception as exc:  # the thread's end must be recorded whatever went wrong
        log.exception("fetching %s failed", name)
        tracker.finish(fetch.FetchError(f"fetching {name} failed: {exc}", "download_failed"))
    else:
        tracker.finish(None)
    finally:
        held.release()


def image_builtin_views() -> list[dict[str, Any]]:
    return [image_builtin_view(name) for name in IMAGE_BUILTINS]


def image_builtin_view(name: str) -> dict[str, Any]:
    """A built-in read as images: what it is, and for a known set whether it is installed (the
    subset or the full set), how to install it, and its download while one runs."""
    view: dict[str, Any] = {"id": name, "name": name, "label": name, "builtin": True, "kind": "images"}
    data_dir = services().settings.data_dir
    dataset = KNOWN.get(name)
    if dataset is not None:
        installed = fetch.state(dataset, data_dir)
        view.update(
            label=installed.label(dataset),
            title=dataset.title,
            installed=installed.installed,
            subset=installed.subset,
            size_bytes=installed.size,
            download_bytes=dataset.download_size,
            how=None if installed.installed and not installed.subset else fetch.how_to_install(dataset),
            download=fetch.progress_of(dataset, data_dir),
        )
    else:
        view.update(installed=True, subset=False, how=None)
    try:
        info = builtin_array_info(name, data_dir)
    except DataError:  # not installed: what the full set will be
        classes = list(range(len(dataset.class_names) or 10))
        return view | {"task": CLASSIFICATION, "rows": dataset.rows, "shape": list(dataset.shape), "classes": classes}
    return view | {"task": info["task"], "rows": info["rows"], "shape": info["input_shape"], "classes": info["classes"]}
