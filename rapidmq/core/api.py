"""The records and protocols that cross the boundary between the core and a front end.

Front ends (AMQP, MQTT, HTTP) see only these names plus ``Broker``,
``CoreConnection`` and ``Session``.  The core calls a front end back only
through a :class:`DeliverySink`, synchronously and without blocking: a delivery
is appended to the connection's output buffer, never awaited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rapidmq.core.message import Message

__all__ = [
    "ClientInfo",
    "DeliverySink",
    "GetResult",
    "NoDeliveries",
    "PublishResult",
    "QueueDeclareResult",
]


class DeliverySink(Protocol):
    """How the core hands messages to one session of a front end."""

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        """Send one delivery to the client. Must not block or raise."""

    def consumer_cancelled(self, consumer_tag: str) -> None:
        """The server cancelled this consumer (its queue was deleted)."""

    def writable(self) -> bool:
        """False while the connection's output buffer is over its high-water mark.

        The core stops delivering to this session's consumers while it is
        False; the front end calls :meth:`Session.resume` once it drains.
        """


class NoDeliveries:
    """The sink of a session that never consumes (publishing wills, the management API)."""

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        return None

    def consumer_cancelled(self, consumer_tag: str) -> None:
        return None

    def writable(self) -> bool:
        return True


@dataclass(slots=True, frozen=True)
class ClientInfo:
    """Who is on the other end of a connection, for statistics and exclusivity."""

    protocol: str  # "amqp091", "mqtt"
    peer: str  # "127.0.0.1:54321"
    name: str = ""  # the client's connection_name / client id
    user: str = ""


@dataclass(slots=True, frozen=True)
class PublishResult:
    """What happened to one publish.

    ``routed`` is False when no queue took the message (mandatory → basic.return).
    ``rejected`` is True when a queue with overflow ``reject-publish`` or
    ``reject-publish-dlx`` refused it (confirm → basic.nack).
    ``batch`` is the message store batch its write went into (None when nothing
    was stored): a confirm waits until that batch is durable.
    """

    routed: bool
    rejected: bool = False
    batch: int | None = None


@dataclass(slots=True, frozen=True)
class QueueDeclareResult:
    name: str
    message_count: int
    consumer_count: int


@dataclass(slots=True, frozen=True)
class GetResult:
    """One message taken by basic.get."""

    delivery_tag: int
    redelivered: bool
    message: Message
    message_count: int  # messages left ready in the queue
