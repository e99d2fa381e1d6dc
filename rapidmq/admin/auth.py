"""Basic auth against the broker's users, and tags as RabbitMQ's management plugin reads them.

* ``management`` (and ``policymaker``): the API, for the vhosts the user holds a
  permission in, and their own connections and channels;
* ``monitoring``: also every vhost, connection and channel, and the node;
* ``administrator``: everything, including users, vhosts, permissions and
  definitions.

A user with none of these tags cannot use the API at all (401, as RabbitMQ).
``/metrics`` and the dashboard's static files need no login.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rapidmq.admin.util import ApiError, respond
from rapidmq.auth.backends import LoginRequest
from rapidmq.auth.users import User

if TYPE_CHECKING:
    from rapidmq.server import Server

__all__ = [
    "BasicAuthMiddleware",
    "can_see_all",
    "current_user",
    "require_administrator",
    "require_monitoring",
    "require_vhost",
    "server_of",
    "visible_vhosts",
]

REALM = 'Basic realm="RapidMQ Management"'
_MANAGEMENT_TAGS = frozenset({"management", "policymaker", "monitoring", "administrator"})
_MONITORING_TAGS = frozenset({"monitoring", "administrator"})


def not_authorised(reason: str) -> ApiError:
    """401 for a user who may not do this (RabbitMQ spells this one "not_authorised")."""
    return ApiError(401, "not_authorised", reason, {"WWW-Authenticate": REALM})


def server_of(request: Request) -> Server:
    """The broker this app serves."""
    server: Server = request.app.state.server
    return server


def current_user(request: Request) -> User:
    """The user who sent ``request`` (the middleware has checked the password)."""
    user: User = request.scope["state"]["user"]
    return user


def _credentials(scope: Scope) -> tuple[str, str] | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, encoded = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = text.partition(":")
            return (user, password) if sep else None
    return None


class BasicAuthMiddleware:
    """Check the Basic credentials of every ``/api/`` request; 401 otherwise."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api/"):
            await self.app(scope, receive, send)
            return
        credentials = _credentials(scope)
        user = None
        if credentials is not None:
            # The same chain as AMQP and MQTT (internal, LDAP, the failed-login limit).
            client = scope.get("client") or ("", 0)
            request = LoginRequest("http", credentials[0], credentials[1], str(client[0]), "BASIC")
            result = await self.server.authenticator.authenticate(request)
            user = result.user
        if user is None:
            # RabbitMQ spells a failed login "not_authorized", a refusal "not_authorised".
            error = ApiError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})
        elif not _MANAGEMENT_TAGS.intersection(user.tags):  # RabbitMQ: "not_authorised"
            error = not_authorised("Not management user")
        else:
            scope.setdefault("state", {})["user"] = user
            await self.app(scope, receive, send)
            return
        body = {"error": error.error, "reason": error.reason}
        await respond(body, error.status, error.headers)(scope, receive, send)


def can_see_all(user: User) -> bool:
    """Monitoring and administrator users see every vhost and connection."""
    return bool(_MONITORING_TAGS.intersection(user.tags))


def require_administrator(request: Request) -> User:
    """The current user, who must be tagged administrator (else 401)."""
    user = current_user(request)
    if "administrator" not in user.tags:
        raise not_authorised("Not administrator user")
    return user


def require_monitoring(request: Request) -> User:
    """The current user, who must be tagged monitoring or administrator (else 401)."""
    user = current_user(request)
    if not can_see_all(user):
        raise not_authorised("Not monitor user")
    return user


def visible_vhosts(request: Request) -> set[str] | None:
    """The vhosts the current user may see; None means every vhost."""
    user = current_user(request)
    if can_see_all(user):
        return None
    permissions = server_of(request).permissions
    return {p.vhost for p in permissions if p.user == user.name}


def require_vhost(request: Request, vhost: str) -> None:
    """404 unless ``vhost`` exists; 401 unless the current user may see it."""
    if server_of(request).broker.vhost(vhost) is None:
        raise ApiError(404, "Object Not Found", "Not Found")
    visible = visible_vhosts(request)
    if visible is not None and vhost not in visible:
        raise not_authorised("User not authorised to access virtual host")
