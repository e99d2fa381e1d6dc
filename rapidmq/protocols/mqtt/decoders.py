"""Decoders of the MQTT packets the parse loop does not decode inline.

``MQTTParser`` (``codec.py``) decodes PUBLISH and the two-octet PUBACK itself,
because they are most of the traffic; every other packet comes here once the
parser has its fixed header, checked its reserved flags and knows the
connection's protocol level.  Each decoder takes ``(kind, data, start, end,
level)``, where ``data[start:end]`` is the packet's body, and either returns the
whole packet or raises the ``MQTTProtocolError`` whose reason code the
specification names.  CONNECT has its own entry point, ``decode_connect``: it is
the packet that sets the level the others are read at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rapidmq.protocols.mqtt.errors import (
    MalformedPacket,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
from rapidmq.protocols.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from rapidmq.protocols.mqtt.properties import (
    WILL,
    decode_properties,
    read_binary,
    read_string,
    read_u16,
)

__all__ = ["DECODERS", "decode_connect"]

_PROTOCOLS = {("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)}


def _packet_id(data: bytes, index: int, end: int, kind: int) -> int:
    packet_id, index = read_u16(data, index, end)
    if packet_id == 0:
        raise ProtocolViolation(f"{PacketType(kind).name} with packet identifier 0")
    return packet_id


def _no_more(index: int, end: int, kind: int) -> None:
    if index != end:
        raise MalformedPacket(f"{PacketType(kind).name} has {end - index} unexpected octets")


def decode_connect(first: int, data: bytes, start: int, end: int) -> Connect:
    """CONNECT, outside ``DECODERS``: it comes before any level is known and sets it."""
    if first & 0x0F:
        raise MalformedPacket(f"CONNECT with reserved flags 0x{first & 15:X}")
    name, index = read_string(data, start, end)
    if index >= end:
        raise MalformedPacket("CONNECT ends before its protocol level")
    level = data[index]
    if (name, level) not in _PROTOCOLS:
        known = name in ("MQTT", "MQIsdp")
        raise UnsupportedProtocolVersion(
            f"unsupported protocol {name!r} level {level}", level if known else None
        )
    if index + 4 > end:
        raise MalformedPacket("CONNECT ends before its keep alive")
    flags = data[index + 1]
    keep_alive = (data[index + 2] << 8) | data[index + 3]
    index += 4
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag is set")
    will_qos = (flags >> 3) & 3
    if will_qos == 3:
        raise MalformedPacket("CONNECT with will QoS 3")
    if not flags & 0x04 and (will_qos or flags & 0x20):
        raise ProtocolViolation("CONNECT has will QoS or retain without a will")
    if level < 5 and flags & 0x40 and not flags & 0x80:
        raise MalformedPacket("CONNECT has a password without a user name")
    properties = None
    if level == 5:
        properties, index = decode_properties(data, index, end, PacketType.CONNECT)
    client_id, index = read_string(data, index, end)
    will = None
    if flags & 0x04:
        will_properties = None
        if level == 5:
            will_properties, index = decode_properties(data, index, end, WILL)
        topic, index = read_string(data, index, end)
        payload, index = read_binary(data, index, end)
        will = Will(topic, payload, will_qos, bool(flags & 0x20), will_properties)
    username = password = None
    if flags & 0x80:
        username, index = read_string(data, index, end)
    if flags & 0x40:
        password, index = read_binary(data, index, end)
    _no_more(index, end, PacketType.CONNECT)
    return Connect(
        level, client_id, bool(flags & 0x02), keep_alive, username, password, will, properties, name
    )


def _decode_connack(kind: int, data: bytes, start: int, end: int, level: int) -> ConnAck:
    if start + 2 > end:
        raise MalformedPacket("CONNACK shorter than two octets")
    flags, code = data[start], data[start + 1]
    if level == 3:
        flags = 0  # "reserved, not used" in 3.1
    elif flags & 0xFE:
        raise MalformedPacket("CONNACK with reserved acknowledge flags set")
    properties, index = None, start + 2
    if level == 5 and index < end:  # a refusal may come in the 3.1.1 form
        properties, index = decode_properties(data, index, end, kind)
    _no_more(index, end, kind)
    return ConnAck(bool(flags), code, properties)


_ACK_TYPES: dict[int, type[PubAck | PubRec | PubRel | PubComp]] = {
    PacketType.PUBACK: PubAck,
    PacketType.PUBREC: PubRec,
    PacketType.PUBREL: PubRel,
    PacketType.PUBCOMP: PubComp,
}


def _decode_ack(
    kind: int, data: bytes, start: int, end: int, level: int
) -> PubAck | PubRec | PubRel | PubComp:
    packet_id = _packet_id(data, start, end, kind)
    if end - start == 2:
        return _ACK_TYPES[kind](packet_id)
    if level < 5:
        raise MalformedPacket(f"{PacketType(kind).name} longer than two octets")
    properties, index = None, start + 3
    if end - start > 3:
        properties, index = decode_properties(data, index, end, kind)
    _no_more(index, end, kind)
    return _ACK_TYPES[kind](packet_id, data[start + 2], properties)


def _decode_subscribe(kind: int, data: bytes, start: int, end: int, level: int) -> Subscribe:
    packet_id = _packet_id(data, start, end, kind)
    properties, index = None, start + 2
    if level == 5:
        properties, index = decode_properties(data, index, end, kind)
        if properties is not None and len(properties.subscription_identifiers) > 1:
            raise ProtocolViolation("SUBSCRIBE with more than one subscription identifier")
    subscriptions = []
    while index < end:
        topic_filter, index = read_string(data, index, end)
        if index >= end:
            raise MalformedPacket("SUBSCRIBE topic filter without options")
        options = data[index]
        index += 1
        qos = options & 3
        if level < 5:
            if options & 0xFC or qos == 3:
                raise MalformedPacket(f"SUBSCRIBE options 0x{options:02X} are invalid")
            subscriptions.append(Subscription(topic_filter, qos))
            continue
        if options & 0xC0:
            raise MalformedPacket(f"SUBSCRIBE options 0x{options:02X} set reserved bits")
        if qos == 3 or options >> 4 == 3:
            raise ProtocolViolation(f"SUBSCRIBE options 0x{options:02X} are invalid")
        subscriptions.append(
            Subscription(topic_filter, qos, bool(options & 4), bool(options & 8), options >> 4)
        )
    if not subscriptions:
        raise ProtocolViolation("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _decode_unsubscribe(kind: int, data: bytes, start: int, end: int, level: int) -> Unsubscribe:
    packet_id = _packet_id(data, start, end, kind)
    properties, index = None, start + 2
    if level == 5:
        properties, index = decode_properties(data, index, end, kind)
    filters = []
    while index < end:
        topic_filter, index = read_string(data, index, end)
        filters.append(topic_filter)
    if not filters:
        raise ProtocolViolation("UNSUBSCRIBE without topic filters")
    return Unsubscribe(packet_id, tuple(filters), properties)


def _decode_suback(kind: int, data: bytes, start: int, end: int, level: int) -> SubAck:
    packet_id = _packet_id(data, start, end, kind)
    properties, index = None, start + 2
    if level == 5:
        properties, index = decode_properties(data, index, end, kind)
    if index >= end:
        raise ProtocolViolation("SUBACK without reason codes")
    return SubAck(packet_id, tuple(data[index:end]), properties)


def _decode_unsuback(kind: int, data: bytes, start: int, end: int, level: int) -> UnsubAck:
    packet_id = _packet_id(data, start, end, kind)
    if level < 5:
        _no_more(start + 2, end, kind)
        return UnsubAck(packet_id)
    properties, index = decode_properties(data, start + 2, end, kind)
    if index >= end:
        raise ProtocolViolation("UNSUBACK without reason codes")
    return UnsubAck(packet_id, tuple(data[index:end]), properties)


def _decode_empty(kind: int, data: bytes, start: int, end: int, level: int) -> Packet:
    _no_more(start, end, kind)
    return PingReq() if kind == PacketType.PINGREQ else PingResp()


def _decode_reason(kind: int, data: bytes, start: int, end: int, level: int) -> Packet:
    """DISCONNECT and AUTH: reason code and properties, both optional."""
    record = Disconnect if kind == PacketType.DISCONNECT else Auth
    if start == end:
        return record()
    if level < 5:
        _no_more(start, end, kind)
    properties, index = None, start + 1
    if end - start > 1:
        properties, index = decode_properties(data, index, end, kind)
    _no_more(index, end, kind)
    return record(data[start], properties)


# Keyed by packet type; the parser has checked the fixed header's flags already.
DECODERS: dict[int, Callable[[int, bytes, int, int, int], Any]] = {
    PacketType.CONNACK: _decode_connack,
    PacketType.PUBACK: _decode_ack,
    PacketType.PUBREC: _decode_ack,
    PacketType.PUBREL: _decode_ack,
    PacketType.PUBCOMP: _decode_ack,
    PacketType.SUBSCRIBE: _decode_subscribe,
    PacketType.SUBACK: _decode_suback,
    PacketType.UNSUBSCRIBE: _decode_unsubscribe,
    PacketType.UNSUBACK: _decode_unsuback,
    PacketType.PINGREQ: _decode_empty,
    PacketType.PINGRESP: _decode_empty,
    PacketType.DISCONNECT: _decode_reason,
    PacketType.AUTH: _decode_reason,
}
