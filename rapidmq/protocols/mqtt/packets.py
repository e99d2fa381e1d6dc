"""MQTT control packets as plain records, for protocol levels 3 (3.1), 4 (3.1.1) and 5.

One set of records serves every version: fields a version lacks keep their
defaults (``properties`` is ``None`` below MQTT 5, reason codes are 0).  The
codec (``codec.py``) turns bytes into these records and back; the front end
(``connection.py``) never sees bytes.

``Publish`` is on the hot path, so it and its acknowledgements are slotted but
not frozen; nothing mutates a packet after it is made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "MQTT_3_1",
    "MQTT_3_1_1",
    "MQTT_5",
    "Auth",
    "ConnAck",
    "ConnAckCode311",
    "Connect",
    "Disconnect",
    "MQTTProperties",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "ReasonCode",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
]

MQTT_3_1 = 3
MQTT_3_1_1 = 4
MQTT_5 = 5


class PacketType(enum.IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(enum.IntEnum):
    """MQTT 5 reason codes (several share a value, as in the specification)."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnAckCode311(enum.IntEnum):
    """CONNACK return codes of MQTT 3.1 and 3.1.1."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


@dataclass(slots=True)
class MQTTProperties:
    """Every MQTT 5 property; ``None`` (or empty) means absent.

    ``subscription_identifiers`` may hold several values in a PUBLISH sent to a
    client and at most one in SUBSCRIBE.  ``user_properties`` keeps order and
    duplicates, as the specification requires.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: list[int] = field(default_factory=list)
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] = field(default_factory=list)
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


@dataclass(slots=True, frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: MQTTProperties | None = None  # MQTT 5 will properties


@dataclass(slots=True, frozen=True)
class Connect:
    protocol_level: int  # 3, 4 or 5
    client_id: str
    clean_start: bool = True  # "clean session" before MQTT 5
    keep_alive: int = 0  # seconds
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: MQTTProperties | None = None
    protocol_name: str = "MQTT"  # "MQIsdp" for 3.1


@dataclass(slots=True, frozen=True)
class ConnAck:
    session_present: bool = False
    reason_code: int = 0  # ReasonCode for MQTT 5, ConnAckCode311 before
    properties: MQTTProperties | None = None


@dataclass(slots=True)
class Publish:
    topic: str  # may be "" in MQTT 5 when a topic alias stands in for it
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None  # present exactly when qos > 0
    properties: MQTTProperties | None = None


@dataclass(slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: MQTTProperties | None = None


@dataclass(slots=True)
class PubRec:
    packet_id: int
    reason_code: int = 0
    properties: MQTTProperties | None = None


@dataclass(slots=True)
class PubRel:
    packet_id: int
    reason_code: int = 0
    properties: MQTTProperties | None = None


@dataclass(slots=True)
class PubComp:
    packet_id: int
    reason_code: int = 0
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options."""

    filter: str
    qos: int = 0
    no_local: bool = False  # MQTT 5
    retain_as_published: bool = False  # MQTT 5
    retain_handling: int = 0  # MQTT 5: 0 send, 1 send if new, 2 never


@dataclass(slots=True, frozen=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class SubAck:
    packet_id: int
    reason_codes: tuple[int, ...]  # granted QoS or a failure code (0x80 in 3.1.1)
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class UnsubAck:
    packet_id: int
    reason_codes: tuple[int, ...] = ()  # MQTT 5 only; empty before
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class PingReq:
    pass


@dataclass(slots=True, frozen=True)
class PingResp:
    pass


@dataclass(slots=True, frozen=True)
class Disconnect:
    reason_code: int = 0
    properties: MQTTProperties | None = None


@dataclass(slots=True, frozen=True)
class Auth:
    reason_code: int = 0
    properties: MQTTProperties | None = None


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
    | Auth
)
