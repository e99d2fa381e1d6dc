"""MQTT PUBLISH <-> core :class:`~rapidmq.core.message.Message`, as RabbitMQ's MQTT plugin maps it.

An MQTT publish becomes a message on ``amq.topic`` whose routing key is the
topic with ``/`` and ``.`` swapped.  MQTT 5 properties map to AMQP properties:

- user properties <-> ``headers``; a key that repeats becomes a list of its
  values (in order), and a list header becomes the key repeated, so MQTT user
  properties round-trip exactly;
- content type <-> ``content_type``;
- correlation data <-> ``correlation_id`` when it is UTF-8 of at most 255
  bytes, otherwise the header ``x-mqtt-correlation-data`` (bytes);
- response topic <-> ``reply_to`` in routing-key form (``/`` and ``.``
  swapped), so an AMQP responder can publish to ``amq.topic`` with it;
- message expiry interval (s) <-> ``expiration`` (ms string), counted from
  ``annotations["published_at"]`` so only what remains is forwarded;
- payload format indicator 1 <-> the header ``x-mqtt-payload-format`` = 1.

QoS 1 and 2 publishes are persistent (delivery mode 2).  The annotations carry
``origin`` (no-local), ``retain`` (Retain As Published), ``published_at`` and
``qos`` (the published QoS, so QoS 2 survives the trip through a queue), and
``user_properties`` (the MQTT 5 user properties in their original order, which
headers cannot keep when a name repeats).  A
message from an AMQP publisher has no ``qos``: delivery mode 2 counts as QoS 1,
anything else as QoS 0, as in RabbitMQ.
"""

from __future__ import annotations

import math
from typing import Any

from rapidmq.core.message import Message, Properties
from rapidmq.protocols.mqtt.packets import MQTTProperties, Publish
from rapidmq.protocols.mqtt.topics import routing_key_to_topic, topic_to_routing_key

__all__ = [
    "CORRELATION_HEADER",
    "PAYLOAD_FORMAT_HEADER",
    "TOPIC_EXCHANGE",
    "message_qos",
    "message_to_properties",
    "message_topic",
    "publish_to_message",
]

TOPIC_EXCHANGE = "amq.topic"
CORRELATION_HEADER = "x-mqtt-correlation-data"
PAYLOAD_FORMAT_HEADER = "x-mqtt-payload-format"
_INTERNAL_HEADERS = frozenset((CORRELATION_HEADER, PAYLOAD_FORMAT_HEADER))
_TRANSIENT = Properties(delivery_mode=1)
_PERSISTENT = Properties(delivery_mode=2)


def publish_to_message(publish: Publish, topic: str, *, origin: str, now: float) -> Message:
    """The core message for an MQTT PUBLISH to ``topic`` (its alias already resolved).

    Args:
        publish: the packet as received.
        topic: the topic name to route by.
        origin: the publishing session's identity, for no-local.
        now: ``time.monotonic()``, the start of any message expiry.
    """
    props = publish.properties
    headers: dict[str, Any] | None = None
    content_type = correlation_id = reply_to = expiration = None
    if props is not None:
        if props.user_properties:
            headers = {}
            for key, value in props.user_properties:
                old = headers.get(key)
                if old is None:
                    headers[key] = value
                elif isinstance(old, list):
                    old.append(value)
                else:
                    headers[key] = [old, value]
        content_type = props.content_type
        data = props.correlation_data
        if data is not None:
            correlation_id = _utf8_short(data)
            if correlation_id is None:
                headers = headers if headers is not None else {}
                headers[CORRELATION_HEADER] = bytes(data)
        if props.response_topic is not None:
            reply_to = topic_to_routing_key(props.response_topic)
        if props.message_expiry_interval is not None:
            expiration = str(props.message_expiry_interval * 1000)
        if props.payload_format_indicator == 1:
            headers = headers if headers is not None else {}
            headers[PAYLOAD_FORMAT_HEADER] = 1
    if props is None:
        # Properties are immutable by convention, so a bare publish shares one.
        properties = _PERSISTENT if publish.qos else _TRANSIENT
    else:
        properties = Properties(
            content_type=content_type,
            headers=headers,
            delivery_mode=2 if publish.qos else 1,
            correlation_id=correlation_id,
            reply_to=reply_to,
            expiration=expiration,
        )
    annotations: dict[str, Any] = {
        "origin": origin,
        "retain": publish.retain,
        "published_at": now,
        "qos": publish.qos,
    }
    if props is not None and props.user_properties:
        # Headers group repeated names; MQTT subscribers must get the original order.
        annotations["user_properties"] = tuple(props.user_properties)
    return Message(
        TOPIC_EXCHANGE,
        topic_to_routing_key(topic),
        bytes(publish.payload),
        properties,
        None,
        annotations,
    )


def _utf8_short(data: bytes) -> str | None:
    if len(data) > 255:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def message_qos(message: Message) -> int:
    """The QoS a message was published with (AMQP: persistent = 1, else 0)."""
    annotations = message.annotations
    if annotations is not None:
        qos = annotations.get("qos")
        if isinstance(qos, int):
            return qos
    return 1 if message.properties.delivery_mode == 2 else 0


def message_topic(message: Message) -> str:
    """The MQTT topic of a message routed by topic (routing key with '.' and '/' swapped)."""
    return routing_key_to_topic(message.routing_key)


def message_to_properties(message: Message, now: float) -> MQTTProperties | None:
    """The MQTT 5 PUBLISH properties for delivering ``message``.

    Returns None when there are none.  A message whose expiry interval has run
    out returns a properties record with ``message_expiry_interval == 0``; the
    caller drops it.  An AMQP ``expiration`` without ``published_at`` is
    forwarded whole, rounded up to seconds.
    """
    p = message.properties
    if (
        p.headers is None
        and p.content_type is None
        and p.correlation_id is None
        and p.reply_to is None
        and p.expiration is None
    ):
        return None
    out = MQTTProperties()
    headers = p.headers
    if headers:
        annotations = message.annotations
        original = None if annotations is None else annotations.get("user_properties")
        user: list[tuple[str, str]] = list(original) if original else []
        from_original = {key for key, _ in user}
        for key, value in headers.items():
            if key in _INTERNAL_HEADERS or key in from_original:
                continue
            if isinstance(value, list):
                user.extend((key, _text(v)) for v in value)
            else:
                user.append((key, _text(value)))
        out.user_properties = user
        data = headers.get(CORRELATION_HEADER)
        if isinstance(data, bytes):
            out.correlation_data = data
        if headers.get(PAYLOAD_FORMAT_HEADER) == 1:
            out.payload_format_indicator = 1
    out.content_type = p.content_type
    if p.correlation_id is not None:
        out.correlation_data = p.correlation_id.encode("utf-8")
    if p.reply_to is not None:
        out.response_topic = routing_key_to_topic(p.reply_to)
    if p.expiration is not None:
        out.message_expiry_interval = _remaining_s(message, p.expiration, now)
    return out


def _remaining_s(message: Message, expiration: str, now: float) -> int:
    try:
        ttl_ms = int(expiration)
    except ValueError:
        return 0
    annotations = message.annotations
    published_at = None if annotations is None else annotations.get("published_at")
    if isinstance(published_at, float | int):
        remaining_s = ttl_ms / 1000.0 - (now - published_at)
        return max(0, math.ceil(remaining_s)) if remaining_s > 0 else 0
    return max(1, math.ceil(ttl_ms / 1000.0)) if ttl_ms > 0 else 0


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
