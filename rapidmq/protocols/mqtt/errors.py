"""Errors raised by the MQTT codec and topic checks.

    RapidMQError
    └── MQTTProtocolError          bad bytes from the peer: reason_code says why
        ├── MalformedPacket        0x81: the bytes cannot be parsed as the specification says
        ├── ProtocolViolation      0x82: parsed, but breaks a rule (packet id 0, duplicate property)
        ├── PacketTooLarge         0x95: over the parser's max_packet_size
        ├── UnsupportedProtocolVersion  0x84: CONNECT names a protocol RapidMQ does not speak
        ├── InvalidTopic           0x90: a topic name breaks the topic rules
        └── InvalidTopicFilter     0x8F: a topic filter breaks the filter rules

The parser never raises ``InvalidTopic``/``InvalidTopicFilter``: topic rules are
checked by the front end with :mod:`rapidmq.protocols.mqtt.topics`, so that it
can answer with a PUBACK/SUBACK reason code where MQTT 5 allows one.
"""

from __future__ import annotations

from typing import Any

from rapidmq.errors import RapidMQError
from rapidmq.protocols.mqtt.packets import ReasonCode

__all__ = [
    "InvalidTopic",
    "InvalidTopicFilter",
    "MQTTProtocolError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolViolation",
    "UnsupportedProtocolVersion",
]


class MQTTProtocolError(RapidMQError):
    """The peer's bytes break MQTT; the connection must close.

    Attributes:
        reason_code: the MQTT 5 reason code for the DISCONNECT (or CONNACK).
        text: what was wrong, for the log and the reason string.
        packets: packets parsed from the same ``receive_data`` call before the
            bad one; handle them before closing.
    """

    def __init__(self, reason_code: int, text: str) -> None:
        super().__init__(text)
        self.reason_code = reason_code
        self.text = text
        self.packets: list[Any] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(0x{self.reason_code:02X}, {self.text!r})"


class MalformedPacket(MQTTProtocolError):
    """0x81: the packet cannot be parsed (bad lengths, flags, UTF-8, property types)."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.MALFORMED_PACKET, text)


class ProtocolViolation(MQTTProtocolError):
    """0x82: the packet parses but breaks a rule of the specification."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.PROTOCOL_ERROR, text)


class PacketTooLarge(MQTTProtocolError):
    """0x95: the packet is larger than the parser's ``max_packet_size``."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.PACKET_TOO_LARGE, text)


class UnsupportedProtocolVersion(MQTTProtocolError):
    """0x84: CONNECT asks for a protocol name or level RapidMQ does not speak.

    Attributes:
        connect_level: the protocol level octet of the CONNECT when the protocol
            name was ``MQTT`` or ``MQIsdp`` (answer CONNACK with the 3.1.1 code
            0x01 and close, as Mosquitto does), ``None`` when the name is
            unknown (close without a CONNACK).
    """

    def __init__(self, text: str, connect_level: int | None) -> None:
        super().__init__(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION, text)
        self.connect_level = connect_level


class InvalidTopic(MQTTProtocolError):
    """0x90: a topic name is empty, has a wildcard or NUL, or is too long."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.TOPIC_NAME_INVALID, text)


class InvalidTopicFilter(MQTTProtocolError):
    """0x8F: a topic filter has a misplaced wildcard, a NUL, or is empty."""

    def __init__(self, text: str) -> None:
        super().__init__(ReasonCode.TOPIC_FILTER_INVALID, text)
