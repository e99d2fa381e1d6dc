"""The protocol-neutral message record.

A ``Message`` is created once by the front end that received it and then shared,
unchanged, by every queue it is routed to.  Nothing in the core mutates one: a
change (dead-lettering adds ``x-death``) makes a new ``Message`` with
``dataclasses.replace`` / :meth:`Message.evolve`.

The records are plain slotted classes rather than frozen dataclasses because a
frozen ``__init__`` costs about a microsecond more per message on the hot path;
immutability is a convention enforced by review and by the tests.

``encoded_properties`` caches the AMQP 0-9-1 wire encoding of ``properties``
(property flags followed by the property values, exactly the bytes that follow
``class-id, weight, body-size`` in a content header frame).  The AMQP front end
reuses it for every delivery so that properties are never re-encoded.  Anything
that changes ``properties`` must drop it (``evolve`` does).

``annotations`` carries facts about a message that are not part of any wire
format, set by the front end that received it and read by the one delivering
it.  It is ``None`` for most messages, so the hot path pays nothing.  Keys in
use:

- ``"origin"``: who published it (MQTT's no-local compares it);
- ``"retain"``: the MQTT RETAIN flag as published (for Retain As Published);
- ``"qos"``: the MQTT QoS it was published with (a subscriber gets at most that);
- ``"user_properties"``: MQTT 5 user properties in their original order;
- ``"published_at"``: ``time.monotonic()`` at publish, so a message expiry
  interval can be forwarded as what remains of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EMPTY_PROPERTIES", "Long", "Message", "Properties"]


class Long(int):
    """An integer header value written as AMQP's 64-bit signed ``long``, whatever its size.

    RabbitMQ types the values it adds to messages (``x-delivery-count``,
    ``x-stream-offset``) as longs, and a client may read them as such (a Java
    client casts to Long); a plain ``int`` is written in the smallest width
    that holds it.
    """

    __slots__ = ()


@dataclass(slots=True)
class Properties:
    """The AMQP basic properties, which are a superset of what MQTT carries.

    ``timestamp`` is seconds since the epoch. ``expiration`` is a string of
    milliseconds, as AMQP carries it. ``headers`` values are plain Python
    values (str, bytes, int, float, bool, None, Decimal, datetime, list, dict).
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


EMPTY_PROPERTIES = Properties()


class Message:
    """One published message: routing annotations, properties and body."""

    __slots__ = (
        "annotations",
        "body",
        "encoded_properties",
        "exchange",
        "properties",
        "routing_key",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties = EMPTY_PROPERTIES,
        encoded_properties: bytes | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.encoded_properties = encoded_properties
        self.annotations = annotations

    @property
    def persistent(self) -> bool:
        """True for delivery-mode 2."""
        return self.properties.delivery_mode == 2

    @property
    def size(self) -> int:
        """Body size in bytes, as counted by ``x-max-length-bytes``."""
        return len(self.body)

    def evolve(self, **changes: Any) -> Message:
        """A copy with ``changes`` applied.

        ``changes`` may name ``exchange``, ``routing_key``, ``body`` or any
        ``Properties`` field; changing a property drops ``encoded_properties``.
        """
        own = {k: changes.pop(k) for k in ("exchange", "routing_key", "body") if k in changes}
        props = self.properties
        encoded = self.encoded_properties
        if changes:
            props = dataclasses.replace(props, **changes)
            encoded = None
        return Message(
            own.get("exchange", self.exchange),
            own.get("routing_key", self.routing_key),
            own.get("body", self.body),
            props,
            encoded,
            self.annotations,
        )

    def __repr__(self) -> str:
        return (
            f"Message(exchange={self.exchange!r}, routing_key={self.routing_key!r}, "
            f"body={self.body[:32]!r}{'...' if len(self.body) > 32 else ''}, "
            f"properties={self.properties!r})"
        )
