"""Helpers for the management API differential tests: two HTTP APIs, one script.

A scenario talks to one broker's management API through :class:`Api` and
returns what it read: status codes, the JSON keys it relies on, and the values
that do not depend on the node (names, flags, arguments, counts, error bodies).
Names carry a per-run token, replaced by ``<T>`` before the two observations are
compared, so each broker's own names cannot cause a difference.

The RabbitMQ instance is shared, so every object a scenario creates carries the
token in its name and is deleted by the scenario's :class:`Cleanup`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "MISSING",
    "RABBITMQ_API_URL",
    "Api",
    "Cleanup",
    "Reply",
    "enc",
    "fresh_client",
    "keys_of",
    "management_reachable",
    "normalize",
    "observe",
    "pick",
    "token",
]

RABBITMQ_API_URL = "http://127.0.0.1:15672"
RABBITMQ_AMQP_PORT = 5672
HTTP_TIMEOUT_S = 10.0
MISSING = "<missing>"


def token() -> str:
    """A short unique token for the names of one scenario's objects."""
    return "mgmt" + uuid.uuid4().hex[:10]


def enc(name: str) -> str:
    """A name as one path segment (``/`` is ``%2F``), as RabbitMQ's URLs need."""
    return quote(name, safe="")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: httpx.Headers


def fresh_client(base_url: str, timeout_s: float = HTTP_TIMEOUT_S) -> httpx.Client:
    """An HTTP client, logged in as guest, that opens a connection per request.

    RabbitMQ's web server may close a kept-alive connection after answering a
    refused request without reading its body; the next request on it would
    then fail with "Server disconnected", which is no answer to compare.
    """
    return httpx.Client(
        base_url=base_url,
        auth=("guest", "guest"),
        timeout=timeout_s,
        headers={"connection": "close"},
    )


class Api:
    """One broker's management API, logged in as guest unless told otherwise."""

    def __init__(self, name: str, base_url: str, amqp_port: int) -> None:
        self.name = name
        self.base_url = base_url
        self.amqp_port = amqp_port
        self.client = fresh_client(base_url)

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Reply:
        kwargs: dict[str, Any] = {}
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"content-type": "application/json"}
        elif json_body is not None:
            kwargs["json"] = json_body
        if auth is not None:
            kwargs["auth"] = auth
        response = self.client.request(method, path, **kwargs)
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except json.JSONDecodeError:
                body = response.text
        return Reply(response.status_code, body, response.headers)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.call("GET", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("PUT", path, json_body=body if body is not None else {}, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("POST", path, json_body=body if body is not None else {}, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.call("DELETE", path, **kwargs)


@dataclass
class Cleanup:
    """DELETE paths to run after a scenario, newest first, whatever happened."""

    api: Api
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.paths.append(path)

    def run(self) -> None:
        for path in reversed(self.paths):
            with contextlib.suppress(httpx.HTTPError):
                self.api.delete(path)
        self.paths.clear()


def keys_of(value: Any) -> list[str]:
    """The sorted keys of a JSON object, or a marker for anything else."""
    return sorted(value) if isinstance(value, dict) else [f"<not an object: {value!r}>"]


def pick(value: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``names`` of a JSON object, with :data:`MISSING` for each it lacks."""
    if not isinstance(value, dict):
        return {"<not an object>": repr(value)[:200]}
    return {name: value.get(name, MISSING) for name in names}


def normalize(value: Any, tok: str) -> Any:
    """``value`` with the token replaced by ``<T>`` in every string and key."""
    if isinstance(value, dict):
        return {normalize(k, tok): normalize(v, tok) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v, tok) for v in value]
    if isinstance(value, str):
        return value.replace(tok, "<T>")
    return value


def _answers(url: str) -> bool:
    try:
        response = httpx.get(f"{url}/api/overview", auth=("guest", "guest"), timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


_enable_tried = False


def management_reachable(url: str = RABBITMQ_API_URL) -> bool:
    """True when RabbitMQ's management API answers; tries enabling the plugin once."""
    global _enable_tried
    if _answers(url):
        return True
    plugins = shutil.which("rabbitmq-plugins")
    if plugins is None or _enable_tried:
        return False
    _enable_tried = True
    try:
        subprocess.run(
            [plugins, "enable", "rabbitmq_management"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False  # not allowed here, or the node is down: give up quietly
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        if _answers(url):
            return True
        time.sleep(0.5)
    return False


def observe(api: Api, scenario: Callable[[Api, str, Cleanup], Any]) -> Any:
    """Run one management scenario with a fresh token and undo what it made.

    The observation comes back normalized (the token becomes ``ID``), so the
    same scenario on two brokers can be compared as it stands.
    """
    tok = token()
    cleanup = Cleanup(api)
    try:
        return normalize(scenario(api, tok, cleanup), tok)
    finally:
        cleanup.run()
