"""What the AMQP 0-9-1 frame parser saw: one event per complete command.

Basic.publish (with its content) and basic.ack are the hot commands and come
decoded by hand into their own events; every other method arrives as the pamqp
object in :class:`MethodReceived`.

Events are immutable.  The two hot ones are plain slotted dataclasses rather
than frozen ones for the reason given in ``rapidmq.core.message``: a frozen
``__init__`` costs about half a microsecond more per publish, a third of the
parser's whole budget.  Nothing assigns to their fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from pamqp.base import Frame

from rapidmq.core.message import Properties

__all__ = [
    "AckReceived",
    "Event",
    "HeartbeatReceived",
    "MethodReceived",
    "ProtocolHeaderReceived",
    "PublishReceived",
]


@dataclass(frozen=True, slots=True)
class ProtocolHeaderReceived:
    """The client's ``AMQP\\x00\\x00\\x09\\x01`` protocol header arrived."""


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    """A heartbeat frame arrived on channel 0."""


@dataclass(frozen=True, slots=True)
class MethodReceived:
    """A method other than basic.publish and basic.ack, decoded into a pamqp object.

    Content-bearing methods a client should not send (basic.deliver, basic.get-ok,
    basic.return) arrive here once their content frames are complete; the
    content is dropped.  On channel 0 every method, basic.publish included,
    arrives here.
    """

    channel: int
    method: Frame

    def __eq__(self, other: object) -> bool:
        # pamqp methods have no __eq__; compare their class and fields.
        if not isinstance(other, MethodReceived):
            return NotImplemented
        return (
            self.channel == other.channel
            and type(self.method) is type(other.method)
            and dict(self.method) == dict(other.method)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(slots=True)
class PublishReceived:
    """basic.publish with its content header and body frames, assembled.

    ``encoded_properties`` are the raw property flags and values of the content
    header, to be reused unchanged in every delivery.
    """

    channel: int
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    properties: Properties
    encoded_properties: bytes
    body: bytes


@dataclass(slots=True)
class AckReceived:
    """basic.ack from a client."""

    channel: int
    delivery_tag: int
    multiple: bool


Event = ProtocolHeaderReceived | HeartbeatReceived | MethodReceived | PublishReceived | AckReceived
