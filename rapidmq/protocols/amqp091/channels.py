"""The channels of one AMQP connection: opening, closing, and the errors that close one.

Theory of operation
-------------------
Channel-0 methods belong to the connection; every other method names a
channel.  ``channel.open`` makes a :class:`~rapidmq.protocols.amqp091.channel.Channel`
within the negotiated channel_max and the user's channel limit, ``channel.close``
ends one at once, and ``close-ok`` completes a close the broker began; a
channel the broker is closing discards everything else, as the specification
says.  Every other method goes to its channel.  A core error raised there
closes the channel (``channel.close``) when its scope is the channel, or the
whole connection otherwise, with RabbitMQ's codes from
:data:`~rapidmq.protocols.amqp091.errors.REPLY_CODES`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from rapidmq.core.errors import CoreError, ResourceLimitExceeded
from rapidmq.protocols.amqp091.channel import Channel, ChannelState
from rapidmq.protocols.amqp091.errors import REPLY_CODES

if TYPE_CHECKING:
    from rapidmq.protocols.amqp091.connection import AMQPConnection

__all__ = ["channel_error", "channel_method", "frame_on_bad_channel", "method_ids"]

log = logging.getLogger("rapidmq.channel")

EXPECTED_CHANNEL_OPEN = "CHANNEL_ERROR - expected 'channel.open'"


def method_ids(method: Any) -> tuple[int, int]:
    """The class and method ids of a pamqp method, as reply texts carry them."""
    index: int = method.index
    return index >> 16, index & 0xFFFF


def channel_method(conn: AMQPConnection, channel_id: int, method: Any) -> None:
    """Act on ``method``, received on channel ``channel_id`` of an open connection."""
    channel = conn.channels.get(channel_id)
    kind = type(method)
    if kind is spec.Channel.Open:
        _open(conn, channel_id, channel)
    elif channel is None:
        conn.connection_error(504, EXPECTED_CHANNEL_OPEN, *method_ids(method))
    elif channel.state is ChannelState.CLOSING:
        if kind is spec.Channel.CloseOk:
            del conn.channels[channel_id]
        elif kind is spec.Channel.Close:
            conn.send(channel_id, spec.Channel.CloseOk())
    elif kind is spec.Channel.Close:
        channel.close_session()
        conn.confirms_pending.discard(channel)
        del conn.channels[channel_id]
        conn.send(channel_id, spec.Channel.CloseOk())
    elif kind is not spec.Channel.CloseOk:
        try:
            channel.handle_method(method)
        except CoreError as err:
            channel_error(conn, channel, err, *method_ids(method))


def _open(conn: AMQPConnection, channel_id: int, channel: Channel | None) -> None:
    if channel is not None:
        conn.connection_error(504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    elif len(conn.channels) >= conn.channel_max:
        # RabbitMQ counts open channels against channel_max (a higher channel
        # number is fine while fewer are open), and says so in this text.
        conn.connection_error(
            530,
            f"NOT_ALLOWED - number of channels opened ({len(conn.channels)}) has "
            f"reached the negotiated channel_max ({conn.channel_max})",
            20,
            10,
        )
    elif (limit := conn.broker.user_channel_limit(conn.user)) is not None:
        conn.connection_error(
            530,
            f"NOT_ALLOWED - number of channels opened for user '{conn.user}' has "
            f"reached the maximum allowed user limit of ({limit})",
            20,
            10,
        )
    else:
        conn.channels[channel_id] = Channel(conn, channel_id)
        conn.send(channel_id, spec.Channel.OpenOk())


def frame_on_bad_channel(
    conn: AMQPConnection, channel_id: int, class_id: int, method_id: int
) -> None:
    """A publish or ack on a channel that is not open."""
    if channel_id in conn.channels:
        return  # a closing channel discards until close-ok
    conn.connection_error(504, EXPECTED_CHANNEL_OPEN, class_id, method_id)


def channel_error(
    conn: AMQPConnection, channel: Channel, err: CoreError, class_id: int, method_id: int
) -> None:
    """Close ``channel`` for ``err``, or the connection when ``err`` is the connection's."""
    code, name = REPLY_CODES.get(type(err), (541, "INTERNAL_ERROR"))
    text = f"{name} - {err.text}"
    if err.scope == "connection" or code >= 500:
        if isinstance(err, ResourceLimitExceeded):
            code, text = 530, f"NOT_ALLOWED - {err.text}"
        conn.connection_error(code, text, class_id, method_id)
        return
    log.warning(
        "channel error on AMQP connection %s (user '%s', vhost '%s'), channel %s: %s",
        conn.peer_name,
        conn.user,
        conn.vhost,
        channel.id,
        text,
        extra={
            "event": "channel.error",
            "protocol": "amqp",
            "user": conn.user,
            "vhost": conn.vhost,
            "client_address": conn.peer_name,
            "channel": channel.id,
            "reply_code": code,
            "class_id": class_id,
            "method_id": method_id,
        },
    )
    channel.flush_confirms()
    conn.confirms_pending.discard(channel)
    channel.close_session()
    channel.state = ChannelState.CLOSING
    method = spec.Channel.Close(
        reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
    )
    conn.send(channel.id, method)
