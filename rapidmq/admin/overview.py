"""``/api/overview``, ``/api/nodes`` and ``/api/cluster-name``, in RabbitMQ's shapes."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq import __version__
from rapidmq.admin.auth import (
    can_see_all,
    current_user,
    require_administrator,
    require_monitoring,
    server_of,
)
from rapidmq.admin.rates import Figures
from rapidmq.admin.util import no_content, not_found, path_name, read_json, respond

if TYPE_CHECKING:
    from rapidmq.core.broker import Broker
    from rapidmq.core.queue import Queue
    from rapidmq.server import Server

__all__ = [
    "OVERVIEW_STATS",
    "QUEUE_STATS",
    "ROUTES",
    "node_info",
    "queue_counters",
    "sample_figures",
]

EXCHANGE_TYPES = (
    ("direct", "AMQP direct exchange, as per the AMQP specification"),
    ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
    ("headers", "AMQP headers exchange, as per the AMQP specification"),
    ("topic", "AMQP topic exchange, as per the AMQP specification"),
)

#: ``message_stats`` of the overview: API name → broker counter.
OVERVIEW_STATS = {
    "publish": "published",
    "deliver_get": "delivered",
    "ack": "acknowledged",
    "drop_unroutable": "unroutable",
    "reject": "rejected",
}
#: ``message_stats`` of a queue: API name → queue counter.
QUEUE_STATS = {
    "publish": "published",
    "deliver_get": "delivered",
    "deliver": "delivered_ack",
    "deliver_no_ack": "delivered_no_ack",
    "get": "got_ack",
    "get_no_ack": "got_no_ack",
    "get_empty": "got_empty",
    "ack": "acknowledged",
    "redeliver": "redelivered",
}


def queue_counters(queue: Queue) -> dict[str, int]:
    """A queue's message counters, by the names of :data:`QUEUE_STATS`."""
    got, got_no_ack, delivered, no_ack = (
        queue.got,
        queue.got_no_ack,
        queue.delivered,
        queue.delivered_no_ack,
    )
    return {
        "published": queue.published,
        "delivered": delivered,
        "delivered_ack": delivered - got - no_ack,
        "delivered_no_ack": no_ack,
        "got_ack": got - got_no_ack,
        "got_no_ack": got_no_ack,
        "got_empty": queue.got_empty,
        "acknowledged": queue.acked,
        "redelivered": queue.redelivered,
    }


_QUEUE_TOTALS = ("messages", "messages_ready", "messages_unacknowledged")


def sample_figures(broker: Broker) -> Figures:
    """The counters the rate sampler keeps: the broker's, each used exchange's and each queue's."""
    totals = broker.statistics()
    figures: Figures = {
        "broker": {
            "messages": totals["messages_ready"] + totals["messages_unacknowledged"],
            "messages_ready": totals["messages_ready"],
            "messages_unacknowledged": totals["messages_unacknowledged"],
            **{counter: int(totals[counter]) for counter in OVERVIEW_STATS.values()},
        }
    }
    for vhost in broker.vhosts():
        for exchange in vhost.exchanges.values():
            if exchange.published_in or exchange.published_out:
                figures[("exchange", vhost.name, exchange.name)] = {
                    "published_in": exchange.published_in,
                    "published_out": exchange.published_out,
                }
        for queue in vhost.queues.values():
            key: Hashable = ("queue", vhost.name, queue.name)
            figures[key] = {
                **queue_counters(queue),
                "messages": queue.ready_count + queue.unacked_count,
                "messages_ready": queue.ready_count,
                "messages_unacknowledged": queue.unacked_count,
            }
    return figures


def _with_rates(
    server: Server, key: Hashable, counters: Mapping[str, int], names: tuple[str, ...]
) -> dict[str, Any]:
    """``{"messages": n, "messages_details": {"rate": r}, …}`` for gauges."""
    return server.rates.stats(key, counters, {name: name for name in names})


def _listeners(server: Server) -> list[dict[str, Any]]:
    protocols = {
        "amqp": "amqp",
        "amqps": "amqp/ssl",
        "mqtt": "mqtt",
        "mqtts": "mqtt/ssl",
        "mqtt_ws": "http/web-mqtt",
        "mqtt_wss": "https/web-mqtt",
        "http": "http",
        "https": "https",
    }
    out = []
    for key, protocol in protocols.items():
        port = server.ports.get(key)
        if port is not None:
            out.append(
                {
                    "node": server.node_name,
                    "protocol": protocol,
                    "ip_address": server.settings.bind,
                    "port": port,
                    "socket_opts": {},
                }
            )
    return out


def _contexts(server: Server) -> list[dict[str, Any]]:
    port = server.ports.get("http")
    return [
        {
            "ssl_opts": [],
            "node": server.node_name,
            "description": "RapidMQ Management",
            "path": "/",
            "port": str(port),
        }
    ]


async def overview(request: Request) -> Response:
    server = server_of(request)
    broker = server.broker
    totals = broker.statistics()
    user = current_user(request)
    counters = {counter: int(totals[counter]) for counter in OVERVIEW_STATS.values()}
    queue_totals = {
        "messages": totals["messages_ready"] + totals["messages_unacknowledged"],
        "messages_ready": totals["messages_ready"],
        "messages_unacknowledged": totals["messages_unacknowledged"],
    }
    body: dict[str, Any] = {
        "management_version": __version__,
        "rates_mode": "basic",
        "exchange_types": [
            {"name": name, "description": text, "enabled": True} for name, text in EXCHANGE_TYPES
        ],
        "product_version": __version__,
        "product_name": "RapidMQ",
        "rabbitmq_version": __version__,
        "cluster_name": server.cluster_name,
        "disable_stats": False,
        "enable_queue_totals": False,
        "message_stats": server.rates.stats("broker", counters, OVERVIEW_STATS),
        "queue_totals": _with_rates(server, "broker", queue_totals, _QUEUE_TOTALS),
        "object_totals": {
            "channels": totals["sessions"],
            "connections": totals["connections"],
            "consumers": totals["consumers"],
            "exchanges": totals["exchanges"],
            "queues": totals["queues"],
        },
        "statistics_db_event_queue": 0,
        "node": server.node_name,
        "listeners": _listeners(server),
        "contexts": _contexts(server),
    }
    if not can_see_all(user):
        del body["listeners"], body["contexts"]
    return respond(body)


def node_info(server: Server) -> dict[str, Any]:
    """One node as ``/api/nodes`` lists it: memory, disk, file descriptors, alarms."""
    resources = server.resources()
    alarms = server.alarms
    return {
        "name": server.node_name,
        "type": "disc",
        "running": True,
        "os_pid": str(os.getpid()),
        "uptime": server.uptime_ms(),
        "processors": os.cpu_count() or 1,
        "mem_used": resources["memory_used_bytes"],
        "mem_limit": alarms.memory_limit_bytes,
        "mem_alarm": alarms.memory,
        "mem_calculation_strategy": "rss",
        "disk_free": resources["disk_free_bytes"],
        "disk_free_limit": alarms.disk_free_limit_bytes,
        "disk_free_alarm": alarms.disk,
        "fd_used": resources["fd_used"],
        "fd_total": resources["fd_total"],
        "sockets_used": len(server.connections),
        "sockets_total": resources["fd_total"],
        "partitions": [],
        "exchange_types": [
            {"name": name, "description": text, "enabled": True} for name, text in EXCHANGE_TYPES
        ],
        "rates_mode": "basic",
        "db_dir": os.path.abspath(server.settings.data_dir),
        "storage": server.settings.storage,
        "alarms": list(alarms.active),
        "contexts": _contexts(server),
    }


async def nodes(request: Request) -> Response:
    require_monitoring(request)
    return respond([node_info(server_of(request))])


async def node(request: Request) -> Response:
    require_monitoring(request)
    server = server_of(request)
    if path_name(request, "name") != server.node_name:
        raise not_found()
    return respond(node_info(server))


async def get_cluster_name(request: Request) -> Response:
    return respond({"name": server_of(request).cluster_name})


async def put_cluster_name(request: Request) -> Response:
    require_administrator(request)
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return respond({"error": "bad_request", "reason": "name must be a string"}, 400)
    server_of(request).cluster_name = name
    return no_content()


ROUTES: list[BaseRoute] = [
    Route("/api/overview", overview, methods=["GET"]),
    Route("/api/nodes", nodes, methods=["GET"]),
    Route("/api/nodes/{name}", node, methods=["GET"]),
    Route("/api/cluster-name", get_cluster_name, methods=["GET"]),
    Route("/api/cluster-name", put_cluster_name, methods=["PUT"]),
]
