"""AMQP 0-9-1 encoders: each appends whole frames to a bytearray ``out``.

The hot commands (deliveries, get-ok, returns, confirms, publishes) are packed
by hand with precompiled structs; they produce exactly the octets pamqp would.
Every other method is a pamqp object, encoded field by field from its
declared AMQP types (:func:`encode_method`) without pamqp's name validation,
which refuses names RabbitMQ accepts (any UTF-8).

``encoded_properties`` are the property flags and values of a content header
(``b"\\x00\\x00"`` for none), kept from the publish and reused unchanged.
Bodies are split into frames of at most ``frame_max - 8`` octets; a
``frame_max`` of 0 means no limit.  An empty body is sent as no body frame.
Strings longer than 255 UTF-8 octets raise ``ValueError``.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp.base import Frame

from rapidmq.protocols.amqp091.frames import METHOD_PLANS
from rapidmq.protocols.amqp091.properties import encode_shortstr, encode_table

__all__ = [
    "HEARTBEAT_FRAME",
    "encode_ack",
    "encode_client_ack",
    "encode_deliver",
    "encode_get_ok",
    "encode_heartbeat",
    "encode_method",
    "encode_nack",
    "encode_publish",
    "encode_return",
]

HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

# Frame header (type, channel, size), class id, method id, first shortstr length.
_METHOD_SHORTSTR = struct.Struct(">BHIHHB")
# Publish: frame header, class, method, ticket, exchange length.
_PUBLISH_HEAD = struct.Struct(">BHIHHHB")
_RETURN_HEAD = struct.Struct(">BHIHHHB")
_GET_OK_HEAD = struct.Struct(">BHIHHQBB")
_U8 = struct.Struct(">B")
_TAG_FLAG_LEN = struct.Struct(">QBB")
_LEN_STR_COUNT = struct.Struct(">I")
# The previous frame's end octet, then a content header frame up to the properties.
_CONTENT_HEAD = struct.Struct(">BBHIHHQ")
# The previous frame's end octet, then a body frame header.
_BODY_HEAD = struct.Struct(">BBHI")
_BODY_HEAD_ONLY = struct.Struct(">BHI")
# A whole basic.ack / basic.nack frame.
_ACK_FRAME = struct.Struct(">BHIHHQBB")
_END = 0xCE
_BASIC = 60


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _too_long(*values: bytes) -> ValueError:
    longest = max(values, key=len)
    return ValueError(f"short string longer than 255 octets: {longest[:40]!r}...")


def _content(
    out: bytearray, channel: int, encoded_properties: bytes, body: bytes, frame_max: int
) -> None:
    """End the method frame just written, then the content header and body frames."""
    size = len(body)
    out += _CONTENT_HEAD.pack(_END, 2, channel, 12 + len(encoded_properties), _BASIC, 0, size)
    out += encoded_properties
    chunk = frame_max - 8 if frame_max else size
    if size <= chunk:
        if size:
            out += _BODY_HEAD.pack(_END, 3, channel, size)
            out += body
        out.append(_END)
        return
    if chunk <= 0:
        raise ValueError(f"frame_max {frame_max} leaves no room for a body")
    out.append(_END)
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        out += _BODY_HEAD_ONLY.pack(3, channel, len(piece))
        out += piece
        out.append(_END)


_ARGUMENT_CODECS = {"octet": struct.Struct(">B"), "short": struct.Struct(">H")}
_ARGUMENT_CODECS.update(long=struct.Struct(">I"), longlong=struct.Struct(">Q"))


def _encode_argument(kind: str, value: Any) -> bytes:
    if kind == "shortstr":
        return encode_shortstr(value or "")
    if kind == "table":
        return encode_table(value or {})
    if kind == "longstr":
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value or b""
        return _LEN_STR_COUNT.pack(len(raw)) + bytes(raw)
    return _ARGUMENT_CODECS[kind].pack(value or 0)


def encode_method(out: bytearray, channel: int, method: Frame) -> None:
    """Any method given as a pamqp object; the same octets as ``pamqp.frame.marshal``."""
    parts = [_LEN_STR_COUNT.pack(method.index)]
    for kind, name in METHOD_PLANS[method.index][1]:
        if kind == "bit":
            parts.append(
                _U8.pack(sum(1 << i for i, bit in enumerate(name) if getattr(method, bit)))
            )
        else:
            parts.append(_encode_argument(kind, getattr(method, name)))
    payload = b"".join(parts)
    out += _BODY_HEAD_ONLY.pack(1, channel, len(payload))
    out += payload
    out.append(_END)


def _fit(raw: bytes) -> bytes:
    """``raw`` cut to the 255 bytes of a shortstr, at a UTF-8 character boundary.

    An MQTT topic (up to 64 KiB) or an exchange named through the management API
    can be longer than AMQP can carry; the delivery goes out with the name cut
    rather than not at all (docs/compatibility.md).
    """
    if len(raw) <= 255:
        return raw
    return raw[:255].decode("utf-8", "ignore").encode("utf-8")


def encode_deliver(
    out: bytearray,
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    encoded_properties: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """basic.deliver with its content header and body frames."""
    # The encodes are inlined: this runs once per delivered message.
    tag = consumer_tag.encode("utf-8", "surrogateescape")
    ex = exchange.encode("utf-8", "surrogateescape")
    rk = routing_key.encode("utf-8", "surrogateescape")
    if (len(tag) | len(ex) | len(rk)) > 255:
        ex, rk = _fit(ex), _fit(rk)
        if len(tag) > 255:
            raise _too_long(tag)
    size = 16 + len(tag) + len(ex) + len(rk)
    out += _METHOD_SHORTSTR.pack(1, channel, size, _BASIC, 60, len(tag))
    out += tag
    out += _TAG_FLAG_LEN.pack(delivery_tag, redelivered, len(ex))
    out += ex
    out.append(len(rk))
    out += rk
    _content(out, channel, encoded_properties, body, frame_max)


def encode_get_ok(
    out: bytearray,
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    message_count: int,
    encoded_properties: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """basic.get-ok with its content header and body frames."""
    ex = _fit(_utf8(exchange))
    rk = _fit(_utf8(routing_key))
    size = 19 + len(ex) + len(rk)
    out += _GET_OK_HEAD.pack(1, channel, size, _BASIC, 71, delivery_tag, redelivered, len(ex))
    out += ex
    out.append(len(rk))
    out += rk
    out += _LEN_STR_COUNT.pack(message_count)
    _content(out, channel, encoded_properties, body, frame_max)


def encode_return(
    out: bytearray,
    channel: int,
    reply_code: int,
    reply_text: str,
    exchange: str,
    routing_key: str,
    encoded_properties: bytes,
    body: bytes,
    frame_max: int,
) -> None:
    """basic.return with its content header and body frames."""
    text = _fit(_utf8(reply_text))
    ex = _fit(_utf8(exchange))
    rk = _fit(_utf8(routing_key))
    size = 9 + len(text) + len(ex) + len(rk)
    out += _RETURN_HEAD.pack(1, channel, size, _BASIC, 50, reply_code, len(text))
    out += text
    out.append(len(ex))
    out += ex
    out.append(len(rk))
    out += rk
    _content(out, channel, encoded_properties, body, frame_max)


def encode_publish(
    out: bytearray,
    channel: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    encoded_properties: bytes,
    body: bytes,
    frame_max: int,
    immediate: bool = False,
) -> None:
    """basic.publish with its content, as a client sends it."""
    ex = _utf8(exchange)
    rk = _utf8(routing_key)
    if (len(ex) | len(rk)) > 255:
        raise _too_long(ex, rk)
    size = 9 + len(ex) + len(rk)
    out += _PUBLISH_HEAD.pack(1, channel, size, _BASIC, 40, 0, len(ex))
    out += ex
    out.append(len(rk))
    out += rk
    out.append(mandatory | immediate << 1)
    _content(out, channel, encoded_properties, body, frame_max)


def encode_ack(out: bytearray, channel: int, delivery_tag: int, multiple: bool) -> None:
    """basic.ack: a publisher confirm from the broker, or a client's acknowledgement."""
    out += _ACK_FRAME.pack(1, channel, 13, _BASIC, 80, delivery_tag, multiple, _END)


encode_client_ack = encode_ack


def encode_nack(
    out: bytearray, channel: int, delivery_tag: int, multiple: bool, requeue: bool = False
) -> None:
    """basic.nack (a negative publisher confirm)."""
    bits = multiple | requeue << 1
    out += _ACK_FRAME.pack(1, channel, 13, _BASIC, 120, delivery_tag, bits, _END)


def encode_heartbeat(out: bytearray) -> None:
    """A heartbeat frame on channel 0."""
    out += HEARTBEAT_FRAME
