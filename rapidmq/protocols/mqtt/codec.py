"""The MQTT codec for protocol levels 3 (3.1), 4 (3.1.1) and 5: bytes in, packets out, no I/O.

Theory of operation: every packet is ``first-octet remaining-length body``,
where the first octet holds the packet type and flags and the remaining length
is a variable byte integer of at most four octets.  ``MQTTParser`` keeps the
unparsed tail of its input and knows, once the fixed header is in, how many
octets the next packet needs, so a large packet fed in small pieces is not
re-scanned on every read.  A server-side parser starts without a level::

    protocol_level None --CONNECT--> protocol_level 3, 4 or 5 (later packets use it)
    protocol_level None --anything else--> ProtocolViolation
    protocol_level set  --CONNECT--> ProtocolViolation (a second CONNECT)

A client-side parser (``MQTTParser(protocol_level=...)``) decodes from the first
octet at the given level.  PUBLISH, the one packet on the hot path, is decoded
and encoded by hand; the rest go through one decoder per packet type in
``_DECODERS``.  Errors carry the MQTT 5 reason code the specification names
(0x81 Malformed Packet, 0x82 Protocol Error, 0x95 Packet Too Large, 0x84
Unsupported Protocol Version); where it names none, Mosquitto's choice is kept.

Decoded packets have ``properties`` ``None`` when the block is empty, at every
level; the encoders accept ``None`` or an empty ``MQTTProperties`` alike.
Topic names and filters are not checked here (see ``topics.py``): the front end
does, so it can answer with a reason code where MQTT 5 has one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from rapidmq.protocols.mqtt.errors import (
    MalformedPacket,
    MQTTProtocolError,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
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
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from rapidmq.protocols.mqtt.properties import (
    WILL,
    decode_properties,
    decode_variable_byte_integer,
    encode_properties,
    encode_variable_byte_integer,
    read_binary,
    read_string,
    read_u16,
    write_binary,
    write_string,
)

__all__ = [
    "MQTTParser",
    "decode_variable_byte_integer",
    "encode",
    "encode_ack",
    "encode_into",
    "encode_properties",
    "encode_publish",
    "encode_publish_v5",
    "encode_variable_byte_integer",
]

MAX_PACKET_SIZE = 268_435_455 + 5
_U16 = struct.Struct(">H")
_HEAD2 = struct.Struct(">BBH")  # first octet, one-octet remaining length, topic length
_ACK = struct.Struct(">BBH")  # first octet, remaining length 2, packet id
_REQUIRED_FLAGS: dict[int, int] = {
    PacketType.PUBREL: 2,
    PacketType.SUBSCRIBE: 2,
    PacketType.UNSUBSCRIBE: 2,
}
_CONNECT, _PUBLISH, _PUBACK = 1, 3, 0x40
_PROTOCOLS = {("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)}


class MQTTParser:
    """Incremental MQTT packet parser for one connection.

    Attributes:
        protocol_level: ``None`` until CONNECT is parsed (server side), then 3, 4 or 5.
        max_packet_size: total packet size (fixed header included) above which
            ``receive_data`` raises ``PacketTooLarge``; may be changed at any time.
    """

    __slots__ = ("_buffer", "_error", "_need", "_server", "max_packet_size", "protocol_level")

    def __init__(
        self, *, max_packet_size: int = 268_435_455, protocol_level: int | None = None
    ) -> None:
        """Create a parser.

        Args:
            max_packet_size: the largest packet accepted, in octets.
            protocol_level: give it to decode a server's packets (client side);
                leave it ``None`` on the server side, where the first packet must be
                CONNECT and sets the level.
        """
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self._server = protocol_level is None
        self._buffer = bytearray()
        self._need = 0
        self._error: MQTTProtocolError | None = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Feed octets; returns the packets completed by them, in order.

        Raises:
            MQTTProtocolError: the input breaks MQTT; ``.packets`` holds those parsed
                before the bad one.  Every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            data = bytes(buffer)
            buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        packets: list[Packet] = []
        try:
            pos = self._parse(data, packets)
        except MQTTProtocolError as err:
            err.packets = packets
            self._error = err
            raise
        if pos < len(data):
            buffer += memoryview(data)[pos:]
        return packets

    def _parse(self, data: bytes, packets: list[Packet]) -> int:
        # PUBLISH and the two-octet PUBACK are decoded inline: they are most of
        # the traffic, and a call per packet costs a fifth of the time.
        size = len(data)
        pos = 0
        level = self.protocol_level
        max_size = self.max_packet_size
        append = packets.append
        while pos < size:
            first = data[pos]
            if level is None and first >> 4 != _CONNECT:
                raise ProtocolViolation(f"first packet is type {first >> 4}, not CONNECT")
            if pos + 1 < size and data[pos + 1] < 128:
                index = pos + 2
                end = index + data[pos + 1]
            else:
                index, end = self._remaining_length(data, pos)
                if index < 0:
                    return pos
            if end - pos > max_size:
                raise PacketTooLarge(
                    f"packet of {end - pos} octets is over the maximum of {max_size}"
                )
            if end > size:
                self._need = end - pos
                return pos
            kind = first >> 4
            if kind == _PUBLISH and level is not None:
                qos = (first >> 1) & 3
                if qos == 3 or (qos == 0 and first & 8):
                    raise MalformedPacket(f"PUBLISH with QoS {qos} and DUP {first >> 3 & 1}")
                if index + 2 > end:
                    raise MalformedPacket("PUBLISH topic runs past the end of the packet")
                stop = index + 2 + ((data[index] << 8) | data[index + 1])
                if stop > end:
                    raise MalformedPacket("PUBLISH topic runs past the end of the packet")
                try:
                    topic = data[index + 2 : stop].decode()
                except UnicodeDecodeError:
                    raise MalformedPacket("PUBLISH topic is not well-formed UTF-8") from None
                if "\x00" in topic:
                    raise MalformedPacket("PUBLISH topic contains U+0000")
                packet_id = None
                if qos:
                    if stop + 2 > end:
                        raise MalformedPacket("PUBLISH packet identifier runs past the end")
                    packet_id = (data[stop] << 8) | data[stop + 1]
                    if not packet_id:
                        raise ProtocolViolation("PUBLISH with packet identifier 0")
                    stop += 2
                properties = None
                if level == 5:
                    if stop < end and not data[stop]:
                        stop += 1
                    else:
                        properties, stop = decode_properties(data, stop, end, _PUBLISH)
                append(
                    Publish(
                        topic,
                        data[stop:end],
                        qos,
                        bool(first & 1),
                        bool(first & 8),
                        packet_id,
                        properties,
                    )
                )
            elif first == _PUBACK and end - index == 2:
                packet_id = (data[index] << 8) | data[index + 1]
                if not packet_id:
                    raise ProtocolViolation("PUBACK with packet identifier 0")
                append(PubAck(packet_id))
            else:
                append(self._decode_other(first, data, index, end))
                level = self.protocol_level
            pos = end
        self._need = 0
        return pos

    def _remaining_length(self, data: bytes, pos: int) -> tuple[int, int]:
        """``(body start, packet end)`` of the packet at ``pos``, or ``(-1, -1)`` if cut short."""
        index = pos + 1
        length = 0
        for shift in (0, 7, 14, 21):
            if index >= len(data):
                self._need = index - pos + 1
                return -1, -1
            octet = data[index]
            index += 1
            length |= (octet & 0x7F) << shift
            if octet < 128:
                return index, index + length
        raise MalformedPacket("remaining length longer than four octets")

    def _decode_other(self, first: int, data: bytes, start: int, end: int) -> Packet:
        kind = first >> 4
        if kind == PacketType.CONNECT:
            if self._server and self.protocol_level is not None:
                raise ProtocolViolation("second CONNECT on the connection")
            connect = _decode_connect(first, data, start, end)
            self.protocol_level = connect.protocol_level
            return connect
        level = self.protocol_level
        assert level is not None
        if kind == 0 or (kind == PacketType.AUTH and level < 5):
            raise MalformedPacket(f"reserved packet type {kind}")
        if first & 0x0F != _REQUIRED_FLAGS.get(kind, 0):
            raise MalformedPacket(f"{PacketType(kind).name} with reserved flags 0x{first & 15:X}")
        packet: Packet = _DECODERS[kind](kind, data, start, end, level)
        return packet


# ---------------------------------------------------------------- decoders


def _packet_id(data: bytes, index: int, end: int, kind: int) -> int:
    packet_id, index = read_u16(data, index, end)
    if packet_id == 0:
        raise ProtocolViolation(f"{PacketType(kind).name} with packet identifier 0")
    return packet_id


def _no_more(index: int, end: int, kind: int) -> None:
    if index != end:
        raise MalformedPacket(f"{PacketType(kind).name} has {end - index} unexpected octets")


def _decode_connect(first: int, data: bytes, start: int, end: int) -> Connect:
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


_DECODERS: dict[int, Callable[[int, bytes, int, int, int], Any]] = {
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
