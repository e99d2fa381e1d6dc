"""Health checks and the aliveness test, with RabbitMQ 3.10's answers and bodies.

A check that passes answers 200 ``{"status": "ok", …}``; one that fails answers
503 ``{"status": "failed", "reason": …}`` with what it found, so a load balancer
or an orchestrator probe can act on the status code alone.  RapidMQ is one node,
so the cluster-wide and the local alarm checks look at the same alarms, and the
quorum and mirror checks always pass (there is no other node to lose).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import require_vhost, server_of
from rapidmq.admin.resources import internal_session
from rapidmq.admin.util import bad_request, path_name, respond
from rapidmq.core.message import Message

if TYPE_CHECKING:
    from rapidmq.server import Server

__all__ = ["ROUTES", "listener_protocols", "normalize_protocol"]

_NO_CACHE = {"cache-control": "no-cache"}
#: RabbitMQ's names of the resources in an alarm body.
_ALARM_RESOURCES = {"memory": "memory", "disk": "disk space"}
#: Our listeners under the protocol names RabbitMQ gives them.
_LISTENER_PROTOCOLS = (
    ("amqp", "amqp"),
    ("mqtt", "mqtt"),
    ("mqtt_ws", "http/web-mqtt"),
    ("http", "http"),
    ("prometheus", "http/prometheus"),
)
#: The spellings RabbitMQ accepts for a protocol, and the listener name each means.
_PROTOCOL_ALIASES = {
    "amqp091": "amqp",
    "amqp0.9.1": "amqp",
    "amqp0-9-1": "amqp",
    "amqp0_9_1": "amqp",
    "amqp10": "amqp",
    "amqp1.0": "amqp",
    "amqp1-0": "amqp",
    "amqp1_0": "amqp",
    "amqps": "amqp/ssl",
    "mqtt3.1": "mqtt",
    "mqtt3.1.1": "mqtt",
    "mqtt31": "mqtt",
    "mqtt311": "mqtt",
    "mqtt3_1": "mqtt",
    "mqtt3_1_1": "mqtt",
    "mqtts": "mqtt/ssl",
    "mqtt+tls": "mqtt/ssl",
    "mqtt+ssl": "mqtt/ssl",
    "web-mqtt": "http/web-mqtt",
    "webmqtt": "http/web-mqtt",
    "prometheus": "http/prometheus",
    "management": "http",
}
_TIME_UNITS = ("days", "weeks", "months", "years")
#: What the aliveness test declares, publishes and reads back, as RabbitMQ does.
ALIVENESS_QUEUE = "aliveness-test"
ALIVENESS_BODY = b"test_message"


def _ok(**extra: Any) -> Response:
    return respond({"status": "ok", **extra}, 200, _NO_CACHE)


def _failed(reason: str, **extra: Any) -> Response:
    return respond({"status": "failed", "reason": reason, **extra}, 503, _NO_CACHE)


def _alarms(server: Server) -> list[dict[str, Any]]:
    return [
        {"resource": _ALARM_RESOURCES.get(name, name), "node": server.node_name}
        for name in server.alarms.active
    ]


async def alarms(request: Request) -> Response:
    found = _alarms(server_of(request))
    if found:
        return _failed("There are alarms in effect in the cluster", alarms=found)
    return _ok()


async def local_alarms(request: Request) -> Response:
    found = _alarms(server_of(request))
    if found:
        return _failed("There are alarms in effect on the node", alarms=found)
    return _ok()


def listener_protocols(server: Server) -> list[tuple[str, int]]:
    """(RabbitMQ protocol name, port) of every listener this server has open."""
    out = []
    for key, protocol in _LISTENER_PROTOCOLS:
        port = server.ports.get(key)
        if port is not None:
            out.append((protocol, port))
    return out


def normalize_protocol(name: str) -> str:
    """The listener protocol a user's spelling means (``AMQP091`` is ``amqp``)."""
    lowered = name.lower()
    return _PROTOCOL_ALIASES.get(lowered, lowered)


async def port_listener(request: Request) -> Response:
    text = path_name(request, "port")
    try:
        port = int(text)
    except ValueError:
        raise bad_request("Invalid port") from None
    ports = [p for _protocol, p in listener_protocols(server_of(request))]
    if port in ports:
        return _ok(port=port)
    return _failed("No active listener", missing=port, ports=ports)


async def protocol_listener(request: Request) -> Response:
    protocol = normalize_protocol(path_name(request, "protocol"))
    protocols = [name for name, _port in listener_protocols(server_of(request))]
    if protocol in protocols:
        return _ok(protocol=protocol)
    return _failed("No active listener", missing=protocol, protocols=protocols)


async def virtual_hosts(request: Request) -> Response:
    # Every vhost runs inside this one process: none can be down while the API answers.
    return _ok()


async def single_node(request: Request) -> Response:
    return _ok(reason="single node cluster")


async def certificate_expiration(request: Request) -> Response:
    """No listener of RapidMQ uses TLS, so no certificate can be about to expire."""
    try:
        within = int(path_name(request, "within"))
    except ValueError:
        raise bad_request("Invalid expiration value.") from None
    if within < 0:
        raise bad_request("Invalid expiration value.")
    if path_name(request, "unit") not in _TIME_UNITS:
        raise bad_request("Time unit not recognised. Supported units: days, weeks, months, years.")
    return _ok()


async def aliveness_test(request: Request) -> Response:
    """Declare ``aliveness-test``, publish to it, get the message back, as RabbitMQ does.

    It runs as a client would, through a core connection that opens and closes
    inside this one call, so it never shows among the connections.
    """
    vhost = path_name(request, "vhost")
    require_vhost(request, vhost)
    with internal_session(request, vhost) as session:
        session.declare_queue(ALIVENESS_QUEUE)
        session.publish(Message("", ALIVENESS_QUEUE, ALIVENESS_BODY))
        got = session.get(ALIVENESS_QUEUE, no_ack=True)
    if got is None or got.message.body != ALIVENESS_BODY:
        return respond({"status": "failed", "reason": "aliveness test failed"}, 500)
    return respond({"status": "ok"})


ROUTES: list[BaseRoute] = [
    Route("/api/health/checks/alarms", alarms, methods=["GET"]),
    Route("/api/health/checks/local-alarms", local_alarms, methods=["GET"]),
    Route("/api/health/checks/port-listener/{port}", port_listener, methods=["GET"]),
    Route("/api/health/checks/protocol-listener/{protocol}", protocol_listener, methods=["GET"]),
    Route("/api/health/checks/virtual-hosts", virtual_hosts, methods=["GET"]),
    Route("/api/health/checks/node-is-quorum-critical", single_node, methods=["GET"]),
    Route("/api/health/checks/node-is-mirror-sync-critical", single_node, methods=["GET"]),
    Route(
        "/api/health/checks/certificate-expiration/{within}/{unit}",
        certificate_expiration,
        methods=["GET"],
    ),
    Route("/api/aliveness-test/{vhost}", aliveness_test, methods=["GET"]),
]
