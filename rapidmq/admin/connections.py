"""Connections, channels and consumers, in the shapes of RabbitMQ's management API.

Nothing here is kept between requests: every request walks the server's open
sockets (:meth:`Server.protocol_connections`) and reads what the protocol
handlers and their core sessions hold right now.  That costs one pass over the
connections per request, which keeps the broker free of any bookkeeping done
for the benefit of the API (ARCHITECTURE.md: the admin reads, it never slows
the broker).

AMQP channels are the handler's ``channels``; an MQTT connection has one core
session, shown as channel 1, as RabbitMQ 3.10 shows the channel its MQTT
plugin opens for each client.  Consumers are those of each channel's session,
so MQTT subscriptions appear as consumers of the session's queue.

Visibility follows RabbitMQ: monitoring and administrator users see every
connection; a management user sees only connections opened as themselves, and
only an administrator (or the owner) may close one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq.admin.auth import (
    can_see_all,
    current_user,
    not_authorised,
    require_vhost,
    server_of,
)
from rapidmq.admin.listing import list_response
from rapidmq.admin.rates import Figures
from rapidmq.admin.util import no_content, not_found, path_name, respond
from rapidmq.auth.users import User
from rapidmq.protocols.amqp091.channel import Channel, ChannelState
from rapidmq.protocols.amqp091.connection import AMQPConnection
from rapidmq.protocols.mqtt.connection import MQTTConnection

if TYPE_CHECKING:
    from rapidmq.core.consumer import Consumer
    from rapidmq.core.session import Session
    from rapidmq.server import Server
    from rapidmq.transport.tcp import SocketConnection

__all__ = ["CLOSE_REASON", "ROUTES", "sample_connections"]

log = logging.getLogger("rapidmq.admin")

#: What RabbitMQ tells a client closed from the management API without X-Reason.
CLOSE_REASON = "Closed via management plugin"
#: RabbitMQ's reason for refusing access to someone else's connection or channel.
_NOT_YOURS = "User not authorised to access object"

#: ``message_stats`` of a channel: API name → core session counter.
CHANNEL_STATS = {
    "publish": "published",
    "deliver_get": "delivered",
    "ack": "acknowledged",
    "drop_unroutable": "unroutable",
    "reject": "rejected",
}
_MQTT_VERSIONS = {3: "3.1", 4: "3.1.1", 5: "5.0"}
#: Channel counter name (as ``Session.statistics()`` names it) → Session attribute.
_SESSION_COUNTERS = {
    "published": "published",
    "delivered": "delivered",
    "acknowledged": "acked",
    "unroutable": "unroutable",
    "rejected": "rejected",
}


@dataclass(slots=True)
class _Conn:
    """One open client connection, as the API sees it during one request."""

    name: str
    socket: SocketConnection
    handler: AMQPConnection | MQTTConnection
    user: str
    vhost: str


@dataclass(slots=True)
class _Chan:
    """One channel: an AMQP channel, or the core session of an MQTT connection."""

    conn: _Conn
    number: int
    session: Session
    amqp: Channel | None

    @property
    def name(self) -> str:
        return f"{self.conn.name} ({self.number})"


@dataclass(slots=True)
class _Consumer:
    chan: _Chan
    consumer: Consumer


# -- gathering -------------------------------------------------------------------------------


def connection_name(socket: SocketConnection) -> str:
    """RabbitMQ's name of a connection: ``"127.0.0.1:54321 -> 127.0.0.1:5672"``."""
    peer, local = socket.peer, socket.local
    return f"{peer[0]}:{peer[1]} -> {local[0]}:{local[1]}"


def _connections(server: Server) -> list[_Conn]:
    """Every client connection past its handshake (a login still in progress is not shown)."""
    out: list[_Conn] = []
    for socket, handler in server.protocol_connections():
        if handler.closed:
            continue
        if isinstance(handler, AMQPConnection):
            if handler.core is None:  # before connection.open, or already closing
                continue
        elif isinstance(handler, MQTTConnection):
            if handler.session is None or not handler.vhost:
                continue
        else:
            continue
        out.append(_Conn(connection_name(socket), socket, handler, handler.user, handler.vhost))
    return out


def sample_connections(server: Server) -> Figures:
    """The counters the rate sampler keeps per connection (octets) and channel (messages)."""
    figures: Figures = {}
    for conn in _connections(server):
        socket = conn.socket
        figures["connection", conn.name] = {
            "recv_oct": socket.received_bytes,
            "send_oct": socket.sent_bytes,
        }
        for chan in _channels(conn):
            session = chan.session
            figures["channel", chan.name] = {
                counter: int(getattr(session, _SESSION_COUNTERS[counter]))
                for counter in CHANNEL_STATS.values()
            }
    return figures


def _channels(conn: _Conn) -> list[_Chan]:
    handler = conn.handler
    if isinstance(handler, AMQPConnection):
        return [
            _Chan(conn, number, channel.session, channel)
            for number, channel in sorted(handler.channels.items())
            if channel.state is ChannelState.OPEN
        ]
    return [_Chan(conn, 1, handler.session.core_session, None)]


def _consumers(chan: _Chan) -> list[_Consumer]:
    return [_Consumer(chan, consumer) for consumer in list(chan.session.consumers.values())]


def _may_see(user: User, conn: _Conn) -> bool:
    return can_see_all(user) or conn.user == user.name


def _visible_connections(request: Request, vhost: str | None = None) -> list[_Conn]:
    user = current_user(request)
    return [
        conn
        for conn in _connections(server_of(request))
        if _may_see(user, conn) and (vhost is None or conn.vhost == vhost)
    ]


def _visible_channels(request: Request, vhost: str | None = None) -> list[_Chan]:
    return [chan for conn in _visible_connections(request, vhost) for chan in _channels(conn)]


def _find_connection(request: Request) -> _Conn:
    """The connection named in the path; 404 if gone, 401 if not the user's to see."""
    name = path_name(request, "name")
    for conn in _connections(server_of(request)):
        if conn.name == name:
            if not _may_see(current_user(request), conn):
                raise not_authorised(_NOT_YOURS)
            return conn
    raise not_found()


# -- rendering -------------------------------------------------------------------------------


def _protocol(conn: _Conn) -> str:
    handler = conn.handler
    if isinstance(handler, AMQPConnection):
        return "AMQP 0-9-1"
    version = _MQTT_VERSIONS.get(handler.level, str(handler.level))
    # A WebSocket connection carries its MQTT handler inside the socket's own handler.
    web = conn.socket.handler is not handler
    return f"Web MQTT {version}" if web else f"MQTT {version}"


def _state(server: Server, conn: _Conn) -> str:
    """``running``; ``blocked`` once an alarm stopped reading a publisher, ``blocking``
    while an alarm is on and the connection would be blocked when it next publishes."""
    handler = conn.handler
    if isinstance(handler, AMQPConnection) and handler.state.value == "closing":
        return "closing"
    if handler.reading_paused:
        return "blocked"
    if server.alarms.active:
        return "blocking"
    return "running"


def _render_connection(server: Server, conn: _Conn) -> dict[str, Any]:
    handler = conn.handler
    socket = conn.socket
    traffic = server.rates.stats(
        ("connection", conn.name),
        {"recv_oct": socket.received_bytes, "send_oct": socket.sent_bytes},
        {"recv_oct": "recv_oct", "send_oct": "send_oct"},
    )
    body: dict[str, Any] = {
        "name": conn.name,
        "node": server.node_name,
        "vhost": conn.vhost,
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "protocol": _protocol(conn),
        "type": "network",
        "host": socket.local[0],
        "port": socket.local[1],
        "peer_host": socket.peer[0],
        "peer_port": socket.peer[1],
        "state": _state(server, conn),
        "connected_at": socket.connected_at,
        **traffic,
        "send_pend": len(handler.out),
        "ssl": False,
        "ssl_protocol": None,
        "ssl_key_exchange": None,
        "ssl_cipher": None,
        "ssl_hash": None,
        "peer_cert_subject": None,
        "peer_cert_issuer": None,
        "peer_cert_validity": None,
    }
    if socket.tls is not None:
        body.update(socket.tls.connection_info())
    if isinstance(handler, AMQPConnection):
        properties = handler.client_properties
        body.update(
            channels=sum(1 for ch in handler.channels.values() if ch.state is ChannelState.OPEN),
            channel_max=handler.channel_max,
            frame_max=handler.frame_max,
            timeout=handler.heartbeat_s,
            auth_mechanism=handler.auth_mechanism,
            client_properties=properties,
        )
        provided = properties.get("connection_name")
        if provided:
            body["user_provided_name"] = provided
    else:
        body.update(
            channels=1,
            channel_max=1,
            frame_max=0,
            timeout=handler.keep_alive_s,
            auth_mechanism="none",
            client_properties=(
                {"client_id": handler.client_id}
                if handler.sent_username is None
                # The name the device sent; "user" is the default user it acts as.
                else {"client_id": handler.client_id, "username": handler.sent_username}
            ),
        )
    return body


def _unconfirmed(channel: Channel | None) -> int:
    return 0 if channel is None else channel.unconfirmed


def _mode(channel: Channel | None) -> str:
    return "plain" if channel is None else channel.mode


def _render_channel(server: Server, chan: _Chan) -> dict[str, Any]:
    conn = chan.conn
    session = chan.session
    stats = session.statistics()
    mode = _mode(chan.amqp)
    return {
        "name": chan.name,
        "number": chan.number,
        "node": server.node_name,
        "vhost": conn.vhost,
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "connection_details": {
            "name": conn.name,
            "peer_host": conn.socket.peer[0],
            "peer_port": conn.socket.peer[1],
        },
        "consumer_count": stats["consumers"],
        "messages_unacknowledged": stats["messages_unacknowledged"],
        "messages_unconfirmed": _unconfirmed(chan.amqp),
        "prefetch_count": stats["prefetch_count"],
        "global_prefetch_count": stats["global_prefetch_count"],
        "confirm": mode == "confirm",
        "transactional": mode == "tx",
        "state": "running",
        "message_stats": server.rates.stats(("channel", chan.name), stats, CHANNEL_STATS),
    }


def _channel_details(server: Server, chan: _Chan) -> dict[str, Any]:
    conn = chan.conn
    return {
        "connection_name": conn.name,
        "name": chan.name,
        "node": server.node_name,
        "number": chan.number,
        "peer_host": conn.socket.peer[0],
        "peer_port": conn.socket.peer[1],
        "user": conn.user,
    }


def _render_consumer(server: Server, item: _Consumer) -> dict[str, Any]:
    consumer = item.consumer
    return {
        "consumer_tag": consumer.tag,
        "queue": {"name": consumer.queue.name, "vhost": item.chan.conn.vhost},
        "channel_details": _channel_details(server, item.chan),
        "ack_required": not consumer.no_ack,
        "prefetch_count": consumer.prefetch,
        "exclusive": consumer.exclusive,
        "active": True,
        "activity_status": "up",
        "arguments": consumer.arguments,
    }


_CONNECTION_SORTS: dict[str, Callable[[_Conn], Any]] = {
    "name": lambda c: c.name,
    "vhost": lambda c: c.vhost,
    "user": lambda c: c.user,
    "peer_host": lambda c: c.socket.peer[0],
    "peer_port": lambda c: c.socket.peer[1],
    "connected_at": lambda c: c.socket.connected_at,
    "recv_oct": lambda c: c.socket.received_bytes,
    "send_oct": lambda c: c.socket.sent_bytes,
}
_CHANNEL_SORTS: dict[str, Callable[[_Chan], Any]] = {
    "name": lambda c: c.name,
    "number": lambda c: c.number,
    "vhost": lambda c: c.conn.vhost,
    "user": lambda c: c.conn.user,
    "consumer_count": lambda c: len(c.session.consumers),
    "prefetch_count": lambda c: c.session.consumer_prefetch,
    "global_prefetch_count": lambda c: c.session.global_prefetch,
}
_CONSUMER_SORTS: dict[str, Callable[[_Consumer], Any]] = {
    "consumer_tag": lambda c: c.consumer.tag,
    "queue.name": lambda c: c.consumer.queue.name,
    "channel_details.name": lambda c: c.chan.name,
    "prefetch_count": lambda c: c.consumer.prefetch,
}


def _connection_list(request: Request, items: list[_Conn]) -> Response:
    server = server_of(request)
    return list_response(
        request,
        items,
        render=lambda conn: _render_connection(server, conn),
        name=lambda conn: conn.name,
        sort_keys=_CONNECTION_SORTS,
        default_sort=lambda conn: conn.name,
    )


def _channel_list(request: Request, items: list[_Chan]) -> Response:
    server = server_of(request)
    return list_response(
        request,
        items,
        render=lambda chan: _render_channel(server, chan),
        name=lambda chan: chan.name,
        sort_keys=_CHANNEL_SORTS,
        default_sort=lambda chan: (chan.conn.name, chan.number),
    )


def _consumer_list(request: Request, items: list[_Consumer]) -> Response:
    server = server_of(request)
    return list_response(
        request,
        items,
        render=lambda item: _render_consumer(server, item),
        name=lambda item: item.consumer.tag,
        sort_keys=_CONSUMER_SORTS,
        default_sort=lambda item: (item.chan.conn.name, item.chan.number, item.consumer.tag),
    )


# -- endpoints -------------------------------------------------------------------------------


async def list_connections(request: Request) -> Response:
    return _connection_list(request, _visible_connections(request))


async def vhost_connections(request: Request) -> Response:
    vhost = path_name(request, "vhost")
    require_vhost(request, vhost)
    return _connection_list(request, _visible_connections(request, vhost))


async def get_connection(request: Request) -> Response:
    conn = _find_connection(request)
    return respond(_render_connection(server_of(request), conn))


async def delete_connection(request: Request) -> Response:
    """Close a client connection, as RabbitMQ's management close does.

    An AMQP client gets ``connection.close`` 320 with the reason (the
    ``X-Reason`` header, or RabbitMQ's default); an MQTT client is disconnected.
    """
    conn = _find_connection(request)
    user = current_user(request)
    if "administrator" not in user.tags and conn.user != user.name:
        raise not_authorised(_NOT_YOURS)
    reason = request.headers.get("x-reason") or CLOSE_REASON
    log.info(
        "closing connection %s (user '%s', vhost '%s') on request of user '%s': %s",
        conn.name,
        conn.user,
        conn.vhost,
        user.name,
        reason,
    )
    handler = conn.handler
    if isinstance(handler, AMQPConnection):
        # Not shutdown(): that says "broker forced connection closure", the text of a
        # stopping broker; a management close carries the reason alone.
        handler.force_close(f"CONNECTION_FORCED - {reason}", reason)
    elif isinstance(handler, MQTTConnection):
        handler.disconnect_by_admin(reason)
    else:
        conn.socket.shutdown()
    return no_content()


async def connection_channels(request: Request) -> Response:
    conn = _find_connection(request)
    return _channel_list(request, _channels(conn))


async def list_channels(request: Request) -> Response:
    return _channel_list(request, _visible_channels(request))


async def vhost_channels(request: Request) -> Response:
    vhost = path_name(request, "vhost")
    require_vhost(request, vhost)
    return _channel_list(request, _visible_channels(request, vhost))


async def get_channel(request: Request) -> Response:
    name = path_name(request, "name")
    server = server_of(request)
    user = current_user(request)
    for conn in _connections(server):
        if not name.startswith(conn.name):
            continue
        for chan in _channels(conn):
            if chan.name == name:
                if not _may_see(user, conn):
                    raise not_authorised(_NOT_YOURS)
                body = _render_channel(server, chan)
                body["consumer_details"] = [
                    _render_consumer(server, item) for item in _consumers(chan)
                ]
                body["deliveries"] = []
                body["publishes"] = []
                return respond(body)
    raise not_found()


async def list_consumers(request: Request) -> Response:
    items = [item for chan in _visible_channels(request) for item in _consumers(chan)]
    return _consumer_list(request, items)


async def vhost_consumers(request: Request) -> Response:
    vhost = path_name(request, "vhost")
    require_vhost(request, vhost)
    items = [item for chan in _visible_channels(request, vhost) for item in _consumers(chan)]
    return _consumer_list(request, items)


ROUTES: list[BaseRoute] = [
    Route("/api/connections", list_connections, methods=["GET"]),
    Route("/api/connections/{name}", get_connection, methods=["GET"]),
    Route("/api/connections/{name}", delete_connection, methods=["DELETE"]),
    Route("/api/connections/{name}/channels", connection_channels, methods=["GET"]),
    Route("/api/vhosts/{vhost}/connections", vhost_connections, methods=["GET"]),
    Route("/api/vhosts/{vhost}/channels", vhost_channels, methods=["GET"]),
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels/{name}", get_channel, methods=["GET"]),
    Route("/api/consumers", list_consumers, methods=["GET"]),
    Route("/api/consumers/{vhost}", vhost_consumers, methods=["GET"]),
]
