"""The HTTP side of the admin commands: one management API client over httpx.

Every failure becomes an :class:`AdminError` carrying the one line the user
sees, so the commands never show a traceback for a broker that is down, a
wrong password or a missing object.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["AdminError", "Client"]

EXIT_API = 1


class AdminError(Exception):
    """A failure to report as one ``rapidmq: ...`` line with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_API, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


def _reason(response: httpx.Response) -> str:
    """The API's ``reason`` (RabbitMQ sometimes sends a list), else the body's text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "reason" in body:
        reason = body["reason"]
        text = reason if isinstance(reason, str) else json.dumps(reason)
    else:
        text = response.text.strip() or response.reason_phrase
    # RabbitMQ HTML-escapes some reasons (a policy's ``&lt;&lt;"x"&gt;&gt;``);
    # a shell shows them plain.
    return " ".join(html.unescape(text).split())[:500]


def _cause(err: Exception) -> str:
    text = " ".join(str(err).split())
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    return text or type(err).__name__


class Client:
    """A management API session: base URL, credentials and one connection pool."""

    def __init__(self, url: str, user: str, password: str, timeout_s: float = 15.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AdminError(
                f"--url {url!r} is not an http:// or https:// URL "
                "(for example http://localhost:15672)",
                exit_code=2,
            )
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, auth=(user, password), timeout=timeout_s, follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        what: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request to ``/api{path}`` and return its JSON (``None`` if empty).

        ``what`` names the object for a 404 ("queue 'q' in vhost '/'"), which
        says more than the API's bare "Not Found".
        """
        try:
            response = self._http.request(method, "/api" + path, json=body, headers=headers)
        except httpx.HTTPError as err:
            raise AdminError(
                f"cannot reach {self.url}: {_cause(err)}; "
                "is the broker running, and is --url right?"
            ) from err
        status = response.status_code
        if status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as err:
                raise AdminError(
                    f"{self.url} answered {method} /api{path} with something other than JSON; "
                    "is --url the management API?"
                ) from err
        reason = _reason(response)
        if status == 401:
            message = f"not authorized ({reason}); check --user and --password"
        elif status == 403:
            message = f"forbidden ({reason}); the user needs more rights"
        elif status == 404:
            message = f"{what or '/api' + path} not found"
        elif status in (400, 405, 409):
            message = f"refused: {reason}"
        else:
            message = f"{method} /api{path} failed with HTTP {status}: {reason}"
        raise AdminError(message, status=status)

    def get(self, path: str, what: str | None = None) -> Any:
        return self.request("GET", path, what=what)
