"""``/api/vhost-limits`` and ``/api/user-limits``, as RabbitMQ 3.10 has them.

Status codes and error texts are RabbitMQ 3.10.8's, so scripts that set limits
on RabbitMQ set them here unchanged: a PUT answers 204 whether it created or
replaced; a DELETE answers 204 even for a limit that was not set; a limit for a
missing vhost is 404 ``vhost_not_found``, for a missing user 400
``["no_such_user", name]``; an unknown limit name or a value that is not a
whole number is 400 with RabbitMQ's validation text.  ``-1`` (any negative
value) means no limit.  Only administrators may read or change limits.

Every change is logged on ``rapidmq.admin`` and recorded as a ``limit.set`` or
``limit.cleared`` audit event naming the acting user.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import require_administrator, server_of
from rapidmq.admin.util import (
    ApiError,
    bad_request,
    no_content,
    not_found,
    path_name,
    read_json,
    respond,
)
from rapidmq.audit import audit
from rapidmq.auth.limits import USER_LIMITS, VHOST_LIMITS
from rapidmq.core.policy import erlang_term

__all__ = ["ROUTES", "limit_value"]

log = logging.getLogger("rapidmq.admin")


def limit_value(name: str, value: Any) -> int:
    """A limit's value as RabbitMQ validates it: a whole number.

    Raises:
        ApiError: 400 with RabbitMQ's text for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(
            f"Validation failed\n\n{name} should be a number, actually was {erlang_term(value)}\n"
        )
    return value


async def _body_value(request: Request, name: str) -> Any:
    body = await read_json(request)
    if "value" not in body:
        raise bad_request("[{key_missing,value}]")
    return body["value"]


# -- vhost limits ----------------------------------------------------------------------------


def _vhost_json(vhost: str, limits: dict[str, int]) -> dict[str, Any]:
    return {"vhost": vhost, "value": dict(sorted(limits.items()))}


async def list_vhost_limits(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    return respond([_vhost_json(v, lim) for v, lim in server.limits.all_vhost_limits()])


async def get_vhost_limits(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = path_name(request, "vhost")
    if server.broker.vhost(name) is None:
        raise not_found()
    limits = server.limits.vhost_limits(name)
    return respond([_vhost_json(name, limits)] if limits else [])


async def put_vhost_limit(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    vhost, name = path_name(request, "vhost"), path_name(request, "name")
    if server.broker.vhost(vhost) is None:
        raise ApiError(404, "not_found", "vhost_not_found")
    raw = await _body_value(request, name)
    if name not in VHOST_LIMITS:
        raise bad_request(
            f'Validation failed\n\nUnrecognised terms [{{<<"{name}">>,{erlang_term(raw)[:64]}}}] '
            "in limits\n"
        )
    value = limit_value(name, raw)
    server.limits.set_vhost_limit(vhost, name, value)
    log.info("limit %s of vhost '%s' set to %d by user '%s'", name, vhost, value, actor.name)
    audit(
        "limit.set",
        f"limit {name} of vhost '{vhost}' set to {value} by user '{actor.name}'",
        actor=actor.name,
        vhost=vhost,
        limit=name,
        value=value,
    )
    return no_content()


async def delete_vhost_limit(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    vhost, name = path_name(request, "vhost"), path_name(request, "name")
    if server.broker.vhost(vhost) is None:
        raise ApiError(404, "not_found", "vhost_not_found")
    if server.limits.clear_vhost_limit(vhost, name):
        log.info("limit %s of vhost '%s' cleared by user '%s'", name, vhost, actor.name)
        audit(
            "limit.cleared",
            f"limit {name} of vhost '{vhost}' cleared by user '{actor.name}'",
            actor=actor.name,
            vhost=vhost,
            limit=name,
        )
    return no_content()


# -- user limits -----------------------------------------------------------------------------


def _user_json(user: str, limits: dict[str, int]) -> dict[str, Any]:
    return {"user": user, "value": dict(sorted(limits.items()))}


async def list_user_limits(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    return respond([_user_json(u, lim) for u, lim in server.limits.all_user_limits()])


async def get_user_limits(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = path_name(request, "user")
    if name not in server.users:
        raise not_found()
    limits = server.limits.user_limits(name)
    return respond([_user_json(name, limits)] if limits else [])


async def put_user_limit(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    user, name = path_name(request, "user"), path_name(request, "name")
    raw = await _body_value(request, name)
    if user not in server.users:
        return respond({"error": "bad_request", "reason": ["no_such_user", user]}, 400)
    if name not in USER_LIMITS:
        raise bad_request(
            f'Unrecognised terms [{{<<"{name}">>,{erlang_term(raw)[:64]}}}] in user-limits'
        )
    value = limit_value(name, raw)
    server.limits.set_user_limit(user, name, value)
    log.info("limit %s of user '%s' set to %d by user '%s'", name, user, value, actor.name)
    audit(
        "limit.set",
        f"limit {name} of user '{user}' set to {value} by user '{actor.name}'",
        actor=actor.name,
        user=user,
        limit=name,
        value=value,
    )
    return no_content()


async def delete_user_limit(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    user, name = path_name(request, "user"), path_name(request, "name")
    if server.limits.clear_user_limit(user, name):
        log.info("limit %s of user '%s' cleared by user '%s'", name, user, actor.name)
        audit(
            "limit.cleared",
            f"limit {name} of user '{user}' cleared by user '{actor.name}'",
            actor=actor.name,
            user=user,
            limit=name,
        )
    return no_content()


ROUTES: list[BaseRoute] = [
    Route("/api/vhost-limits", list_vhost_limits, methods=["GET"]),
    Route("/api/vhost-limits/{vhost}", get_vhost_limits, methods=["GET"]),
    Route("/api/vhost-limits/{vhost}/{name}", put_vhost_limit, methods=["PUT"]),
    Route("/api/vhost-limits/{vhost}/{name}", delete_vhost_limit, methods=["DELETE"]),
    Route("/api/user-limits", list_user_limits, methods=["GET"]),
    Route("/api/user-limits/{user}", get_user_limits, methods=["GET"]),
    Route("/api/user-limits/{user}/{name}", put_user_limit, methods=["PUT"]),
    Route("/api/user-limits/{user}/{name}", delete_user_limit, methods=["DELETE"]),
]
