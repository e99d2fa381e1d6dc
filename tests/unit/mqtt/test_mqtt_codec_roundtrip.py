"""Every packet of every level round-trips, fed whole, byte by byte and in random splits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_codec_strategies import (
    LEVELS,
    PROPERTY_VALUES,
    connects,
    feed,
    normalized,
    packets,
    properties_for,
)

from rapidmq.protocols.mqtt.codec import (
    MQTTParser,
    decode_variable_byte_integer,
    encode,
    encode_into,
    encode_variable_byte_integer,
)
from rapidmq.protocols.mqtt.errors import MQTTProtocolError
from rapidmq.protocols.mqtt.packets import MQTTProperties, Packet, PacketType
from rapidmq.protocols.mqtt.properties import ALLOWED, WILL, decode_properties, encode_properties

SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[int, list[Packet]]:
    """A CONNECT of some level followed by packets of that level."""
    level = draw(st.sampled_from(LEVELS))
    return level, [draw(connects(level)), *draw(st.lists(packets(level), max_size=6))]


@SETTINGS
@given(sessions(), st.data())
def test_packets_round_trip_whole_byte_by_byte_and_split(
    session: tuple[int, list[Packet]], data: st.DataObject
) -> None:
    level, sent = session
    wire = b"".join(encode(packet, level) for packet in sent)
    expected = [normalized(packet) for packet in sent]
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))

    assert feed(wire, [0]) == (expected, None)
    assert feed(wire) == (expected, None)
    assert feed(wire, cuts) == (expected, None)


@SETTINGS
@given(st.sampled_from(LEVELS).flatmap(lambda lv: st.tuples(st.just(lv), packets(lv))))
def test_client_side_parser_decodes_without_connect(pair: tuple[int, Packet]) -> None:
    level, packet = pair
    wire = encode(packet, level)
    parser = MQTTParser(protocol_level=level)

    assert parser.receive_data(wire + wire) == [normalized(packet)] * 2
    out = bytearray(b"head")
    encode_into(out, packet, level)
    assert bytes(out) == b"head" + wire


@SETTINGS
@given(sessions())
def test_decoding_then_encoding_gives_the_same_bytes(session: tuple[int, list[Packet]]) -> None:
    level, sent = session
    wire = b"".join(encode(packet, level) for packet in sent)
    decoded = MQTTParser().receive_data(wire)

    assert b"".join(encode(packet, level) for packet in decoded) == wire


@SETTINGS
@given(
    st.sampled_from([*ALLOWED]).flatmap(lambda kind: st.tuples(st.just(kind), properties_for(kind)))
)
def test_property_blocks_round_trip(pair: tuple[int, MQTTProperties | None]) -> None:
    kind, props = pair
    block = encode_properties(props, kind)
    wire = encode_variable_byte_integer(len(block)) + block + b"tail"

    decoded, offset = decode_properties(wire, 0, len(wire) - 4, kind)

    assert (decoded, offset) == (None if props == MQTTProperties() else props, len(wire) - 4)


def test_every_property_is_covered_by_the_strategies() -> None:
    assert set(PROPERTY_VALUES) == {name for names in ALLOWED.values() for name in names}
    assert {
        kind: {n for n, (_v, w) in PROPERTY_VALUES.items() if kind in w} for kind in ALLOWED
    } == {kind: set(names) for kind, names in ALLOWED.items()}
    assert WILL in ALLOWED and PacketType.PINGREQ not in ALLOWED


@given(st.integers(0, 268_435_455))
def test_variable_byte_integers_round_trip(value: int) -> None:
    wire = encode_variable_byte_integer(value)

    assert decode_variable_byte_integer(wire + b"\x55") == (value, len(wire))
    assert len(wire) == 1 + (value >= 128) + (value >= 16384) + (value >= 2_097_152)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([None, 3, 4, 5]))
def test_random_bytes_only_raise_protocol_errors(data: bytes, level: int | None) -> None:
    parser = MQTTParser(protocol_level=level)
    try:
        parser.receive_data(data)
    except MQTTProtocolError as err:
        assert err.reason_code in (0x81, 0x82, 0x84)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sessions(), st.data())
def test_corrupted_streams_only_raise_protocol_errors(
    session: tuple[int, list[Packet]], data: st.DataObject
) -> None:
    level, sent = session
    wire = bytearray(b"".join(encode(packet, level) for packet in sent))
    for _ in range(data.draw(st.integers(1, 3))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    try:
        MQTTParser().receive_data(bytes(wire))
    except MQTTProtocolError as err:
        assert 0x80 <= err.reason_code <= 0xA2
