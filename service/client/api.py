"""A small HTTP client for the labtrain API that turns every expected failure into a
one-line message (click prints it on stderr and exits non-zero) instead of a traceback."""

from __future__ import annotations

from typing import Any

import click
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from service.client.config import Login

# The server closes a connection that has been idle for its keep-alive (gunicorn's, 2 s); a
# request sent on it in that same instant finds it reset. An idempotent request (GET, PUT,
# DELETE...) is then sent once more, on a new connection; a POST never is (it could submit a job
# twice). No retry on an answer, whatever its status or Retry-After.
ONCE_MORE_IF_DROPPED = Retry(total=1, connect=0, read=1, status=0, other=0, respect_retry_after_header=False)


def api_session(headers: dict[str, str]) -> requests.Session:
    """A session for the labtrain API with `headers` on every request (ONCE_MORE_IF_DROPPED)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=ONCE_MORE_IF_DROPPED)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(headers)
    return session


class ApiError(click.ClickException):
    """An error answer of the API: its message, as API.md's error shape carries it."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        field = (details or {}).get("field")
        if field and field not in message:
            message = f"{message} (field: {field})"
        super().__init__(message)
        self.status, self.code, self.details = status, code, details or {}


class Api:
    def __init__(self, login: Login, timeout: float = 30):
        self.base = login.url.rstrip("/")
        self.timeout = timeout
        self.session = api_session({"Authorization": f"Bearer {login.token}"})

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.base}/api/v1{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise click.ClickException(
                f"cannot connect to the labtrain API at {self.base}: is the server running and the URL right? "
                "(`labtrain login --url ...` or LABTRAIN_URL)"
            ) from None
        except requests.Timeout:
            raise click.ClickException(
                f"the labtrain API at {self.base} did not answer within {self.timeout:g} s"
            ) from None
        except requests.RequestException as exc:
            raise click.ClickException(f"request to {url} failed: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        return _json(self.request("GET", path, params=params))

    def post(self, path: str, **kwargs: Any) -> Any:
        return _json(self.request("POST", path, **kwargs))

    def stream(self, path: str, **params: Any) -> requests.Response:
        """An event stream, read as it comes (on a session of its own: another thread reads it,
        service/client/status_stream.py). The server sends a comment every 15 s: a minute of
        silence is a dead connection."""
        session = api_session({**self.session.headers, "Accept": "text/event-stream"})
        return session.get(f"{self.base}/api/v1{path}", params=params, stream=True, timeout=(self.timeout, 60))


def _error(response: requests.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(
            response.status_code, error.get("code", ""), error.get("message") or response.reason, error.get("details")
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not our API's JSON (a proxy's error page, or not a labtrain server at all).
        return ApiError(
            response.status_code,
            "http_error",
            f"the server answered {response.status_code} {response.reason} for {response.url}",
        )


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise click.ClickException(f"{response.url} did not answer with JSON; is it a labtrain server?") from None
