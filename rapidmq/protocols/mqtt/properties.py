"""MQTT wire primitives and the MQTT 5 property block.

The primitives (variable byte integer, UTF-8 string, binary data) are shared by
the codec and the property block.  Readers take ``(data, offset, end)`` over a
``bytes`` object and return ``(value, next_offset)``; they raise
``MalformedPacket`` when a value runs past ``end`` or is not of its type.

A property block is a sequence of ``identifier value`` pairs.  Which
identifiers a packet may carry is the table ``ALLOWED`` (MQTT 5.0, table 2-4);
an identifier a packet may not carry is a Malformed Packet (section 2.2.2.2),
a repeated one or a value out of its range is a Protocol Error.  Will
properties are keyed by the pseudo packet type ``WILL``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from rapidmq.protocols.mqtt.errors import MalformedPacket, ProtocolViolation
from rapidmq.protocols.mqtt.packets import MQTTProperties, PacketType

__all__ = [
    "ALLOWED",
    "MAX_VARIABLE_BYTE_INTEGER",
    "WILL",
    "PropertyId",
    "decode_properties",
    "decode_variable_byte_integer",
    "encode_properties",
    "encode_variable_byte_integer",
    "read_binary",
    "read_string",
    "write_binary",
    "write_string",
]

WILL = 0  # pseudo packet type: the will properties inside CONNECT
MAX_VARIABLE_BYTE_INTEGER = 268_435_455

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class PropertyId(enum.IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


# ---------------------------------------------------------------- primitives


def encode_variable_byte_integer(value: int) -> bytes:
    """The 1 to 4 octet encoding of ``value`` (0 to 268,435,455)."""
    if value < 128:
        if value < 0:
            raise ValueError(f"variable byte integer out of range: {value}")
        return bytes((value,))
    if value > MAX_VARIABLE_BYTE_INTEGER:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_variable_byte_integer(data: bytes, offset: int = 0, end: int = -1) -> tuple[int, int]:
    """Read a variable byte integer at ``offset``; returns ``(value, next_offset)``.

    Raises:
        MalformedPacket: it runs past ``end`` (default: the end of ``data``) or
            past four octets.
    """
    if end < 0:
        end = len(data)
    value = 0
    for shift in (0, 7, 14, 21):
        if offset >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 128:
            return value, offset
    raise MalformedPacket("variable byte integer longer than four octets")


def read_u16(data: bytes, offset: int, end: int) -> tuple[int, int]:
    if offset + 2 > end:
        raise MalformedPacket("two-octet integer runs past the end of the packet")
    return (data[offset] << 8) | data[offset + 1], offset + 2


def read_binary(data: bytes, offset: int, end: int) -> tuple[bytes, int]:
    """Read two-octet-length-prefixed binary data."""
    if offset + 2 > end:
        raise MalformedPacket("length runs past the end of the packet")
    stop = offset + 2 + ((data[offset] << 8) | data[offset + 1])
    if stop > end:
        raise MalformedPacket("data runs past the end of the packet")
    return data[offset + 2 : stop], stop


def read_string(data: bytes, offset: int, end: int) -> tuple[str, int]:
    """Read a UTF-8 string: well-formed, no surrogates, no U+0000."""
    if offset + 2 > end:
        raise MalformedPacket("string length runs past the end of the packet")
    stop = offset + 2 + ((data[offset] << 8) | data[offset + 1])
    if stop > end:
        raise MalformedPacket("string runs past the end of the packet")
    try:
        text = data[offset + 2 : stop].decode()
    except UnicodeDecodeError:
        raise MalformedPacket("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise MalformedPacket("string contains U+0000")
    return text, stop


def write_binary(out: bytearray, value: bytes) -> None:
    """Append two-octet-length-prefixed binary data."""
    if len(value) > 0xFFFF:
        raise ValueError(f"binary data of {len(value)} octets is longer than 65,535")
    out += _U16.pack(len(value))
    out += value


def write_string(out: bytearray, value: str) -> None:
    """Append a UTF-8 string with its two-octet length."""
    write_binary(out, value.encode())


# ---------------------------------------------------------------- property table

_BYTE, _TWO, _FOUR, _VBI, _STR, _BIN, _PAIR = range(7)
_ALL = frozenset(PacketType) - {PacketType.PINGREQ, PacketType.PINGRESP} | {WILL}
_ACKS = frozenset({PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP})
_P = PacketType
# identifier: (field name, type, allowed in, valid values or None)
_TABLE: dict[int, tuple[str, int, frozenset[int], tuple[int, ...] | None]] = {
    0x01: ("payload_format_indicator", _BYTE, frozenset({_P.PUBLISH, WILL}), (0, 1)),
    0x02: ("message_expiry_interval", _FOUR, frozenset({_P.PUBLISH, WILL}), None),
    0x03: ("content_type", _STR, frozenset({_P.PUBLISH, WILL}), None),
    0x08: ("response_topic", _STR, frozenset({_P.PUBLISH, WILL}), None),
    0x09: ("correlation_data", _BIN, frozenset({_P.PUBLISH, WILL}), None),
    0x0B: ("subscription_identifiers", _VBI, frozenset({_P.PUBLISH, _P.SUBSCRIBE}), None),
    0x11: (
        "session_expiry_interval",
        _FOUR,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
        None,
    ),
    0x12: ("assigned_client_identifier", _STR, frozenset({_P.CONNACK}), None),
    0x13: ("server_keep_alive", _TWO, frozenset({_P.CONNACK}), None),
    0x15: ("authentication_method", _STR, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}), None),
    0x16: ("authentication_data", _BIN, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}), None),
    0x17: ("request_problem_information", _BYTE, frozenset({_P.CONNECT}), (0, 1)),
    0x18: ("will_delay_interval", _FOUR, frozenset({WILL}), None),
    0x19: ("request_response_information", _BYTE, frozenset({_P.CONNECT}), (0, 1)),
    0x1A: ("response_information", _STR, frozenset({_P.CONNACK}), None),
    0x1C: ("server_reference", _STR, frozenset({_P.CONNACK, _P.DISCONNECT}), None),
    0x1F: (
        "reason_string",
        _STR,
        _ACKS | {_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH},
        None,
    ),
    0x21: ("receive_maximum", _TWO, frozenset({_P.CONNECT, _P.CONNACK}), None),
    0x22: ("topic_alias_maximum", _TWO, frozenset({_P.CONNECT, _P.CONNACK}), None),
    0x23: ("topic_alias", _TWO, frozenset({_P.PUBLISH}), None),
    0x24: ("maximum_qos", _BYTE, frozenset({_P.CONNACK}), (0, 1)),
    0x25: ("retain_available", _BYTE, frozenset({_P.CONNACK}), (0, 1)),
    0x26: ("user_properties", _PAIR, _ALL, None),
    0x27: ("maximum_packet_size", _FOUR, frozenset({_P.CONNECT, _P.CONNACK}), None),
    0x28: ("wildcard_subscription_available", _BYTE, frozenset({_P.CONNACK}), (0, 1)),
    0x29: ("subscription_identifier_available", _BYTE, frozenset({_P.CONNACK}), (0, 1)),
    0x2A: ("shared_subscription_available", _BYTE, frozenset({_P.CONNACK}), (0, 1)),
}

ALLOWED: dict[int, frozenset[str]] = {
    kind: frozenset(name for name, _t, where, _v in _TABLE.values() if kind in where)
    for kind in _ALL
}
"""Packet type (or ``WILL``) -> the ``MQTTProperties`` fields it may carry."""

_NONZERO = frozenset({0x21, 0x27})  # receive maximum, maximum packet size


def _kind_name(packet_type: int) -> str:
    return PacketType(packet_type).name if packet_type != WILL else "will properties"


def _read_value(kind: int, data: bytes, offset: int, end: int) -> tuple[Any, int]:
    if kind == _STR:
        return read_string(data, offset, end)
    if kind == _BYTE:
        if offset >= end:
            raise MalformedPacket("property value runs past the end of the block")
        return data[offset], offset + 1
    if kind == _FOUR:
        if offset + 4 > end:
            raise MalformedPacket("property value runs past the end of the block")
        return _U32.unpack_from(data, offset)[0], offset + 4
    if kind == _TWO:
        return read_u16(data, offset, end)
    if kind == _VBI:
        return decode_variable_byte_integer(data, offset, end)
    if kind == _BIN:
        return read_binary(data, offset, end)
    key, offset = read_string(data, offset, end)
    value, offset = read_string(data, offset, end)
    return (key, value), offset


def decode_properties(
    data: bytes, offset: int, end: int, packet_type: int
) -> tuple[MQTTProperties | None, int]:
    """Read a property block (with its length) at ``offset``.

    Returns:
        ``(properties, next_offset)``; ``properties`` is ``None`` for an empty block.

    Raises:
        MalformedPacket: bad length, unknown or misplaced identifier, bad value type.
        ProtocolViolation: a repeated property or a value out of its range.
    """
    length, offset = decode_variable_byte_integer(data, offset, end)
    if length == 0:
        return None, offset
    stop = offset + length
    if stop > end:
        raise MalformedPacket("property block runs past the end of the packet")
    props = MQTTProperties()
    seen: set[int] = set()
    while offset < stop:
        ident = data[offset]
        entry = _TABLE.get(ident)
        if entry is None or packet_type not in entry[2]:
            where = _kind_name(packet_type)
            raise MalformedPacket(f"property 0x{ident:02X} is not allowed in {where}")
        name, kind, _where, valid = entry
        value, offset = _read_value(kind, data, offset + 1, stop)
        if kind == _PAIR:
            props.user_properties.append(value)
            continue
        if ident in seen and not (ident == 0x0B and packet_type == PacketType.PUBLISH):
            raise ProtocolViolation(f"property {name} appears more than once")
        seen.add(ident)
        if valid is not None and value not in valid:
            raise ProtocolViolation(f"property {name} has the invalid value {value}")
        if ident in _NONZERO and value == 0:
            raise ProtocolViolation(f"property {name} is 0")
        if ident == 0x0B:
            if value == 0:
                raise ProtocolViolation("subscription identifier is 0")
            props.subscription_identifiers.append(value)
        else:
            setattr(props, name, value)
    return props, offset


_WRITERS: dict[int, Callable[[bytearray, Any], None]] = {
    _BYTE: lambda out, v: out.append(v),
    _TWO: lambda out, v: out.extend(_U16.pack(v)),
    _FOUR: lambda out, v: out.extend(_U32.pack(v)),
    _VBI: lambda out, v: out.extend(encode_variable_byte_integer(v)),
    _STR: write_string,
    _BIN: write_binary,
}


def encode_properties(props: MQTTProperties | None, packet_type: int) -> bytes:
    """The property block of ``props`` for ``packet_type`` (or ``WILL``), without its length.

    Raises:
        ValueError: ``props`` holds a property that ``packet_type`` may not carry.
    """
    if props is None:
        return b""
    out = bytearray()
    allowed = ALLOWED[packet_type]
    for ident, (name, kind, _where, _valid) in _TABLE.items():
        value = getattr(props, name)
        if value is None or (kind in (_PAIR, _VBI) and not value):
            continue
        if name not in allowed:
            raise ValueError(f"{name} is not allowed in {_kind_name(packet_type)}")
        if kind == _PAIR:
            for key, item in value:
                out.append(ident)
                write_string(out, key)
                write_string(out, item)
        elif kind == _VBI:
            for item in value:
                out.append(ident)
                out += encode_variable_byte_integer(item)
        else:
            out.append(ident)
            _WRITERS[kind](out, value)
    return bytes(out)
