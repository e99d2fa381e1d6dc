"""Endpoints tools probe for: feature flags, runtime and global parameters, queue actions.

RabbitMQ's management tools (the web UI, ``rabbitmqadmin``, Terraform and
Kubernetes operators) read these before doing anything else, so they answer in
RabbitMQ 3.10's shapes:

- ``/api/feature-flags`` lists the flags RabbitMQ 3.10 reports as enabled whose
  behaviour RapidMQ has (implicit default bindings, quorum queues, user limits,
  vhost metadata), each ``enabled`` and ``stable``.
- ``/api/parameters[/{component}[/{vhost}[/{name}]]]`` lists runtime
  parameters, read-only.  The only component RapidMQ has is ``vhost-limits``
  (RabbitMQ lists vhost limits there too); any other component is an empty list.
- ``/api/global-parameters[/{name}]`` shows ``cluster_name`` and an
  ``internal_cluster_id`` derived from it.
- ``POST /api/queues/{vhost}/{name}/actions`` accepts ``sync`` and
  ``cancel_sync`` (mirroring actions: with nothing mirrored, nothing to do) with
  RabbitMQ's 204, and refuses any other action with its 400.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import server_of
from rapidmq.admin.definitions import limit_parameters
from rapidmq.admin.resources import vhost_of, visible_vhost_objects
from rapidmq.admin.util import (
    ApiError,
    bad_request,
    no_content,
    not_found,
    path_name,
    read_json,
    respond,
)

if TYPE_CHECKING:
    from rapidmq.server import Server

__all__ = ["FEATURE_FLAGS", "ROUTES"]

#: (name, description, documentation URL), in RabbitMQ 3.10's words.
FEATURE_FLAGS: tuple[tuple[str, str, str], ...] = (
    (
        "implicit_default_bindings",
        "Default bindings are now implicit, instead of being stored in the database",
        "",
    ),
    (
        "quorum_queue",
        "Support queues of type `quorum`",
        "https://www.rabbitmq.com/quorum-queues.html",
    ),
    ("user_limits", "Configure connection and channel limits for a user", ""),
    ("virtual_host_metadata", "Virtual host metadata (description, tags, etc)", ""),
)

_QUEUE_ACTIONS = frozenset({"sync", "cancel_sync"})


async def feature_flags(request: Request) -> Response:
    return respond(
        [
            {
                "name": name,
                "desc": desc,
                "doc_url": doc_url,
                "state": "enabled",
                "stability": "stable",
                "provided_by": "rabbit",
            }
            for name, desc, doc_url in FEATURE_FLAGS
        ]
    )


# -- runtime parameters ------------------------------------------------------------------


def _parameters(request: Request, component: str | None, vhost: str | None) -> list[Any]:
    vhosts = [vhost_of(request)] if vhost is not None else visible_vhost_objects(request)
    found = limit_parameters(server_of(request), vhosts)
    return [p for p in found if component is None or p["component"] == component]


async def parameters(request: Request) -> Response:
    return respond(_parameters(request, None, None))


async def component_parameters(request: Request) -> Response:
    return respond(_parameters(request, path_name(request, "component"), None))


async def vhost_parameters(request: Request) -> Response:
    component = path_name(request, "component")
    return respond(_parameters(request, component, path_name(request, "vhost")))


async def one_parameter(request: Request) -> Response:
    component = path_name(request, "component")
    name = path_name(request, "name")
    for parameter in _parameters(request, component, path_name(request, "vhost")):
        if parameter["name"] == name:
            return respond(parameter)
    raise not_found()


# -- global parameters -------------------------------------------------------------------


def _global_parameters(server: Server) -> list[dict[str, Any]]:
    digest = hashlib.sha256(server.cluster_name.encode("utf-8")).digest()[:16]
    cluster_id = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return [
        {"name": "cluster_name", "value": server.cluster_name},
        {"name": "internal_cluster_id", "value": f"rapidmq-cluster-id-{cluster_id}"},
    ]


async def global_parameters(request: Request) -> Response:
    return respond(_global_parameters(server_of(request)))


async def one_global_parameter(request: Request) -> Response:
    name = path_name(request, "name")
    for parameter in _global_parameters(server_of(request)):
        if parameter["name"] == name:
            return respond(parameter)
    raise not_found()


# -- queue actions -----------------------------------------------------------------------


async def queue_actions(request: Request) -> Response:
    vhost = vhost_of(request)
    if path_name(request, "name") not in vhost.queues:
        raise not_found()  # RabbitMQ 3.10 answers 500 here; a 404 says what happened
    body = await read_json(request)
    if "action" not in body:
        raise bad_request("[{key_missing,action}]")
    action = body["action"]
    if action not in _QUEUE_ACTIONS:
        # RabbitMQ's reason is the JSON of the Erlang term {unknown, Action}.
        raise ApiError(400, "bad_request", ["unknown", str(action)])
    return no_content()


ROUTES: list[BaseRoute] = [
    Route("/api/feature-flags", feature_flags, methods=["GET"]),
    Route("/api/parameters", parameters, methods=["GET"]),
    Route("/api/parameters/{component}", component_parameters, methods=["GET"]),
    Route("/api/parameters/{component}/{vhost}", vhost_parameters, methods=["GET"]),
    Route("/api/parameters/{component}/{vhost}/{name}", one_parameter, methods=["GET"]),
    Route("/api/global-parameters", global_parameters, methods=["GET"]),
    Route("/api/global-parameters/{name}", one_global_parameter, methods=["GET"]),
    Route("/api/queues/{vhost}/{name}/actions", queue_actions, methods=["POST"]),
]
