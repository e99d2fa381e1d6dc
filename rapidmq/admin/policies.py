"""``/api/policies`` and ``/api/operator-policies``, as RabbitMQ 3.10 has them.

A policy is kept and applied by its vhost in the core
(:meth:`~rapidmq.core.vhost.VirtualHost.set_policy`); this module only reads
the request, answers in RabbitMQ's shapes and logs the change.

Statuses and texts are RabbitMQ 3.10.8's: a PUT answers 201 when it creates
and 204 when it replaces; a DELETE answers 204, or 404 for a policy that does
not exist; a missing field is 400 ``[{key_missing,pattern}]``; a policy that
fails validation is 400 ``Validation failed`` with RabbitMQ's message (HTML-escaped
for policies, as RabbitMQ's policy resource escapes it, and not for operator
policies); a PUT into a missing vhost is 404 ``vhost_not_found``.  Policies
need the ``policymaker`` or ``administrator`` tag, operator policies
``administrator``.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import (
    current_user,
    not_authorised,
    require_administrator,
    server_of,
    visible_vhosts,
)
from rapidmq.admin.util import (
    ApiError,
    bad_request,
    created,
    no_content,
    not_found,
    path_name,
    read_json,
    respond,
)
from rapidmq.audit import audit
from rapidmq.auth.users import User
from rapidmq.core.policy import InvalidPolicy, Policy, make_policy

if TYPE_CHECKING:
    from rapidmq.core.vhost import VirtualHost

__all__ = ["ROUTES", "exported_policies", "policy_from_json", "validation_failed"]

log = logging.getLogger("rapidmq.admin")


def validation_failed(err: InvalidPolicy, *, escape: bool) -> ApiError:
    """RabbitMQ's 400 for a policy it refuses."""
    text = html.escape(err.text, quote=False) if escape else err.text
    return bad_request(f"Validation failed\n\n{text}\n")


def policy_from_json(vhost: str, name: str, body: dict[str, Any], *, operator: bool) -> Policy:
    """A policy from an API body or a definitions file entry.

    Raises:
        ApiError: 400 with RabbitMQ's text for a missing field or a refused policy.
    """
    for key in ("pattern", "definition"):
        if key not in body:
            raise bad_request(f"[{{key_missing,{key}}}]")
    try:
        return make_policy(vhost, name, body, operator=operator)
    except InvalidPolicy as err:
        raise validation_failed(err, escape=not operator) from None


def exported_policies(vhosts: list[VirtualHost]) -> list[dict[str, Any]]:
    """The ``policies`` of a definitions file (RabbitMQ 3.10 exports no operator policies)."""
    return [policy.as_json() for vhost in vhosts for policy in vhost.policies.list()]


# -- access -----------------------------------------------------------------------------


def _require_policymaker(request: Request, operator: bool) -> User:
    if operator:
        return require_administrator(request)
    user = current_user(request)
    if "policymaker" not in user.tags and "administrator" not in user.tags:
        raise not_authorised("Not policymaker user")
    return user


def _vhosts(request: Request) -> list[VirtualHost]:
    visible = visible_vhosts(request)
    vhosts = sorted(server_of(request).broker.vhosts(), key=lambda v: v.name)
    return [v for v in vhosts if visible is None or v.name in visible]


def _vhost(request: Request, *, missing: ApiError) -> VirtualHost:
    name = path_name(request, "vhost")
    vhost = server_of(request).broker.vhost(name)
    if vhost is None:
        raise missing
    visible = visible_vhosts(request)
    if visible is not None and name not in visible:
        raise not_authorised("User not authorised to access virtual host")
    return vhost


# -- endpoints ---------------------------------------------------------------------------


def _listing(operator: bool) -> Any:
    async def list_all(request: Request) -> Response:
        _require_policymaker(request, operator)
        vhosts = _vhosts(request)
        return respond([p.as_json() for v in vhosts for p in v.policies.list(operator=operator)])

    return list_all


def _vhost_listing(operator: bool) -> Any:
    async def list_vhost(request: Request) -> Response:
        _require_policymaker(request, operator)
        vhost = _vhost(request, missing=not_found())
        return respond([p.as_json() for p in vhost.policies.list(operator=operator)])

    return list_vhost


def _getter(operator: bool) -> Any:
    async def get_policy(request: Request) -> Response:
        _require_policymaker(request, operator)
        vhost = _vhost(request, missing=not_found())
        policy = vhost.policies.get(path_name(request, "name"), operator=operator)
        if policy is None:
            raise not_found()
        return respond(policy.as_json())

    return get_policy


def _kind(operator: bool) -> str:
    return "operator policy" if operator else "policy"


def _putter(operator: bool) -> Any:
    async def put_policy(request: Request) -> Response:
        actor = _require_policymaker(request, operator)
        vhost = _vhost(request, missing=ApiError(404, "not_found", "vhost_not_found"))
        name = path_name(request, "name")
        body = await read_json(request)
        policy = policy_from_json(vhost.name, name, body, operator=operator)
        is_new = vhost.set_policy(policy, operator=operator)
        what = f"{_kind(operator)} '{name}' in vhost '{vhost.name}'"
        log.info("%s set by user '%s': %s", what, actor.name, policy.as_json())
        audit(
            "operator_policy.set" if operator else "policy.set",
            f"{what} set by user '{actor.name}'",
            actor=actor.name,
            vhost=vhost.name,
            policy=name,
            pattern=policy.pattern,
            apply_to=policy.apply_to,
            priority=policy.priority,
            definition=dict(policy.definition),
        )
        return created() if is_new else no_content()

    return put_policy


def _deleter(operator: bool) -> Any:
    async def delete_policy(request: Request) -> Response:
        actor = _require_policymaker(request, operator)
        vhost = _vhost(request, missing=not_found())
        name = path_name(request, "name")
        if not vhost.clear_policy(name, operator=operator):
            raise not_found()
        what = f"{_kind(operator)} '{name}' in vhost '{vhost.name}'"
        log.info("%s cleared by user '%s'", what, actor.name)
        audit(
            "operator_policy.cleared" if operator else "policy.cleared",
            f"{what} cleared by user '{actor.name}'",
            actor=actor.name,
            vhost=vhost.name,
            policy=name,
        )
        return no_content()

    return delete_policy


def _routes(prefix: str, operator: bool) -> list[BaseRoute]:
    return [
        Route(prefix, _listing(operator), methods=["GET"]),
        Route(f"{prefix}/{{vhost}}", _vhost_listing(operator), methods=["GET"]),
        Route(f"{prefix}/{{vhost}}/{{name}}", _getter(operator), methods=["GET"]),
        Route(f"{prefix}/{{vhost}}/{{name}}", _putter(operator), methods=["PUT"]),
        Route(f"{prefix}/{{vhost}}/{{name}}", _deleter(operator), methods=["DELETE"]),
    ]


ROUTES: list[BaseRoute] = [
    *_routes("/api/policies", False),
    *_routes("/api/operator-policies", True),
]
