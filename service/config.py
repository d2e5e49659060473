"""Settings read from the environment each time they are asked for (never frozen at import)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    data_dir: Path
    artifact_dir: Path
    max_upload_bytes: int = 50 * 1024 * 1024
    # Redis re-delivers an unacknowledged message after this many seconds, so it must
    # be longer than the longest job we allow (DESIGN.md decision 2).
    visibility_timeout: int = 24 * 3600
    # How often the serverless broker looks for new messages, in seconds.
    embedded_poll_interval: float = 0.02
    model_cache_size: int = 32

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls.from_env_map(os.environ)

    @classmethod
    def from_env_map(cls, environ) -> "Settings":
        """Settings from a mapping of environment variables (the process's own by default)."""
        home = Path(environ.get("LABTRAIN_HOME") or Path.home() / ".labtrain").expanduser()
        data_dir = Path(environ.get("LABTRAIN_DATA_DIR") or home / "datasets").expanduser()
        artifact_dir = Path(environ.get("LABTRAIN_ARTIFACT_DIR") or home / "artifacts").expanduser()
        return cls(
            home=home,
            database_url=environ.get("LABTRAIN_DATABASE_URL") or f"sqlite:///{home / 'labtrain.db'}",
            broker_url=environ.get("LABTRAIN_BROKER_URL") or f"sqla+sqlite:///{home / 'broker.db'}",
            data_dir=data_dir,
            artifact_dir=artifact_dir,
            max_upload_bytes=_env_int(environ, "LABTRAIN_MAX_UPLOAD_BYTES", 50 * 1024 * 1024),
            visibility_timeout=_env_int(environ, "LABTRAIN_VISIBILITY_TIMEOUT", 24 * 3600),
            embedded_poll_interval=_env_float(environ, "LABTRAIN_EMBEDDED_POLL_INTERVAL", 0.02),
            model_cache_size=_env_int(environ, "LABTRAIN_MODEL_CACHE_SIZE", 32),
        )

    def ensure_dirs(self) -> None:
        for path in (self.home, self.data_dir, self.artifact_dir):
            path.mkdir(parents=True, exist_ok=True)
