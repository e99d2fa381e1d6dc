"""AMQP 0-9-1 wire constants: frame types, reply codes, class and method ids."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "BASIC_ACK",
    "BASIC_DELIVER",
    "BASIC_GET_OK",
    "BASIC_NACK",
    "BASIC_PUBLISH",
    "BASIC_RETURN",
    "DEFAULT_FRAME_MAX",
    "FRAME_END",
    "FRAME_HEADER_SIZE",
    "FRAME_MIN_SIZE",
    "FRAME_OVERHEAD",
    "MAX_BODY_SIZE",
    "PROTOCOL_HEADER",
    "ClassId",
    "FrameType",
    "ReplyCode",
]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# RabbitMQ treats the AMQP 0-9 header as 0-9-1 too.
ACCEPTED_PROTOCOL_HEADERS = frozenset({PROTOCOL_HEADER, b"AMQP\x01\x01\x00\x09"})

FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096
DEFAULT_FRAME_MAX = 131072
FRAME_HEADER_SIZE = 7  # type, channel, payload size
FRAME_OVERHEAD = 8  # header plus the frame-end octet
# RabbitMQ's hard cap on one message body (rabbit.hrl MAX_MSG_SIZE, 512 MiB).
MAX_BODY_SIZE = 536870912


class FrameType(IntEnum):
    """The first octet of every frame."""

    METHOD = 1
    HEADER = 2
    BODY = 3
    HEARTBEAT = 8


class ReplyCode(IntEnum):
    """Reply codes with RabbitMQ's names, as they appear in reply texts."""

    REPLY_SUCCESS = 200
    CONTENT_TOO_LARGE = 311
    NO_ROUTE = 312
    NO_CONSUMERS = 313
    CONNECTION_FORCED = 320
    INVALID_PATH = 402
    ACCESS_REFUSED = 403
    NOT_FOUND = 404
    RESOURCE_LOCKED = 405
    PRECONDITION_FAILED = 406
    FRAME_ERROR = 501
    SYNTAX_ERROR = 502
    COMMAND_INVALID = 503
    CHANNEL_ERROR = 504
    UNEXPECTED_FRAME = 505
    RESOURCE_ERROR = 506
    NOT_ALLOWED = 530
    NOT_IMPLEMENTED = 540
    INTERNAL_ERROR = 541


class ClassId(IntEnum):
    """AMQP class ids."""

    CONNECTION = 10
    CHANNEL = 20
    ACCESS = 30
    EXCHANGE = 40
    QUEUE = 50
    BASIC = 60
    CONFIRM = 85
    TX = 90


# Method indexes as pamqp numbers them: class id << 16 | method id.
BASIC_PUBLISH = 0x003C0028
BASIC_RETURN = 0x003C0032
BASIC_DELIVER = 0x003C003C
BASIC_GET_OK = 0x003C0047
BASIC_ACK = 0x003C0050
BASIC_NACK = 0x003C0078

# Methods followed by a content header and body frames.
CONTENT_METHODS = frozenset({BASIC_PUBLISH, BASIC_RETURN, BASIC_DELIVER, BASIC_GET_OK})
