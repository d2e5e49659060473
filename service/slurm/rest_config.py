"""LABTRAIN_SLURMRESTD: where the dispatcher reaches slurmrestd, SLURM's REST API, instead of
running sbatch, squeue, scancel and sinfo (service/slurm/rest.py).

JSON, or the path of a YAML or JSON file:

    {"url": "http://slurm-rest.example.edu:6820", "user": "labtrain",
     "token_file": "/etc/labtrain/slurm.jwt"}
    {"url": "unix:/run/slurmrestd/slurmrestd.socket"}

One setting for the deployment, not one per queue: the dispatcher follows every partition's jobs
with one client (one call for all of them), and goes on following the jobs a removed queue left
in SLURM when no queue names it any more. Unset: SLURM's commands. Every mistake is a ValueError
naming the key, raised when the dispatcher starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SETTING = "LABTRAIN_SLURMRESTD"
KEYS = ("url", "user", "token_file", "token_env", "ca_file")
UNIX = "unix:"


@dataclass(frozen=True)
class RestConfig:
    url: str  # http(s)://host:port, or unix:/path of slurmrestd's socket
    # JWT (rest_auth/jwt): the SLURM user the token is for, and where the token is read at each
    # call (a file an admin may replace as tokens expire, or the dispatcher's environment).
    user: str | None = None
    token_file: Path | None = None
    token_env: str | None = None
    ca_file: Path | None = None  # https with a certificate of the site's own authority

    @property
    def socket(self) -> str | None:
        return self.url[len(UNIX) :] if self.url.startswith(UNIX) else None

    @property
    def uses_token(self) -> bool:
        return self.user is not None


def load(raw: str | None, environ: Mapping[str, str]) -> RestConfig | None:
    text = (raw or "").strip()
    if not text:
        return None
    if not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"{SETTING} is neither JSON nor the path of a file: {text!r} does not exist")
        text = path.read_text()
    try:
        entry = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{SETTING} is not valid JSON or YAML: {exc}") from None
    if not isinstance(entry, dict):
        raise ValueError(
            f'{SETTING} must be an object, e.g. {{"url": "http://host:6820", "user": ..., "token_file": ...}}'
        )
    return _config(entry, environ)


def _config(entry: dict[str, Any], environ: Mapping[str, str]) -> RestConfig:
    unknown = set(entry) - set(KEYS)
    if unknown:
        raise ValueError(f"{SETTING}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(KEYS)})")
    url = entry.get("url")
    if not isinstance(url, str) or not _url_ok(url):
        raise ValueError(
            f"{SETTING}.url must be slurmrestd's address: http://host:port, https://host:port or unix:/path/to/socket"
        )
    user, token_file, token_env = entry.get("user"), entry.get("token_file"), entry.get("token_env")
    if user is not None and (not isinstance(user, str) or not _user_ok(user)):
        raise ValueError(f"{SETTING}.user must be the SLURM user name the token is for")
    if token_file is not None and token_env is not None:
        raise ValueError(f"{SETTING}: give the token as token_file or token_env, not both")
    has_token = token_file is not None or token_env is not None
    if user and not has_token:
        raise ValueError(f"{SETTING}.token_file: a JWT needs the token too (token_file, or token_env) besides user")
    if has_token and not user:
        raise ValueError(f"{SETTING}.user: a JWT needs the SLURM user it is for besides the token")
    if not url.startswith(UNIX) and not (user and has_token):
        raise ValueError(
            f"{SETTING}.user: over TCP slurmrestd takes a JWT (rest_auth/jwt): give user and token_file (or "
            "token_env); on its unix socket with rest_auth/local, neither"
        )
    values: dict[str, Any] = {"url": url.rstrip("/"), "user": user}
    if token_file is not None:
        if not isinstance(token_file, str) or not Path(token_file).is_absolute():
            raise ValueError(f"{SETTING}.token_file must be the absolute path of the file holding the JWT")
        if not Path(token_file).is_file():
            raise ValueError(f"{SETTING}.token_file: {token_file} does not exist (scontrol token writes one)")
        values["token_file"] = Path(token_file)
    if token_env is not None:
        if not isinstance(token_env, str) or not token_env.replace("_", "").isalnum() or not token_env[0].isalpha():
            raise ValueError(f"{SETTING}.token_env must name an environment variable, e.g. SLURM_JWT")
        if not environ.get(token_env):
            raise ValueError(f"{SETTING}.token_env: {token_env} is not set in the dispatcher's environment")
        values["token_env"] = token_env
    ca_file = entry.get("ca_file")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not url.startswith("https://") or not Path(ca_file).is_file():
            raise ValueError(f"{SETTING}.ca_file must be an existing certificate file, for an https url")
        values["ca_file"] = Path(ca_file)
    return RestConfig(**values)


def _url_ok(url: str) -> bool:
    if url.startswith(UNIX):
        return Path(url[len(UNIX) :]).is_absolute()
    scheme, _, rest = url.partition("://")
    host = rest.rstrip("/")
    return scheme in ("http", "https") and bool(host) and "/" not in host and "@" not in host


def _user_ok(user: str) -> bool:
    return 0 < len(user) <= 64 and all(c.isalnum() or c in "-_." for c in user) and user[0] != "-"
