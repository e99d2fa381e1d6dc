"""Vhosts, users, permissions, topic permissions and ``/api/whoami``, as RabbitMQ 3.10 has them.

Status codes and error bodies follow RabbitMQ 3.10.8's management plugin, so
tools written against it (``rabbitmqadmin``, Terraform providers, deployment
scripts) work unchanged:

* a PUT answers 201 when it created the object and 204 when it replaced it;
* reading or deleting something missing is 404;
* granting a permission to a user or in a vhost that does not exist is 400
  ``vhost_or_user_not_found`` (not 404: the resource named by the path is the
  grant, which may legitimately not exist yet);
* a missing body field is 400 with RabbitMQ's ``[{key_missing,field}]`` text;
* every endpoint here except the vhost list and ``whoami`` is for
  administrators only.  RabbitMQ 3.10 refuses even a single vhost, or one's own
  user, to non-administrators; a plain management user sees the vhosts they
  hold a permission in through ``GET /api/vhosts`` alone.

Each change is logged on ``rapidmq.admin`` at INFO with the acting user, so an
operator can tell who granted what.  Passwords are hashed at once and neither
they nor their hashes are ever logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import (
    current_user,
    require_administrator,
    server_of,
    visible_vhosts,
)
from rapidmq.admin.listing import list_response
from rapidmq.admin.overview import QUEUE_STATS, queue_counters
from rapidmq.admin.util import (
    bad_request,
    created,
    no_content,
    not_found,
    path_name,
    read_json,
    respond,
)
from rapidmq.audit import audit
from rapidmq.auth.permissions import Permission, TopicPermission
from rapidmq.auth.users import HASHING_ALGORITHM, User, hash_password
from rapidmq.protocols.amqp091.connection import AMQPConnection

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue
    from rapidmq.core.vhost import VirtualHost
    from rapidmq.server import Server

__all__ = ["ROUTES"]

log = logging.getLogger("rapidmq.admin")

_GAUGES = ("messages", "messages_ready", "messages_unacknowledged")


# -- body fields ---------------------------------------------------------------------------


def _missing(body: Mapping[str, Any], keys: Iterable[str]) -> None:
    """400 naming every absent key, in the text RabbitMQ 3.10 answers."""
    absent = [key for key in keys if key not in body]
    if absent:
        raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in absent) + "]")


def _string(body: Mapping[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def _tags(value: Any) -> tuple[str, ...]:
    """Tags as RabbitMQ takes them: ``"a,b"`` or ``["a", "b"]``; blanks are dropped.

    RabbitMQ keeps the empty tags of ``"a,,b"``; they mean nothing and only
    clutter the dashboard, so they are dropped here.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        parts: list[Any] = value.split(",")
    elif isinstance(value, list):
        parts = value
    else:
        raise bad_request("tags must be a comma-separated string or a list of strings")
    if not all(isinstance(part, str) for part in parts):
        raise bad_request("tags must be a comma-separated string or a list of strings")
    return tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))


def _actor(request: Request) -> str:
    return current_user(request).name


# -- vhosts --------------------------------------------------------------------------------


def _vhost_json(server: Server, vhost: VirtualHost) -> dict[str, Any]:
    """One vhost with its message totals and rates, summed over its queues.

    The rate sampler keeps queues, not vhosts, so a vhost's rate is the sum of
    its queues' rates: nothing extra is sampled for the API's sake.
    """
    rates = server.rates
    queues = list(vhost.queues.values())
    figures = {
        "messages": sum(q.ready_count + q.unacked_count for q in queues),
        "messages_ready": sum(q.ready_count for q in queues),
        "messages_unacknowledged": sum(q.unacked_count for q in queues),
    }
    per_queue = [(q, queue_counters(q)) for q in queues]
    counters = {name: sum(c[name] for _, c in per_queue) for name in QUEUE_STATS.values()}
    gauges: dict[str, Callable[[Queue], int]] = {
        "messages": lambda q: q.ready_count + q.unacked_count,
        "messages_ready": lambda q: q.ready_count,
        "messages_unacknowledged": lambda q: q.unacked_count,
    }

    def rate(counter: str) -> float:
        key = vhost.name
        if counter in gauges:
            value_of = gauges[counter]
            rates_of = (rates.rate(("queue", key, q.name), counter, value_of(q)) for q in queues)
        else:
            rates_of = (
                rates.rate(("queue", key, q.name), counter, c[counter]) for q, c in per_queue
            )
        return round(sum(rates_of), 1)

    tags = list(vhost.tags)
    body: dict[str, Any] = {
        "name": vhost.name,
        "description": vhost.description,
        "tags": tags,
        "metadata": {"description": vhost.description, "tags": tags},
        "default_queue_type": "classic",
        "tracing": False,
        "cluster_state": {server.node_name: "running"},
    }
    for name in _GAUGES:
        body[name] = figures[name]
        body[f"{name}_details"] = {"rate": rate(name)}
    stats: dict[str, Any] = {}
    for api_name, counter in QUEUE_STATS.items():
        stats[api_name] = counters[counter]
        stats[f"{api_name}_details"] = {"rate": rate(counter)}
    body["message_stats"] = stats
    return body


def _existing_vhost(server: Server, name: str) -> VirtualHost:
    vhost = server.broker.vhost(name)
    if vhost is None:
        raise not_found()
    return vhost


async def list_vhosts(request: Request) -> Response:
    server = server_of(request)
    visible = visible_vhosts(request)
    items = [v for v in server.broker.vhosts() if visible is None or v.name in visible]
    return list_response(
        request,
        items,
        render=lambda v: _vhost_json(server, v),
        name=lambda v: v.name,
        sort_keys={"name": lambda v: v.name, "description": lambda v: v.description},
        default_sort=lambda v: v.name,
    )


async def get_vhost(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    return respond(_vhost_json(server, _existing_vhost(server, path_name(request, "vhost"))))


async def put_vhost(request: Request) -> Response:
    """Create or describe a vhost; its creator is granted everything in a new one.

    As in RabbitMQ 3.10, a PUT replaces description and tags, so fields left
    out are cleared.  The grant to the creator is RabbitMQ's too: without it an
    administrator could not use the vhost they just made.
    """
    user = require_administrator(request)
    server = server_of(request)
    name = path_name(request, "vhost")
    body = await read_json(request, required=False)
    description = _string(body, "description")
    tags = _tags(body.get("tags"))
    existed = server.broker.vhost(name) is not None
    server.broker.add_vhost(name, description=description, tags=tags)
    if existed:
        log.info("vhost '%s' updated by user '%s'", name, user.name)
        audit(
            "vhost.changed",
            f"vhost '{name}' updated by user '{user.name}'",
            actor=user.name,
            vhost=name,
        )
        return no_content()
    log.info("vhost '%s' created by user '%s'", name, user.name)
    audit(
        "vhost.created",
        f"vhost '{name}' created by user '{user.name}'",
        actor=user.name,
        vhost=name,
    )
    server.permissions.set(Permission(user.name, name))
    log.info("permissions of user '%s' in vhost '%s' set by creating it", user.name, name)
    audit(
        "permission.set",
        f"permissions of user '{user.name}' in vhost '{name}' set by creating it",
        actor=user.name,
        user=user.name,
        vhost=name,
        configure=".*",
        write=".*",
        read=".*",
    )
    return created()


def _close_clients_of(server: Server, vhost: str) -> None:
    """Tell the vhost's clients it is gone (AMQP 320 CONNECTION_FORCED), as RabbitMQ does.

    The core closes their sessions itself; this closes their sockets, so a
    client learns at once rather than at its next operation.
    """
    for socket, handler in server.protocol_connections():
        if getattr(handler, "vhost", None) != vhost:
            continue
        if isinstance(handler, AMQPConnection):
            handler.shutdown(f"vhost '{vhost}' is deleted")
        socket.shutdown()


async def delete_vhost(request: Request) -> Response:
    user = require_administrator(request)
    server = server_of(request)
    name = path_name(request, "vhost")
    _existing_vhost(server, name)
    _close_clients_of(server, name)
    server.broker.delete_vhost(name)
    server.permissions.vhost_deleted(name)
    server.limits.vhost_deleted(name)
    log.info("vhost '%s' deleted by user '%s'", name, user.name)
    audit(
        "vhost.deleted",
        f"vhost '{name}' deleted by user '{user.name}'",
        actor=user.name,
        vhost=name,
    )
    return no_content()


async def vhost_permissions(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = _existing_vhost(server, path_name(request, "vhost")).name
    grants = sorted((p for p in server.permissions if p.vhost == name), key=lambda p: p.user)
    return respond([_permission_json(p) for p in grants])


async def vhost_topic_permissions(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = _existing_vhost(server, path_name(request, "vhost")).name
    grants = [t for t in server.permissions.topic_permissions() if t.vhost == name]
    grants.sort(key=lambda t: (t.user, t.exchange))
    return respond([_topic_json(t) for t in grants])


# -- users ---------------------------------------------------------------------------------


def _user_json(server: Server, user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": list(user.tags),
        "limits": server.limits.user_limits(user.name),
    }


def _existing_user(server: Server, name: str) -> User:
    user = server.users.get(name)
    if user is None:
        raise not_found()
    return user


async def list_users(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    users = list(server.users)
    return list_response(
        request,
        users,
        render=lambda u: _user_json(server, u),
        name=lambda u: u.name,
        sort_keys={"name": lambda u: u.name},
        default_sort=lambda u: u.name,
    )


async def users_without_permissions(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    granted = {p.user for p in server.permissions}
    return respond([_user_json(server, u) for u in server.users if u.name not in granted])


async def get_user(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    return respond(_user_json(server, _existing_user(server, path_name(request, "user"))))


def _password_hash(body: Mapping[str, Any]) -> str | Response:
    """The hash to store from ``password`` or ``password_hash``, or the 400 to answer.

    With neither, the hash is empty: the user cannot log in by password, which
    is what RabbitMQ 3.10 does (also to an existing user's password).
    """
    algorithm = body.get("hashing_algorithm", HASHING_ALGORITHM)
    if algorithm != HASHING_ALGORITHM:
        raise bad_request(
            f"unsupported hashing_algorithm '{algorithm}'; only {HASHING_ALGORITHM} is supported"
        )
    if "password" in body and "password_hash" in body:
        raise bad_request("both_password_and_password_hash_are_provided")
    if "password" in body:
        return hash_password(_string(body, "password"))
    if "password_hash" in body:
        given = _string(body, "password_hash")
        try:
            base64.b64decode(given.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return respond({"error": "bad_request", "reason": ["not_base64", given]}, 400)
        return given
    return ""


async def put_user(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    name = path_name(request, "user")
    body = await read_json(request)
    if "tags" not in body:
        raise bad_request("tags_not_present")
    tags = _tags(body["tags"])
    password_hash = _password_hash(body)
    if isinstance(password_hash, Response):
        return password_hash
    existed = name in server.users
    server.users.put(User(name, password_hash, tags))
    change = "updated" if existed else "created"
    log.info("user '%s' %s by user '%s' (tags: %s)", name, change, actor.name, ",".join(tags))
    audit(
        f"user.{'changed' if existed else 'created'}",
        f"user '{name}' {change} by user '{actor.name}'",
        actor=actor.name,
        user=name,
        tags=list(tags),
    )
    return no_content() if existed else created()


def _delete_user(server: Server, name: str, actor: str) -> None:
    server.users.delete_user(name)
    server.permissions.user_deleted(name)
    server.limits.user_deleted(name)
    log.info("user '%s' and their permissions deleted by user '%s'", name, actor)
    audit("user.deleted", f"user '{name}' deleted by user '{actor}'", actor=actor, user=name)


async def delete_user(request: Request) -> Response:
    actor = require_administrator(request)
    server = server_of(request)
    name = _existing_user(server, path_name(request, "user")).name
    _delete_user(server, name, actor.name)
    return no_content()


async def bulk_delete_users(request: Request) -> Response:
    """Delete the listed users in order, stopping at the first missing one, as RabbitMQ."""
    actor = require_administrator(request)
    server = server_of(request)
    body = await read_json(request)
    _missing(body, ["users"])
    names = body["users"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad_request("users must be a list of user names")
    for name in names:
        if name not in server.users:
            return respond({"error": "bad_request", "reason": ["no_such_user", name]}, 400)
        _delete_user(server, name, actor.name)
    return no_content()


async def user_permissions(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = _existing_user(server, path_name(request, "user")).name
    grants = sorted((p for p in server.permissions if p.user == name), key=lambda p: p.vhost)
    return respond([_permission_json(p) for p in grants])


async def user_topic_permissions(request: Request) -> Response:
    require_administrator(request)
    server = server_of(request)
    name = _existing_user(server, path_name(request, "user")).name
    grants = [t for t in server.permissions.topic_permissions() if t.user == name]
    grants.sort(key=lambda t: (t.vhost, t.exchange))
    return respond([_topic_json(t) for t in grants])


async def whoami(request: Request) -> Response:
    user = current_user(request)
    return respond({"name": user.name, "tags": list(user.tags)})


# -- permissions ---------------------------------------------------------------------------


def _permission_json(p: Permission) -> dict[str, str]:
    return {
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    }


def _topic_json(t: TopicPermission) -> dict[str, str]:
    return {
        "user": t.user,
        "vhost": t.vhost,
        "exchange": t.exchange,
        "write": t.write,
        "read": t.read,
    }


def _grant_target(request: Request) -> tuple[Server, str, str]:
    """Server, vhost and user of a ``/{vhost}/{user}`` grant path, for an administrator."""
    require_administrator(request)
    return server_of(request), path_name(request, "vhost"), path_name(request, "user")


def _require_pair(server: Server, vhost: str, user: str) -> None:
    """400 ``vhost_or_user_not_found`` (RabbitMQ's answer to a grant for nothing)."""
    if server.broker.vhost(vhost) is None or user not in server.users:
        raise bad_request("vhost_or_user_not_found")


async def list_permissions(request: Request) -> Response:
    require_administrator(request)
    grants = sorted(server_of(request).permissions, key=lambda p: (p.user, p.vhost))
    return respond([_permission_json(p) for p in grants])


async def get_permission(request: Request) -> Response:
    server, vhost, user = _grant_target(request)
    grant = server.permissions.get(user, vhost)
    if grant is None or server.broker.vhost(vhost) is None or user not in server.users:
        raise not_found()
    return respond(_permission_json(grant))


async def put_permission(request: Request) -> Response:
    server, vhost, user = _grant_target(request)
    body = await read_json(request)
    _missing(body, ("configure", "write", "read"))
    grant = Permission(
        user, vhost, _string(body, "configure"), _string(body, "write"), _string(body, "read")
    )
    _require_pair(server, vhost, user)
    existed = server.permissions.get(user, vhost) is not None
    server.permissions.set(grant)  # InvalidPattern → 400
    log.info(
        "permissions of user '%s' in vhost '%s' set by user '%s': configure '%s' write '%s'"
        " read '%s'",
        user,
        vhost,
        _actor(request),
        grant.configure,
        grant.write,
        grant.read,
    )
    audit(
        "permission.set",
        f"permissions of user '{user}' in vhost '{vhost}' set by user '{_actor(request)}'",
        actor=_actor(request),
        user=user,
        vhost=vhost,
        configure=grant.configure,
        write=grant.write,
        read=grant.read,
    )
    return no_content() if existed else created()


async def delete_permission(request: Request) -> Response:
    server, vhost, user = _grant_target(request)
    if server.broker.vhost(vhost) is None or user not in server.users:
        raise not_found()
    if not server.permissions.clear(user, vhost):
        raise not_found()
    log.info(
        "permissions of user '%s' in vhost '%s' cleared by user '%s'", user, vhost, _actor(request)
    )
    audit(
        "permission.cleared",
        f"permissions of user '{user}' in vhost '{vhost}' cleared by user '{_actor(request)}'",
        actor=_actor(request),
        user=user,
        vhost=vhost,
    )
    return no_content()


async def list_topic_permissions(request: Request) -> Response:
    require_administrator(request)
    grants = server_of(request).permissions.topic_permissions()
    grants.sort(key=lambda t: (t.user, t.vhost, t.exchange))
    return respond([_topic_json(t) for t in grants])


async def get_topic_permission(request: Request) -> Response:
    server, vhost, user = _grant_target(request)
    if server.broker.vhost(vhost) is None or user not in server.users:
        raise not_found()
    grants = server.permissions.topic(user, vhost)
    if not grants:
        raise not_found()
    return respond([_topic_json(t) for t in grants])


async def put_topic_permission(request: Request) -> Response:
    """Grant on one exchange; 201 only for a user's first topic grant in the vhost, as RabbitMQ."""
    server, vhost, user = _grant_target(request)
    body = await read_json(request)
    _missing(body, ("exchange", "write", "read"))
    grant = TopicPermission(
        user, vhost, _string(body, "exchange"), _string(body, "write"), _string(body, "read")
    )
    _require_pair(server, vhost, user)
    existed = bool(server.permissions.topic(user, vhost))
    server.permissions.set_topic(grant)  # InvalidPattern → 400
    log.info(
        "topic permissions of user '%s' in vhost '%s' on exchange '%s' set by user '%s':"
        " write '%s' read '%s'",
        user,
        vhost,
        grant.exchange,
        _actor(request),
        grant.write,
        grant.read,
    )
    audit(
        "topic_permission.set",
        f"topic permissions of user '{user}' in vhost '{vhost}' on "
        f"exchange '{grant.exchange}' set by user '{_actor(request)}'",
        actor=_actor(request),
        user=user,
        vhost=vhost,
        exchange=grant.exchange,
        write=grant.write,
        read=grant.read,
    )
    return no_content() if existed else created()


async def delete_topic_permission(request: Request) -> Response:
    """Remove all of the user's topic grants in the vhost.

    RabbitMQ 3.10 ignores a body naming one exchange and clears them all; so
    does this, so a script behaves the same against both.
    """
    server, vhost, user = _grant_target(request)
    if server.broker.vhost(vhost) is None or user not in server.users:
        raise not_found()
    if not server.permissions.clear_topic(user, vhost):
        raise not_found()
    log.info(
        "topic permissions of user '%s' in vhost '%s' cleared by user '%s'",
        user,
        vhost,
        _actor(request),
    )
    audit(
        "topic_permission.cleared",
        f"topic permissions of user '{user}' in vhost '{vhost}' "
        f"cleared by user '{_actor(request)}'",
        actor=_actor(request),
        user=user,
        vhost=vhost,
    )
    return no_content()


ROUTES: list[BaseRoute] = [
    Route("/api/whoami", whoami, methods=["GET"]),
    Route("/api/vhosts", list_vhosts, methods=["GET"]),
    Route("/api/vhosts/{vhost}", get_vhost, methods=["GET"]),
    Route("/api/vhosts/{vhost}", put_vhost, methods=["PUT"]),
    Route("/api/vhosts/{vhost}", delete_vhost, methods=["DELETE"]),
    Route("/api/vhosts/{vhost}/permissions", vhost_permissions, methods=["GET"]),
    Route("/api/vhosts/{vhost}/topic-permissions", vhost_topic_permissions, methods=["GET"]),
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users/without-permissions", users_without_permissions, methods=["GET"]),
    Route("/api/users/bulk-delete", bulk_delete_users, methods=["POST"]),
    Route("/api/users/{user}", get_user, methods=["GET"]),
    Route("/api/users/{user}", put_user, methods=["PUT"]),
    Route("/api/users/{user}", delete_user, methods=["DELETE"]),
    Route("/api/users/{user}/permissions", user_permissions, methods=["GET"]),
    Route("/api/users/{user}/topic-permissions", user_topic_permissions, methods=["GET"]),
    Route("/api/permissions", list_permissions, methods=["GET"]),
    Route("/api/permissions/{vhost}/{user}", get_permission, methods=["GET"]),
    Route("/api/permissions/{vhost}/{user}", put_permission, methods=["PUT"]),
    Route("/api/permissions/{vhost}/{user}", delete_permission, methods=["DELETE"]),
    Route("/api/topic-permissions", list_topic_permissions, methods=["GET"]),
    Route("/api/topic-permissions/{vhost}/{user}", get_topic_permission, methods=["GET"]),
    Route("/api/topic-permissions/{vhost}/{user}", put_topic_permission, methods=["PUT"]),
    Route("/api/topic-permissions/{vhost}/{user}", delete_topic_permission, methods=["DELETE"]),
]
