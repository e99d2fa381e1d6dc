"""What every management endpoint shares: JSON in and out, path names, errors.

Endpoints are ``async def`` and never sync: Starlette runs a sync endpoint in a
worker thread, and the core is only ever touched from the event loop.

Path parameters arrive still percent-encoded (see :class:`RawPathMiddleware`),
because RabbitMQ's paths put names such as the vhost ``/`` into one segment as
``%2F``; :func:`path_name` decodes one.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ApiError",
    "RawPathMiddleware",
    "bad_request",
    "created",
    "flag",
    "jsonable",
    "no_content",
    "not_found",
    "path_name",
    "read_json",
    "respond",
]


class ApiError(Exception):
    """An error answered as RabbitMQ's JSON body ``{"error": …, "reason": …}``."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str | list[str],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = dict(headers or {})


def not_found(reason: str = "Not Found") -> ApiError:
    """404, as RabbitMQ answers for an object (or path) that does not exist."""
    return ApiError(404, "Object Not Found", reason)


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def jsonable(value: Any) -> Any:
    """``value`` with AMQP field values (bytes, Decimal, datetime) made JSON-able."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


def _default(value: Any) -> Any:
    converted = jsonable(value)
    if converted is value:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return converted


def respond(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response; AMQP values in ``data`` are converted on the way."""
    body = json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers=headers, media_type="application/json")


def no_content() -> Response:
    """204, what RabbitMQ answers to a PUT, POST or DELETE that created or removed."""
    return Response(status_code=204)


def created() -> Response:
    """201, RabbitMQ's answer to a PUT that created an object."""
    return Response(status_code=201)


def path_name(request: Request, key: str) -> str:
    """The path parameter ``key``, percent-decoded (``%2F`` is the vhost ``/``)."""
    return unquote(str(request.path_params[key]))


async def read_json(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` unless ``required``.

    Raises:
        ApiError: 400 ``not_json`` for a body that is not a JSON object.
    """
    raw = await request.body()
    if not raw.strip():
        if required:
            raise bad_request("not_json")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("not_json") from None
    if not isinstance(data, dict):
        raise bad_request("not_json")
    return data


def flag(value: Any, default: bool = False) -> bool:
    """A boolean field as RabbitMQ reads it: JSON true/false or the strings."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class RawPathMiddleware:
    """Route on the raw (still percent-encoded) path, so ``%2F`` stays in its segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            if raw:
                path = raw.split(b"?", 1)[0].decode("latin-1")
                scope = dict(scope, path=path)
        await self.app(scope, receive, send)
