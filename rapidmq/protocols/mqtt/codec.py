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
by hand in the parse loop, as is the two-octet PUBACK; the rest go through one
decoder per packet type in ``decoders.py``.  Encoding, PUBLISH's hand-written
encoders included, is ``encoders.py``; this module re-exports its functions so
that callers import the whole codec from one place.  Errors carry the MQTT 5
reason code the specification names (0x81 Malformed Packet, 0x82 Protocol
Error, 0x95 Packet Too Large, 0x84 Unsupported Protocol Version); where it
names none, Mosquitto's choice is kept.

Decoded packets have ``properties`` ``None`` when the block is empty, at every
level; the encoders accept ``None`` or an empty ``MQTTProperties`` alike.
Topic names and filters are not checked here (see ``topics.py``): the front end
does, so it can answer with a reason code where MQTT 5 has one.
"""

from __future__ import annotations

from rapidmq.protocols.mqtt.decoders import DECODERS, decode_connect
from rapidmq.protocols.mqtt.encoders import (
    encode,
    encode_ack,
    encode_into,
    encode_publish,
    encode_publish_v5,
)
from rapidmq.protocols.mqtt.errors import (
    MalformedPacket,
    MQTTProtocolError,
    PacketTooLarge,
    ProtocolViolation,
)
from rapidmq.protocols.mqtt.packets import Packet, PacketType, PubAck, Publish
from rapidmq.protocols.mqtt.properties import (
    decode_properties,
    decode_variable_byte_integer,
    encode_properties,
    encode_variable_byte_integer,
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
_REQUIRED_FLAGS: dict[int, int] = {
    PacketType.PUBREL: 2,
    PacketType.SUBSCRIBE: 2,
    PacketType.UNSUBSCRIBE: 2,
}
_CONNECT, _PUBLISH, _PUBACK = 1, 3, 0x40


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
            connect = decode_connect(first, data, start, end)
            self.protocol_level = connect.protocol_level
            return connect
        level = self.protocol_level
        assert level is not None
        if kind == 0 or (kind == PacketType.AUTH and level < 5):
            raise MalformedPacket(f"reserved packet type {kind}")
        if first & 0x0F != _REQUIRED_FLAGS.get(kind, 0):
            raise MalformedPacket(f"{PacketType(kind).name} with reserved flags 0x{first & 15:X}")
        packet: Packet = DECODERS[kind](kind, data, start, end, level)
        return packet
