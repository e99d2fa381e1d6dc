"""``/api/bindings``: list, create, show and delete bindings.

A binding is addressed as RabbitMQ's API does: vhost, ``e/{source}``, then
``q/{queue}`` or ``e/{exchange}``, then its ``properties_key`` (see
:func:`~rapidmq.admin.resources.properties_key`), which tells apart bindings
between the same two ends.  The default exchange's implicit bindings (every
queue, by its own name) are listed but cannot be created or deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.listing import list_response
from rapidmq.admin.resources import (
    BindingView,
    access_refused,
    binding_sort_key,
    bindings_of_vhost,
    checked_session,
    exchange_path_name,
    implicit_binding,
    log_change,
    vhost_of,
    visible_vhost_objects,
)
from rapidmq.admin.util import ApiError, bad_request, not_found, path_name, read_json, respond
from rapidmq.core.errors import NotFound
from rapidmq.core.message import Long

if TYPE_CHECKING:
    from rapidmq.core.vhost import VirtualHost

__all__ = ["ROUTES"]

_SORT_KEYS: dict[str, Any] = {
    "source": lambda v: v.source,
    "destination": lambda v: v.destination,
    "destination_type": lambda v: v.destination_type,
    "routing_key": lambda v: v.routing_key,
    "vhost": lambda v: v.vhost,
}


def _list(request: Request, views: list[BindingView]) -> Response:
    return list_response(
        request,
        views,
        render=BindingView.render,
        name=lambda v: v.destination,
        sort_keys=_SORT_KEYS,
        default_sort=binding_sort_key,
    )


async def list_all(request: Request) -> Response:
    views = [view for v in visible_vhost_objects(request) for view in bindings_of_vhost(v)]
    return _list(request, views)


async def list_vhost(request: Request) -> Response:
    return _list(request, bindings_of_vhost(vhost_of(request)))


def _ends(request: Request, to_exchange: bool) -> tuple[VirtualHost, str, str]:
    """The vhost, source and destination of the path; 404 if an end is missing."""
    vhost = vhost_of(request)
    source = exchange_path_name(request, "source")
    if to_exchange:
        destination = exchange_path_name(request, "destination")
        found = destination in vhost.exchanges
    else:
        destination = path_name(request, "destination")
        found = destination in vhost.queues
    if source not in vhost.exchanges or not found:
        raise not_found()
    return vhost, source, destination


def _between(
    vhost: VirtualHost, source: str, destination: str, to_exchange: bool
) -> list[BindingView]:
    if source == "":
        queue = vhost.queues.get(destination)
        return [] if to_exchange or queue is None else [implicit_binding(queue)]
    exchange = vhost.exchanges[source]
    kind = "exchange" if to_exchange else "queue"
    return [
        view
        for view in map(BindingView.of, exchange.bindings_out.values())
        if view.destination == destination and view.destination_type == kind
    ]


async def _list_between(request: Request, to_exchange: bool) -> Response:
    vhost, source, destination = _ends(request, to_exchange)
    return _list(request, _between(vhost, source, destination, to_exchange))


async def list_to_queue(request: Request) -> Response:
    return await _list_between(request, False)


async def list_to_exchange(request: Request) -> Response:
    return await _list_between(request, True)


async def _create(request: Request, to_exchange: bool) -> Response:
    vhost = vhost_of(request)
    source = exchange_path_name(request, "source")
    key = "destination"
    destination = exchange_path_name(request, key) if to_exchange else path_name(request, key)
    body = await read_json(request, required=False)
    routing_key = body.get("routing_key", "")
    arguments = body.get("arguments") or {}
    if not isinstance(routing_key, str):
        raise bad_request("routing_key must be a string")
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    arguments = _from_json(arguments)
    try:
        with checked_session(request, vhost.name) as session:
            if to_exchange:
                session.bind_exchange(destination, source, routing_key, arguments)
            else:
                session.bind_queue(destination, source, routing_key, arguments)
    except NotFound as err:
        raise ApiError(404, "not_found", err.text) from None
    kind = "exchange" if to_exchange else "queue"
    log_change(
        request,
        f"bound {kind} '{destination}' to exchange '{source}' with routing key "
        f"'{routing_key}' in vhost '{vhost.name}'",
    )
    props = BindingView(vhost.name, source, destination, kind, routing_key, arguments).key
    location = f"{quote(destination, safe='')}/{quote(props, safe='')}"
    return Response(status_code=201, headers={"Location": location})


def _from_json(value: Any) -> Any:
    """JSON arguments with their integers typed ``long``, as RabbitMQ types them.

    The type is part of the hash in a binding's properties key.
    """
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return Long(value)
    return value


async def create_to_queue(request: Request) -> Response:
    return await _create(request, False)


async def create_to_exchange(request: Request) -> Response:
    return await _create(request, True)


def _one(request: Request, to_exchange: bool) -> tuple[VirtualHost, BindingView]:
    vhost, source, destination = _ends(request, to_exchange)
    props = path_name(request, "props")
    for view in _between(vhost, source, destination, to_exchange):
        if view.key == props:
            return vhost, view
    raise not_found()


async def get_to_queue(request: Request) -> Response:
    return _render_one(_one(request, False)[1])


async def get_to_exchange(request: Request) -> Response:
    return _render_one(_one(request, True)[1])


def _render_one(view: BindingView) -> Response:
    return respond(view.render())


async def _delete(request: Request, to_exchange: bool) -> Response:
    vhost, view = _one(request, to_exchange)
    if view.binding is None:
        raise access_refused()  # the default exchange's bindings cannot be removed
    with checked_session(request, vhost.name) as session:
        if to_exchange:
            session.unbind_exchange(view.destination, view.source, view.routing_key, view.arguments)
        else:
            session.unbind_queue(view.destination, view.source, view.routing_key, view.arguments)
    log_change(
        request,
        f"unbound {view.destination_type} '{view.destination}' from exchange "
        f"'{view.source}' with routing key '{view.routing_key}' in vhost '{vhost.name}'",
    )
    return Response(status_code=204)


async def delete_to_queue(request: Request) -> Response:
    return await _delete(request, False)


async def delete_to_exchange(request: Request) -> Response:
    return await _delete(request, True)


_BASE = "/api/bindings/{vhost}/e/{source}"

ROUTES: list[BaseRoute] = [
    Route("/api/bindings", list_all, methods=["GET"]),
    Route("/api/bindings/{vhost}", list_vhost, methods=["GET"]),
    Route(_BASE + "/q/{destination}", list_to_queue, methods=["GET"]),
    Route(_BASE + "/q/{destination}", create_to_queue, methods=["POST"]),
    Route(_BASE + "/e/{destination}", list_to_exchange, methods=["GET"]),
    Route(_BASE + "/e/{destination}", create_to_exchange, methods=["POST"]),
    Route(_BASE + "/q/{destination}/{props}", get_to_queue, methods=["GET"]),
    Route(_BASE + "/q/{destination}/{props}", delete_to_queue, methods=["DELETE"]),
    Route(_BASE + "/e/{destination}/{props}", get_to_exchange, methods=["GET"]),
    Route(_BASE + "/e/{destination}/{props}", delete_to_exchange, methods=["DELETE"]),
]
