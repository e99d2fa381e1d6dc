"""The Starlette application: routes, auth, and RabbitMQ's error bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from rapidmq.admin import (
    access,
    bindings,
    connections,
    definitions,
    exchanges,
    health,
    limits,
    metrics,
    overview,
    policies,
    queues,
    runtime,
)
from rapidmq.admin.auth import BasicAuthMiddleware
from rapidmq.admin.util import ApiError, RawPathMiddleware, respond
from rapidmq.auth.permissions import InvalidPattern
from rapidmq.core.errors import CoreError, NotFound, StorageFailed
from rapidmq.storage.api import StorageError

if TYPE_CHECKING:
    from rapidmq.server import Server

__all__ = ["create_app", "metrics_app"]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return respond({"error": exc.error, "reason": exc.reason}, exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return respond({"error": "Object Not Found", "reason": "Not Found"}, 404)
    if exc.status_code == 405:
        body = {"error": "Method Not Allowed", "reason": "Method Not Allowed"}
        return respond(body, 405, exc.headers)
    return respond({"error": "bad_request", "reason": str(exc.detail)}, exc.status_code)


async def _core_error(request: Request, exc: Exception) -> Response:
    # RabbitMQ's management API answers a refused declare or delete with 400 and
    # the AMQP error's text, and a missing object with its 404 body.
    assert isinstance(exc, CoreError)
    if isinstance(exc, NotFound):
        return respond({"error": "Object Not Found", "reason": "Not Found"}, 404)
    if isinstance(exc, StorageFailed):
        return respond({"error": "internal_server_error", "reason": exc.text}, 500)
    return respond({"error": "bad_request", "reason": exc.text}, 400)


async def _invalid_pattern(request: Request, exc: Exception) -> Response:
    return respond({"error": "bad_request", "reason": str(exc)}, 400)


async def _storage_error(request: Request, exc: Exception) -> Response:
    return respond({"error": "internal_server_error", "reason": str(exc)}, 500)


def api_routes() -> list[BaseRoute]:
    """Every route of the management API and ``/metrics``."""
    routes: list[BaseRoute] = []
    for module in (
        overview,
        connections,
        exchanges,
        runtime,
        queues,
        bindings,
        access,
        limits,
        policies,
        definitions,
        health,
        metrics,
    ):
        routes.extend(module.ROUTES)
    return routes


def create_app(server: Server) -> Starlette:
    """The management app for ``server``: the API under ``/api/``, and ``/metrics``."""
    app = Starlette(
        routes=api_routes(),
        middleware=[
            Middleware(RawPathMiddleware),
            Middleware(BasicAuthMiddleware, server=server),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            CoreError: _core_error,
            InvalidPattern: _invalid_pattern,
            StorageError: _storage_error,
        },
    )
    app.state.server = server
    return app


def metrics_app(server: Server) -> Starlette:
    """The app of ``--prometheus-port``: ``/metrics`` only."""
    app = Starlette(
        routes=list(metrics.ROUTES),
        exception_handlers={HTTPException: _http_error},
    )
    app.state.server = server
    return app
