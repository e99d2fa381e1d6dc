"""Every kind of bad input, with the exact MQTT 5 reason code, fed whole and byte by byte."""

from __future__ import annotations

import pytest
from mqtt_codec_strategies import feed

from rapidmq.protocols.mqtt.codec import MQTTParser, encode
from rapidmq.protocols.mqtt.errors import (
    MalformedPacket,
    MQTTProtocolError,
    PacketTooLarge,
    ProtocolViolation,
    UnsupportedProtocolVersion,
)
from rapidmq.protocols.mqtt.packets import Connect, PingReq, PubAck, Publish

MALFORMED, PROTOCOL, UNSUPPORTED, TOO_LARGE = 0x81, 0x82, 0x84, 0x95


def packet(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def s(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def connect_body(level: int, flags: int = 0x02, payload: bytes = b"", props: bytes = b"") -> bytes:
    name = b"MQIsdp" if level == 3 else b"MQTT"
    block = bytes((len(props),)) + props if level == 5 else b""
    return s(name) + bytes((level, flags)) + b"\x00\x3c" + block + (payload or s(b"cid"))


def connected(level: int) -> bytes:
    return packet(0x10, connect_body(level))


def p5(first: int, body: bytes) -> bytes:
    return connected(5) + packet(first, body)


def p4(first: int, body: bytes) -> bytes:
    return connected(4) + packet(first, body)


CASES = {
    # fixed header
    "first packet not CONNECT": (packet(0xC0, b""), PROTOCOL),
    "second CONNECT": (connected(4) + connected(4), PROTOCOL),
    "remaining length over four octets": (connected(4) + b"\x30\xff\xff\xff\xff\x01", MALFORMED),
    "reserved packet type 0": (p4(0x00, b""), MALFORMED),
    "AUTH before MQTT 5": (p4(0xF0, b""), MALFORMED),
    "CONNECT reserved fixed flags": (packet(0x11, connect_body(4)), MALFORMED),
    "PUBREL without flags 0b0010": (p4(0x60, b"\x00\x01"), MALFORMED),
    "SUBSCRIBE without flags 0b0010": (p4(0x80, b"\x00\x01" + s(b"a") + b"\x00"), MALFORMED),
    "UNSUBSCRIBE without flags 0b0010": (p4(0xA0, b"\x00\x01" + s(b"a")), MALFORMED),
    "PUBACK with flags": (p4(0x42, b"\x00\x01"), MALFORMED),
    "PINGREQ with flags": (p4(0xC1, b""), MALFORMED),
    "PINGREQ with a body": (p4(0xC0, b"\x00"), MALFORMED),
    "DISCONNECT with a body in 3.1.1": (p4(0xE0, b"\x00"), MALFORMED),
    # PUBLISH
    "PUBLISH QoS 3": (p4(0x36, s(b"a") + b"\x00\x01"), MALFORMED),
    "PUBLISH QoS 0 with DUP": (p4(0x38, s(b"a")), MALFORMED),
    "PUBLISH packet id 0": (p4(0x32, s(b"a") + b"\x00\x00"), PROTOCOL),
    "PUBLISH topic past the end": (p4(0x30, b"\x00\x05ab"), MALFORMED),
    "PUBLISH without topic length": (p4(0x30, b"\x00"), MALFORMED),
    "PUBLISH QoS 1 without packet id": (p4(0x32, s(b"a") + b"\x00"), MALFORMED),
    "PUBLISH topic invalid UTF-8": (p4(0x30, s(b"a\xff")), MALFORMED),
    "PUBLISH topic with a surrogate": (p4(0x30, s(b"\xed\xa0\x80")), MALFORMED),
    "PUBLISH topic overlong UTF-8": (p4(0x30, s(b"\xc0\xaf")), MALFORMED),
    "PUBLISH topic with U+0000": (p4(0x30, s(b"a\x00b")), MALFORMED),
    "MQTT 5 PUBLISH without property length": (p5(0x30, s(b"a")), MALFORMED),
    # acknowledgements and packet ids
    "PUBACK packet id 0": (p4(0x40, b"\x00\x00"), PROTOCOL),
    "PUBREC packet id 0": (p4(0x50, b"\x00\x00"), PROTOCOL),
    "SUBSCRIBE packet id 0": (p4(0x82, b"\x00\x00" + s(b"a") + b"\x00"), PROTOCOL),
    "UNSUBSCRIBE packet id 0": (p4(0xA2, b"\x00\x00" + s(b"a")), PROTOCOL),
    "PUBACK of three octets in 3.1.1": (p4(0x40, b"\x00\x01\x00"), MALFORMED),
    "PUBACK of one octet": (p4(0x40, b"\x00"), MALFORMED),
    "UNSUBACK with reason codes in 3.1.1": (p4(0xB0, b"\x00\x01\x00"), MALFORMED),
    # CONNECT
    "CONNECT reserved flag bit": (packet(0x10, connect_body(4, flags=0x03)), MALFORMED),
    "CONNECT will QoS 3": (packet(0x10, connect_body(4, flags=0x1E)), MALFORMED),
    "CONNECT will QoS without will": (packet(0x10, connect_body(4, flags=0x0A)), PROTOCOL),
    "CONNECT will retain without will": (packet(0x10, connect_body(4, flags=0x22)), PROTOCOL),
    "CONNECT 3.1.1 password without user name": (
        packet(0x10, connect_body(4, flags=0x42, payload=s(b"cid") + s(b"pw"))),
        MALFORMED,
    ),
    "CONNECT 3.1 password without user name": (
        packet(0x10, connect_body(3, flags=0x42, payload=s(b"cid") + s(b"pw"))),
        MALFORMED,
    ),
    "CONNECT client id with U+0000": (
        packet(0x10, connect_body(4, payload=s(b"a\x00"))),
        MALFORMED,
    ),
    "CONNECT trailing octets": (packet(0x10, connect_body(4, payload=s(b"c") + b"x")), MALFORMED),
    "CONNECT will missing": (packet(0x10, connect_body(4, flags=0x06)), MALFORMED),
    "CONNECT user name missing": (packet(0x10, connect_body(4, flags=0x82)), MALFORMED),
    "CONNECT cut before keep alive": (packet(0x10, s(b"MQTT") + b"\x04\x02"), MALFORMED),
    "CONNECT protocol name past the end": (packet(0x10, b"\x00\x09MQTT"), MALFORMED),
    # MQTT 5 properties
    "property not allowed in CONNECT": (
        packet(0x10, connect_body(5, props=b"\x23\x00\x01")),
        MALFORMED,
    ),
    "unknown property": (packet(0x10, connect_body(5, props=b"\x7f\x00")), MALFORMED),
    "receive maximum 0": (packet(0x10, connect_body(5, props=b"\x21\x00\x00")), PROTOCOL),
    "maximum packet size 0": (packet(0x10, connect_body(5, props=b"\x27" + bytes(4))), PROTOCOL),
    "request problem information 2": (packet(0x10, connect_body(5, props=b"\x17\x02")), PROTOCOL),
    "session expiry twice": (
        packet(0x10, connect_body(5, props=b"\x11\x00\x00\x00\x01\x11\x00\x00\x00\x01")),
        PROTOCOL,
    ),
    "property value cut short": (packet(0x10, connect_body(5, props=b"\x11\x00\x00")), MALFORMED),
    "property block past the end": (
        packet(0x10, s(b"MQTT") + b"\x05\x02\x00\x3c\x09\x11\x00"),
        MALFORMED,
    ),
    "content type twice in PUBLISH": (
        p5(0x30, s(b"t") + b"\x08\x03\x00\x01a\x03\x00\x01b"),
        PROTOCOL,
    ),
    "payload format indicator 2": (p5(0x30, s(b"t") + b"\x02\x01\x02"), PROTOCOL),
    "subscription identifier 0": (p5(0x30, s(b"t") + b"\x02\x0b\x00"), PROTOCOL),
    "property string invalid UTF-8": (p5(0x30, s(b"t") + b"\x04\x03\x00\x01\xff"), MALFORMED),
    "user property cut short": (p5(0x30, s(b"t") + b"\x04\x26\x00\x01k"), MALFORMED),
    "two subscription identifiers in SUBSCRIBE": (
        p5(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02" + s(b"a") + b"\x00"),
        PROTOCOL,
    ),
    "reason string in PUBLISH": (p5(0x30, s(b"t") + b"\x04\x1f\x00\x01r"), MALFORMED),
    # SUBSCRIBE and UNSUBSCRIBE payloads
    "3.1.1 subscription options with reserved bits": (
        p4(0x82, b"\x00\x01" + s(b"a") + b"\x04"),
        MALFORMED,
    ),
    "3.1.1 subscription QoS 3": (p4(0x82, b"\x00\x01" + s(b"a") + b"\x03"), MALFORMED),
    "MQTT 5 subscription options reserved bit": (
        p5(0x82, b"\x00\x01\x00" + s(b"a") + b"\x40"),
        MALFORMED,
    ),
    "MQTT 5 retain handling 3": (p5(0x82, b"\x00\x01\x00" + s(b"a") + b"\x30"), PROTOCOL),
    "MQTT 5 subscription QoS 3": (p5(0x82, b"\x00\x01\x00" + s(b"a") + b"\x03"), PROTOCOL),
    "SUBSCRIBE filter without options": (p4(0x82, b"\x00\x01" + s(b"a")), MALFORMED),
    "empty SUBSCRIBE": (p4(0x82, b"\x00\x01"), PROTOCOL),
    "empty MQTT 5 SUBSCRIBE": (p5(0x82, b"\x00\x01\x00"), PROTOCOL),
    "empty UNSUBSCRIBE": (p4(0xA2, b"\x00\x01"), PROTOCOL),
    "empty SUBACK": (p4(0x90, b"\x00\x01"), PROTOCOL),
    "empty MQTT 5 UNSUBACK": (p5(0xB0, b"\x00\x01\x00"), PROTOCOL),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_refused_with_its_reason_code(name: str) -> None:
    data, code = CASES[name]
    whole = feed(data, [])
    by_byte = feed(data)

    assert whole[1] is not None and by_byte[1] is not None
    assert (whole[0], whole[1].reason_code) == (by_byte[0], code)
    assert (type(whole[1]), whole[1].text) == (type(by_byte[1]), by_byte[1].text)
    error_class = {MALFORMED: MalformedPacket, PROTOCOL: ProtocolViolation}[code]
    assert isinstance(whole[1], error_class)


@pytest.mark.parametrize(
    ("name", "level", "connect_level"),
    [
        (b"MQTT", 6, 6),
        (b"MQTT", 3, 3),
        (b"MQIsdp", 4, 4),
        (b"MQTT", 0x84, 0x84),
        (b"HTTP", 4, None),
        (b"mqtt", 4, None),
    ],
)
def test_unsupported_protocol_reports_the_connect_level(
    name: bytes, level: int, connect_level: int | None
) -> None:
    data = packet(0x10, s(name) + bytes((level, 2)) + b"\x00\x3c" + s(b"cid"))

    for packets, err in (feed(data, []), feed(data)):
        assert packets == []
        assert isinstance(err, UnsupportedProtocolVersion)
        assert (err.reason_code, err.connect_level) == (UNSUPPORTED, connect_level)


def test_packets_before_the_error_come_with_it_and_the_error_sticks() -> None:
    parser = MQTTParser()
    good = encode(Connect(4, "c"), 4) + encode(PubAck(1), 4) + encode(PingReq(), 4)

    with pytest.raises(MQTTProtocolError) as caught:
        parser.receive_data(good + b"\x40\x02\x00\x00")

    assert caught.value.packets == [Connect(4, "c"), PubAck(1), PingReq()]
    assert caught.value.reason_code == PROTOCOL
    with pytest.raises(MQTTProtocolError) as again:
        parser.receive_data(encode(PingReq(), 4))
    assert again.value is caught.value


def test_too_large_is_refused_from_the_fixed_header_alone() -> None:
    parser = MQTTParser(max_packet_size=100, protocol_level=4)
    small = encode(Publish("t", b"x" * 95), 4)  # 2 + 3 + 95 = 100 octets
    big = encode(Publish("t", b"x" * 96), 4)

    assert parser.receive_data(small) == [Publish("t", b"x" * 95)]
    with pytest.raises(PacketTooLarge) as caught:
        parser.receive_data(big[:2])
    assert (caught.value.reason_code, caught.value.text) == (
        TOO_LARGE,
        "packet of 101 octets is over the maximum of 100",
    )


def test_max_packet_size_can_change_between_reads() -> None:
    parser = MQTTParser(protocol_level=5)
    wire = encode(Publish("t", b"x" * 300), 5)
    parser.max_packet_size = len(wire)
    assert parser.receive_data(wire) == [Publish("t", b"x" * 300)]
    parser.max_packet_size = len(wire) - 1

    assert feed(wire, [], protocol_level=5, max_packet_size=len(wire) - 1)[1] is not None
    with pytest.raises(PacketTooLarge):
        parser.receive_data(wire)
