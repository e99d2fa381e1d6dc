"""``/api/exchanges``: list, declare, delete, their bindings, and publish over HTTP.

The default exchange is listed with the name ""; in paths RabbitMQ's API
addresses it as ``amq.default``.  Declaring, deleting and publishing go through
an internal session (:func:`~rapidmq.admin.resources.internal_session`), so
the same rules apply as for an AMQP client: reserved names, equivalence,
``user_id`` checks, and a persistent message routed to a durable queue is
stored exactly as an AMQP publish would be.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import server_of
from rapidmq.admin.listing import list_response
from rapidmq.admin.resources import (
    BindingView,
    amqp_reason,
    binding_sort_key,
    checked_session,
    exchange_path_name,
    implicit_binding,
    internal_session,
    log_change,
    vhost_of,
    visible_vhost_objects,
)
from rapidmq.admin.util import (
    bad_request,
    created,
    flag,
    no_content,
    not_found,
    read_json,
    respond,
)
from rapidmq.core.errors import CoreError
from rapidmq.core.message import Message, Properties
from rapidmq.protocols.amqp091.properties import encode_properties

if TYPE_CHECKING:
    from rapidmq.admin.rates import RateSampler
    from rapidmq.core.exchange import Exchange
    from rapidmq.core.vhost import VirtualHost

__all__ = ["EXCHANGE_STATS", "ROUTES", "message_from_publish", "render_exchange"]

_SORT_KEYS: dict[str, Any] = {
    "name": lambda x: x.name,
    "vhost": lambda x: x.vhost_name,
    "type": lambda x: x.type,
    "durable": lambda x: x.durable,
    "auto_delete": lambda x: x.auto_delete,
    "internal": lambda x: x.internal,
    "message_stats.publish_in": lambda x: x.published_in,
    "message_stats.publish_out": lambda x: x.published_out,
}

_INT_PROPERTIES = ("delivery_mode", "priority", "timestamp")
_STRING_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
)


class BadField(Exception):
    """A publish field RabbitMQ refuses with a two-part reason: ``["not_int", "priority"]``."""

    def __init__(self, kind: str, value: Any) -> None:
        super().__init__(kind)
        self.reason = [kind, value]


#: ``message_stats`` of an exchange: API name → exchange counter.
EXCHANGE_STATS = {"publish_in": "published_in", "publish_out": "published_out"}


def render_exchange(
    exchange: Exchange, vhost: VirtualHost | None = None, rates: RateSampler | None = None
) -> dict[str, Any]:
    """One exchange as RabbitMQ's API lists it.

    ``policy`` appears only when one applies, and ``message_stats`` once the
    exchange has had a publish, both as in RabbitMQ.
    """
    body: dict[str, Any] = {
        "name": exchange.name,
        "vhost": exchange.vhost_name,
        "type": exchange.type,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": exchange.arguments,
    }
    if vhost is not None:
        policy = vhost.policies.of_exchange(exchange.name).policy
        if policy is not None:
            body["policy"] = policy.name
    if rates is not None and (exchange.published_in or exchange.published_out):
        counters = {"published_in": exchange.published_in, "published_out": exchange.published_out}
        key = ("exchange", exchange.vhost_name, exchange.name)
        body["message_stats"] = rates.stats(key, counters, EXCHANGE_STATS)
    return body


def _exchange(vhost: VirtualHost, name: str) -> Exchange:
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        raise not_found()
    return exchange


async def list_all(request: Request) -> Response:
    exchanges = [x for v in visible_vhost_objects(request) for x in v.exchanges.values()]
    return _list(request, exchanges)


async def list_vhost(request: Request) -> Response:
    return _list(request, list(vhost_of(request).exchanges.values()))


def _list(request: Request, exchanges: list[Exchange]) -> Response:
    broker = server_of(request).broker
    return list_response(
        request,
        exchanges,
        render=lambda x: render_exchange(x, broker.vhost(x.vhost_name), server_of(request).rates),
        name=lambda x: x.name,
        sort_keys=_SORT_KEYS,
        default_sort=lambda x: (x.vhost_name, x.name),
    )


async def get_exchange(request: Request) -> Response:
    vhost = vhost_of(request)
    exchange = _exchange(vhost, exchange_path_name(request, "name"))
    body = render_exchange(exchange, vhost, server_of(request).rates)
    body["incoming"] = []
    body["outgoing"] = []
    return respond(body)


async def put_exchange(request: Request) -> Response:
    vhost = vhost_of(request)
    name = exchange_path_name(request, "name")
    body = await read_json(request, required=False)
    type_ = body.get("type", "direct")
    arguments = body.get("arguments") or {}
    if not isinstance(type_, str):
        raise bad_request("type must be a string")
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    existed = name in vhost.exchanges
    with checked_session(request, vhost.name) as session:
        session.declare_exchange(
            name,
            type_,
            durable=flag(body.get("durable")),
            auto_delete=flag(body.get("auto_delete")),
            internal=flag(body.get("internal")),
            arguments=arguments,
        )
    if existed:
        return no_content()
    log_change(request, f"declared exchange '{name}' in vhost '{vhost.name}'")
    return created()


async def delete_exchange(request: Request) -> Response:
    vhost = vhost_of(request)
    name = exchange_path_name(request, "name")
    if name and name not in vhost.exchanges:
        raise not_found()
    with checked_session(request, vhost.name) as session:
        session.delete_exchange(name, if_unused=flag(request.query_params.get("if-unused")))
    log_change(request, f"deleted exchange '{name}' in vhost '{vhost.name}'")
    return no_content()


async def bindings_source(request: Request) -> Response:
    vhost = vhost_of(request)
    exchange = _exchange(vhost, exchange_path_name(request, "name"))
    if exchange is vhost.default_exchange:
        views = [implicit_binding(q) for q in vhost.queues.values()]
    else:
        views = [BindingView.of(b) for b in exchange.bindings_out.values()]
    return _bindings(request, views)


async def bindings_destination(request: Request) -> Response:
    vhost = vhost_of(request)
    exchange = _exchange(vhost, exchange_path_name(request, "name"))
    return _bindings(request, [BindingView.of(b) for b in exchange.bindings_in.values()])


def _bindings(request: Request, views: list[BindingView]) -> Response:
    return list_response(
        request,
        views,
        render=BindingView.render,
        name=lambda v: v.destination,
        sort_keys={"routing_key": lambda v: v.routing_key},
        default_sort=binding_sort_key,
    )


def _required(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise bad_request(f"[{{key_missing,{key}}}]")
    return body[key]


def _properties(raw: Any) -> Properties:
    """AMQP basic properties from the JSON object RabbitMQ's publish takes.

    Unknown keys are ignored, as RabbitMQ does.
    """
    if not isinstance(raw, dict):
        raise BadField("not_table", "properties")
    fields: dict[str, Any] = {}
    for name in _INT_PROPERTIES:
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadField("not_int", name)
        fields[name] = value
    for name in _STRING_PROPERTIES:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadField("not_string", name)
        fields[name] = value
    headers = raw.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise BadField("not_table", "headers")
        fields["headers"] = headers
    return Properties(**fields)


def _payload(body: dict[str, Any]) -> bytes:
    payload = _required(body, "payload")
    encoding = _required(body, "payload_encoding")
    if not isinstance(payload, str):
        raise BadField("not_string", "payload")
    if encoding == "string":
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadField("not_base64", payload) from None
    raise BadField("unsupported_encoding", encoding)


def message_from_publish(exchange: str, body: dict[str, Any]) -> Message:
    """The core message for a publish body, built as the AMQP front end builds one.

    The properties are encoded to AMQP's wire form here, once: that both
    refuses what AMQP cannot carry (a short string over 255 octets, a number
    out of range) and gives the message the encoded form every AMQP delivery
    and the message store reuse.

    Raises:
        ApiError: 400 ``[{key_missing,…}]`` for a missing field.
        BadField: a field of the wrong type or encoding.
    """
    properties = _properties(_required(body, "properties"))
    routing_key = _required(body, "routing_key")
    if not isinstance(routing_key, str):
        raise BadField("not_string", "routing_key")
    payload = _payload(body)
    try:
        encoded = encode_properties(properties)
    except (ValueError, TypeError, OverflowError, struct.error) as err:
        raise bad_request(f"invalid properties: {err}") from None
    return Message(exchange, routing_key, payload, properties, encoded)


async def publish(request: Request) -> Response:
    vhost = vhost_of(request)
    name = exchange_path_name(request, "name")
    body = await read_json(request)
    try:
        message = message_from_publish(name, body)
    except BadField as err:
        return respond({"error": "bad_request", "reason": err.reason}, 400)
    try:
        with internal_session(request, vhost.name) as session:
            result = session.publish(message)
    except CoreError as err:
        raise bad_request(amqp_reason(err)) from None
    if result.rejected:
        # A queue at its limit with reject-publish nacked it: RabbitMQ's words.
        raise bad_request("rejected Unable to publish message. Check queue limits.")
    return respond({"routed": result.routed})


ROUTES: list[BaseRoute] = [
    Route("/api/exchanges", list_all, methods=["GET"]),
    Route("/api/exchanges/{vhost}", list_vhost, methods=["GET"]),
    Route("/api/exchanges/{vhost}/{name}", get_exchange, methods=["GET"]),
    Route("/api/exchanges/{vhost}/{name}", put_exchange, methods=["PUT"]),
    Route("/api/exchanges/{vhost}/{name}", delete_exchange, methods=["DELETE"]),
    Route("/api/exchanges/{vhost}/{name}/bindings/source", bindings_source, methods=["GET"]),
    Route(
        "/api/exchanges/{vhost}/{name}/bindings/destination",
        bindings_destination,
        methods=["GET"],
    ),
    Route("/api/exchanges/{vhost}/{name}/publish", publish, methods=["POST"]),
]
