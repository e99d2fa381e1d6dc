"""Encoders of every MQTT packet, at protocol levels 3, 4 and 5: packets in, bytes out.

PUBLISH and the acknowledgements are the hot path: the front end writes them
with ``encode_publish`` / ``encode_publish_v5`` / ``encode_ack`` straight into
the connection's output buffer, from pre-encoded topic and property bytes, with
no intermediate record.  ``encode`` and ``encode_into`` take a record of
``packets.py``; PUBLISH goes through the same hot-path functions, every other
type through one encoder in ``_ENCODERS`` that returns the first octet and the
body, so the remaining length is written once, in front of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from rapidmq.protocols.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MQTTProperties,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from rapidmq.protocols.mqtt.properties import (
    WILL,
    encode_properties,
    encode_variable_byte_integer,
    write_binary,
    write_string,
)

__all__ = ["encode", "encode_ack", "encode_into", "encode_publish", "encode_publish_v5"]

_U16 = struct.Struct(">H")
_HEAD2 = struct.Struct(">BBH")  # first octet, one-octet remaining length, topic length
_ACK = struct.Struct(">BBH")  # first octet, remaining length 2, packet id


# ---------------------------------------------------------------- hot-path encoders


def encode_publish(
    out: bytearray,
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: bytes = b"",
) -> None:
    """Append a PUBLISH for MQTT 3.1/3.1.1, or MQTT 5 when ``properties`` is not empty.

    An empty ``properties`` writes no property block at all, which is right for
    3.1 and 3.1.1 only: for MQTT 5 call :func:`encode_publish_v5`, which always
    writes the block (a lone 0 when empty).

    Args:
        out: the connection's output buffer.
        topic: the topic name, already UTF-8 (empty with a topic alias).
        payload: the application message.
        qos, retain, dup: the fixed-header flags.
        packet_id: required when ``qos`` > 0, ignored otherwise.
        properties: an MQTT 5 property block without its length prefix.
    """
    if properties:
        encode_publish_v5(out, topic, payload, qos, retain, dup, packet_id, properties)
        return
    first = 0x30 | (qos << 1) | retain | (dup << 3)
    topic_length = len(topic)
    if qos:
        if not packet_id:
            raise ValueError("PUBLISH with QoS > 0 needs a packet identifier")
        length = topic_length + 4 + len(payload)
        if length < 128:
            out += _HEAD2.pack(first, length, topic_length)
        else:
            out.append(first)
            out += encode_variable_byte_integer(length)
            out += _U16.pack(topic_length)
        out += topic
        out += _U16.pack(packet_id)
    else:
        length = topic_length + 2 + len(payload)
        if length < 128:
            out += _HEAD2.pack(first, length, topic_length)
        else:
            out.append(first)
            out += encode_variable_byte_integer(length)
            out += _U16.pack(topic_length)
        out += topic
    out += payload


def encode_publish_v5(
    out: bytearray,
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: bytes = b"",
) -> None:
    """Append an MQTT 5 PUBLISH; ``properties`` is the block without its length prefix.

    Arguments are those of :func:`encode_publish`; pass ``b""`` for no properties.
    """
    first = 0x30 | (qos << 1) | retain | (dup << 3)
    block = encode_variable_byte_integer(len(properties)) if properties else b"\x00"
    length = 2 + len(topic) + len(block) + len(properties) + len(payload)
    if qos:
        if not packet_id:
            raise ValueError("PUBLISH with QoS > 0 needs a packet identifier")
        length += 2
    out.append(first)
    out += encode_variable_byte_integer(length)
    out += _U16.pack(len(topic))
    out += topic
    if qos:
        out += _U16.pack(packet_id)
    out += block
    out += properties
    out += payload


def encode_ack(
    out: bytearray,
    packet_type: int,
    packet_id: int,
    reason_code: int = 0,
    properties: bytes = b"",
) -> None:
    """Append a PUBACK, PUBREC, PUBREL or PUBCOMP.

    With reason code 0 and no properties this is the two-octet form, valid at
    every level.  A reason code or ``properties`` (a block without its length
    prefix) are MQTT 5 only.
    """
    first = (packet_type << 4) | (2 if packet_type == PacketType.PUBREL else 0)
    if not reason_code and not properties:
        out += _ACK.pack(first, 2, packet_id)
    elif not properties:
        out += _ACK.pack(first, 3, packet_id)
        out.append(reason_code)
    else:
        block = encode_variable_byte_integer(len(properties))
        out.append(first)
        out += encode_variable_byte_integer(3 + len(block) + len(properties))
        out += _U16.pack(packet_id)
        out.append(reason_code)
        out += block
        out += properties


# ---------------------------------------------------------------- every packet


def encode(packet: Packet, protocol_level: int) -> bytes:
    """The wire bytes of ``packet`` at ``protocol_level`` (CONNECT uses its own level)."""
    out = bytearray()
    encode_into(out, packet, protocol_level)
    return bytes(out)


def encode_into(out: bytearray, packet: Packet, protocol_level: int) -> None:
    """Append the wire bytes of ``packet`` (either direction) to ``out``.

    Properties are written at level 5 and ignored below it.

    Raises:
        ValueError: the packet cannot be encoded (a property its type may not
            carry, a QoS > 0 PUBLISH without packet identifier, a value out of range).
    """
    if type(packet) is Publish:
        topic = packet.topic.encode()
        packet_id = packet.packet_id if packet.qos else None
        if protocol_level == 5:
            props = encode_properties(packet.properties, PacketType.PUBLISH)
            encode_publish_v5(
                out, topic, packet.payload, packet.qos, packet.retain, packet.dup, packet_id, props
            )
        else:
            encode_publish(
                out, topic, packet.payload, packet.qos, packet.retain, packet.dup, packet_id
            )
        return
    first, body = _ENCODERS[type(packet)](packet, protocol_level)
    out.append(first)
    out += encode_variable_byte_integer(len(body))
    out += body


def _block(out: bytearray, properties: MQTTProperties | None, kind: int) -> None:
    block = encode_properties(properties, kind)
    out += encode_variable_byte_integer(len(block))
    out += block


def _encode_connect(packet: Any, _level: int) -> tuple[int, bytearray]:
    level = packet.protocol_level
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = bytearray()
    write_string(body, packet.protocol_name)
    body += bytes((level, flags))
    body += _U16.pack(packet.keep_alive)
    if level == 5:
        _block(body, packet.properties, PacketType.CONNECT)
    write_string(body, packet.client_id)
    if will is not None:
        if level == 5:
            _block(body, will.properties, WILL)
        write_string(body, will.topic)
        write_binary(body, will.payload)
    if packet.username is not None:
        write_string(body, packet.username)
    if packet.password is not None:
        write_binary(body, packet.password)
    return 0x10, body


def _encode_connack(packet: Any, level: int) -> tuple[int, bytearray]:
    body = bytearray((1 if packet.session_present and level > 3 else 0, packet.reason_code))
    if level == 5:
        _block(body, packet.properties, PacketType.CONNACK)
    return 0x20, body


def _reason_and_properties(body: bytearray, packet: Any, kind: int, level: int) -> None:
    """Append MQTT 5's optional reason code and properties (acks, DISCONNECT, AUTH)."""
    if level == 5:
        block = encode_properties(packet.properties, kind)
        if packet.reason_code or block:
            body.append(packet.reason_code)
        if block:
            body += encode_variable_byte_integer(len(block))
            body += block


def _encode_ack(packet: Any, level: int) -> tuple[int, bytearray]:
    kind = _KINDS[type(packet)]
    body = bytearray(_U16.pack(packet.packet_id))
    _reason_and_properties(body, packet, kind, level)
    return (kind << 4) | (2 if kind == PacketType.PUBREL else 0), body


def _encode_subscribe(packet: Any, level: int) -> tuple[int, bytearray]:
    body = bytearray(_U16.pack(packet.packet_id))
    if level == 5:
        _block(body, packet.properties, PacketType.SUBSCRIBE)
    for sub in packet.subscriptions:
        write_string(body, sub.filter)
        options = sub.qos
        if level == 5:
            options |= (sub.no_local << 2) | (sub.retain_as_published << 3)
            options |= sub.retain_handling << 4
        body.append(options)
    return 0x82, body


def _encode_unsubscribe(packet: Any, level: int) -> tuple[int, bytearray]:
    body = bytearray(_U16.pack(packet.packet_id))
    if level == 5:
        _block(body, packet.properties, PacketType.UNSUBSCRIBE)
    for topic_filter in packet.filters:
        write_string(body, topic_filter)
    return 0xA2, body


def _encode_suback(packet: Any, level: int) -> tuple[int, bytearray]:
    kind = _KINDS[type(packet)]
    body = bytearray(_U16.pack(packet.packet_id))
    if level == 5:
        _block(body, packet.properties, kind)
    if level == 5 or kind == PacketType.SUBACK:
        body += bytes(packet.reason_codes)
    return kind << 4, body


def _encode_reason(packet: Any, level: int) -> tuple[int, bytearray]:
    kind = _KINDS[type(packet)]
    body = bytearray()
    _reason_and_properties(body, packet, kind, level)
    return kind << 4, body


def _encode_empty(packet: Any, level: int) -> tuple[int, bytearray]:
    return _KINDS[type(packet)] << 4, bytearray()


_KINDS: dict[type[Any], int] = {
    PubAck: PacketType.PUBACK,
    PubRec: PacketType.PUBREC,
    PubRel: PacketType.PUBREL,
    PubComp: PacketType.PUBCOMP,
    SubAck: PacketType.SUBACK,
    UnsubAck: PacketType.UNSUBACK,
    PingReq: PacketType.PINGREQ,
    PingResp: PacketType.PINGRESP,
    Disconnect: PacketType.DISCONNECT,
    Auth: PacketType.AUTH,
}
_ENCODERS: dict[type[Any], Callable[[Any, int], tuple[int, bytearray]]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    PubAck: _encode_ack,
    PubRec: _encode_ack,
    PubRel: _encode_ack,
    PubComp: _encode_ack,
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _encode_suback,
    PingReq: _encode_empty,
    PingResp: _encode_empty,
    Disconnect: _encode_reason,
    Auth: _encode_reason,
}
