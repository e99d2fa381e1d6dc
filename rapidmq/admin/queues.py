"""``/api/queues``: list, declare, delete, purge, bindings, and get messages over HTTP.

Counts are read from the queue at request time; rates come from the sampler
(:mod:`rapidmq.admin.rates`) under the key ``("queue", vhost, name)``.  A list
is filtered, sorted and paged on the queue objects with cheap key functions,
so a page of 100 out of 10,000 queues renders 100.

``POST …/get`` takes messages as RabbitMQ's management plugin does: with
``basic.get`` on a channel of its own, then settles them all at the end, so a
requeue mode puts them back in their original order, flagged redelivered.
"""

from __future__ import annotations

import base64
import datetime
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import server_of
from rapidmq.admin.listing import list_response
from rapidmq.admin.overview import QUEUE_STATS, queue_counters
from rapidmq.admin.queue_types import adapt_to_type
from rapidmq.admin.resources import (
    BindingView,
    amqp_reason,
    binding_sort_key,
    checked_session,
    implicit_binding,
    internal_session,
    log_change,
    vhost_of,
    visible_vhost_objects,
)
from rapidmq.admin.util import (
    ApiError,
    bad_request,
    created,
    flag,
    no_content,
    not_found,
    path_name,
    read_json,
    respond,
)
from rapidmq.core.errors import AccessRefused, CoreError, NotFound

if TYPE_CHECKING:
    from rapidmq.core.consumer import Consumer
    from rapidmq.core.message import Message
    from rapidmq.core.queue import Queue
    from rapidmq.core.vhost import VirtualHost
    from rapidmq.server import Server

__all__ = ["ACK_MODES", "ROUTES", "render_queue"]

#: ackmode → (basic.get no_ack, settle with requeue: True/False, None for no settlement).
ACK_MODES: dict[str, tuple[bool, bool | None]] = {
    "ack_requeue_true": (False, True),
    "reject_requeue_true": (False, True),
    "ack_requeue_false": (True, None),
    "reject_requeue_false": (False, False),
}

_GAUGES = ("messages", "messages_ready", "messages_unacknowledged")

_SORT_KEYS: dict[str, Any] = {
    "name": lambda q: q.name,
    "vhost": lambda q: q.vhost.name,
    "messages": lambda q: q.ready_count + q.unacked_count,
    "messages_ready": lambda q: q.ready_count,
    "messages_unacknowledged": lambda q: q.unacked_count,
    "consumers": lambda q: len(q.consumers),
    "durable": lambda q: q.durable,
    "auto_delete": lambda q: q.auto_delete,
    "exclusive": lambda q: q.owner is not None,
    "message_stats.publish": lambda q: q.published,
    "message_stats.deliver_get": lambda q: q.delivered,
    "message_stats.ack": lambda q: q.acked,
}


def _idle_since(queue: Queue) -> str:
    """When the queue was last used, in RabbitMQ 3.10's form ``2026-11-29T09:06:21.525+00:00``.

    The core keeps ``last_used`` on its monotonic clock; the wall-clock time is
    now minus the time since then.
    """
    wall = time.time() - max(0.0, time.monotonic() - queue.last_used)
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def render_queue(server: Server, queue: Queue) -> dict[str, Any]:
    """One queue as RabbitMQ's API lists it."""
    vhost = queue.vhost.name
    key = ("queue", vhost, queue.name)
    figures = queue.statistics()  # a stream counts its log, not ready messages
    ready = figures["messages_ready"]
    unacked = figures["messages_unacknowledged"]
    gauges = {
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    }
    counters = queue_counters(queue)
    ready_bytes = queue.ready_bytes + queue.paged_bytes
    exclusive_consumer = queue.exclusive_consumer
    single_active = queue.settings.single_active_consumer and queue.consumers
    applied = queue.vhost.policies.of_queue(queue.name)
    body: dict[str, Any] = {
        "name": queue.name,
        "vhost": vhost,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.owner is not None,
        "arguments": queue.arguments,
        "node": server.node_name,
        "state": "running",
        "type": queue.settings.queue_type,
        **server.rates.stats(key, gauges, {name: name for name in _GAUGES}),
        "message_bytes": ready_bytes,
        "message_bytes_ready": ready_bytes,
        "message_bytes_persistent": queue.persistent_bytes,
        "message_bytes_paged_out": queue.paged_bytes,
        "messages_persistent": queue.persistent_count,
        "messages_paged_out": queue.paged_count,
        "messages_ram": ready + unacked - queue.paged_count,
        "messages_ready_ram": ready - queue.paged_count,
        "messages_unacknowledged_ram": unacked,
        "consumers": len(queue.consumers),
        # RabbitMQ 3.10 shows one figure under both names.
        "consumer_capacity": figures["consumer_capacity"],
        "consumer_utilisation": figures["consumer_capacity"],
        "recoverable_slaves": None,
        "exclusive_consumer_tag": None if exclusive_consumer is None else exclusive_consumer.tag,
        "single_active_consumer_tag": queue.consumers[0].tag if single_active else None,
        "head_message_timestamp": None,
        "policy": None if applied.policy is None else applied.policy.name,
        "operator_policy": (
            None if applied.operator_policy is None else applied.operator_policy.name
        ),
        "effective_policy_definition": dict(applied.definition),
        "message_stats": server.rates.stats(key, counters, QUEUE_STATS),
    }
    if not queue.consumers:
        body["idle_since"] = _idle_since(queue)
    adapt_to_type(body, queue, server.node_name)
    return body


def _channel_details(server: Server, consumer: Consumer) -> dict[str, Any]:
    """The channel a consumer is on, found among the protocol connections."""
    session = consumer.session
    client = session.connection.client
    details: dict[str, Any] = {
        "connection_name": client.name or client.peer,
        "name": client.peer,
        "node": server.node_name,
        "number": 0,
        "peer_host": client.peer.rpartition(":")[0],
        "peer_port": 0,
        "user": client.user,
    }
    for sock, handler in server.protocol_connections():
        if getattr(handler, "core", None) is not session.connection:
            continue
        peer, local = sock.peer, sock.local
        peer_host, peer_port = (peer[0], peer[1]) if isinstance(peer, tuple) else (peer, 0)
        name = f"{peer_host}:{peer_port} -> {local[0]}:{local[1]}"
        number = 0
        for channel_id, channel in getattr(handler, "channels", {}).items():
            if getattr(channel, "session", None) is session:
                number = channel_id
        details.update(
            connection_name=name,
            name=f"{name} ({number})",
            number=number,
            peer_host=peer_host,
            peer_port=peer_port,
        )
        break
    return details


def _consumer_details(server: Server, queue: Queue) -> list[dict[str, Any]]:
    return [
        {
            "arguments": consumer.arguments,
            "ack_required": not consumer.no_ack,
            "active": True,
            "activity_status": "up",
            "consumer_tag": consumer.tag,
            "exclusive": consumer.exclusive,
            "prefetch_count": consumer.prefetch,
            "queue": {"name": queue.name, "vhost": queue.vhost.name},
            "channel_details": _channel_details(server, consumer),
        }
        for consumer in queue.consumers
    ]


def _queue(vhost: VirtualHost, name: str) -> Queue:
    queue = vhost.queues.get(name)
    if queue is None:
        raise not_found()
    return queue


def _list(request: Request, queues: list[Queue]) -> Response:
    server = server_of(request)
    return list_response(
        request,
        queues,
        render=lambda q: render_queue(server, q),
        name=lambda q: q.name,
        sort_keys=_SORT_KEYS,
        default_sort=lambda q: (q.vhost.name, q.name),
    )


async def list_all(request: Request) -> Response:
    return _list(request, [q for v in visible_vhost_objects(request) for q in v.queues.values()])


async def list_vhost(request: Request) -> Response:
    return _list(request, list(vhost_of(request).queues.values()))


async def get_queue(request: Request) -> Response:
    server = server_of(request)
    queue = _queue(vhost_of(request), path_name(request, "name"))
    body = render_queue(server, queue)
    body["consumer_details"] = _consumer_details(server, queue)
    body["deliveries"] = []
    body["incoming"] = []
    return respond(body)


async def put_queue(request: Request) -> Response:
    vhost = vhost_of(request)
    name = path_name(request, "name")
    if (size := len(name.encode("utf-8"))) > 255:
        # AMQP names are shortstrs; RabbitMQ refuses a longer one from the API in these words.
        raise bad_request(f"queue should be less than 255 bytes, actually was {size}\n")
    body = await read_json(request, required=False)
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    existed = name in vhost.queues
    with checked_session(request, vhost.name) as session:
        # "exclusive" is ignored, as RabbitMQ does: the internal connection
        # ends with this request, and its queue would go with it.
        session.declare_queue(
            name,
            durable=flag(body.get("durable")),
            auto_delete=flag(body.get("auto_delete")),
            arguments=arguments,
        )
    if existed:
        return no_content()
    log_change(request, f"declared queue '{name}' in vhost '{vhost.name}'")
    return created()


async def delete_queue(request: Request) -> Response:
    vhost = vhost_of(request)
    name = path_name(request, "name")
    _queue(vhost, name)
    query = request.query_params
    with checked_session(request, vhost.name) as session:
        session.delete_queue(
            name, if_unused=flag(query.get("if-unused")), if_empty=flag(query.get("if-empty"))
        )
    log_change(request, f"deleted queue '{name}' in vhost '{vhost.name}'")
    return no_content()


async def purge_queue(request: Request) -> Response:
    vhost = vhost_of(request)
    name = path_name(request, "name")
    _queue(vhost, name)
    with checked_session(request, vhost.name) as session:
        count = session.purge_queue(name)
    log_change(request, f"purged {count} messages from queue '{name}' in vhost '{vhost.name}'")
    return no_content()


async def queue_bindings(request: Request) -> Response:
    vhost = vhost_of(request)
    queue = _queue(vhost, path_name(request, "name"))
    views = [implicit_binding(queue)]
    views.extend(BindingView.of(b) for b in queue.bindings_in.values())
    return list_response(
        request,
        views,
        render=BindingView.render,
        name=lambda v: v.source,
        sort_keys={"routing_key": lambda v: v.routing_key},
        default_sort=binding_sort_key,
    )


def _required(body: dict[str, Any], key: str) -> Any:
    if key not in body:
        raise bad_request(f"[{{key_missing,{key}}}]")
    return body[key]


def _render_message(
    message: Message, redelivered: bool, message_count: int, encoding: str, truncate: int | None
) -> dict[str, Any]:
    body = message.body
    payload = body if truncate is None else body[:truncate]
    text: str | None = None
    if encoding == "auto":
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    properties = {
        name: value
        for name in message.properties.__slots__
        if (value := getattr(message.properties, name)) is not None
    }
    return {
        "payload_bytes": len(body),
        "redelivered": redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
        "message_count": message_count,
        "properties": properties,
        "payload": text if text is not None else base64.b64encode(payload).decode("ascii"),
        "payload_encoding": "string" if text is not None else "base64",
    }


async def get_messages(request: Request) -> Response:
    vhost = vhost_of(request)
    name = path_name(request, "name")
    body = await read_json(request)
    count = _required(body, "count")
    ackmode = _required(body, "ackmode")
    encoding = _required(body, "encoding")
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise bad_request("count must be a non-negative integer")
    mode = ACK_MODES.get(ackmode) if isinstance(ackmode, str) else None
    if mode is None:
        raise bad_request(
            "ackmode must be one of ack_requeue_true, ack_requeue_false, "
            "reject_requeue_true, reject_requeue_false"
        )
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    truncate = body.get("truncate")
    if isinstance(truncate, str) and truncate.strip().isdigit():
        truncate = int(truncate)
    if truncate is not None and (
        isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 0
    ):
        raise bad_request("truncate must be a non-negative integer")
    no_ack, requeue = mode
    rendered: list[dict[str, Any]] = []
    try:
        with internal_session(request, vhost.name) as session:
            last_tag = 0
            for _ in range(count):
                result = session.get(name, no_ack=no_ack)
                if result is None:
                    break
                last_tag = result.delivery_tag
                rendered.append(
                    _render_message(
                        result.message,
                        result.redelivered,
                        result.message_count,
                        encoding,
                        truncate,
                    )
                )
            if last_tag and requeue is not None:
                session.reject(last_tag, multiple=True, requeue=requeue)
    except NotFound as err:
        raise ApiError(404, "not_found", f"NOT_FOUND - {err.text}") from None
    except AccessRefused as err:  # RabbitMQ's API says 401 with the channel's text here
        raise ApiError(401, "not_authorised", f"ACCESS_REFUSED - {err.text}") from None
    except CoreError as err:
        raise bad_request(amqp_reason(err)) from None
    if rendered and ackmode != "ack_requeue_true" and ackmode != "reject_requeue_true":
        log_change(
            request,
            f"took {len(rendered)} messages from queue '{name}' in vhost '{vhost.name}'",
        )
    return respond(rendered)


ROUTES: list[BaseRoute] = [
    Route("/api/queues", list_all, methods=["GET"]),
    Route("/api/queues/{vhost}", list_vhost, methods=["GET"]),
    Route("/api/queues/{vhost}/{name}", get_queue, methods=["GET"]),
    Route("/api/queues/{vhost}/{name}", put_queue, methods=["PUT"]),
    Route("/api/queues/{vhost}/{name}", delete_queue, methods=["DELETE"]),
    Route("/api/queues/{vhost}/{name}/contents", purge_queue, methods=["DELETE"]),
    Route("/api/queues/{vhost}/{name}/bindings", queue_bindings, methods=["GET"]),
    Route("/api/queues/{vhost}/{name}/get", get_messages, methods=["POST"]),
]
