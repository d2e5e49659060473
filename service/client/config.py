"""Where the client finds its server and token: the stored login, overridden by the environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

URL_ENV, TOKEN_ENV = "LABTRAIN_URL", "LABTRAIN_TOKEN"


@dataclass(frozen=True)
class Login:
    url: str
    token: str


def config_path() -> Path:
    # click follows XDG_CONFIG_HOME (default ~/.config) on Linux and the usual places elsewhere.
    return Path(click.get_app_dir("labtrain")) / "config.json"


def save_login(login: Login) -> Path:
    """Write url and token readable by the owner only, replacing any earlier login atomically."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".config.json.{os.getpid()}")
    tmp.unlink(missing_ok=True)  # left by a killed earlier run with our pid
    # Created 0600 by open() itself, so the token is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"url": login.url, "token": login.token}, handle)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def stored_login() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path} ({exc}); run `labtrain login` again") from None
    return data if isinstance(data, dict) else {}


def current_login() -> Login:
    """The server and token to use: LABTRAIN_URL / LABTRAIN_TOKEN win over the stored login."""
    stored = stored_login()
    url = os.environ.get(URL_ENV) or stored.get("url")
    token = os.environ.get(TOKEN_ENV) or stored.get("token")
    if not url or not token:
        raise click.ClickException(
            f"not logged in: run `labtrain login --url URL --token TOKEN` (or set {URL_ENV} and {TOKEN_ENV})"
        )
    return Login(url.rstrip("/"), token)
