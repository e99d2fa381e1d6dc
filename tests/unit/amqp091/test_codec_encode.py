"""Every hand-written encoder gives exactly the octets pamqp gives."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat

from rapidmq.core.message import Properties
from rapidmq.protocols.amqp091 import encode
from rapidmq.protocols.amqp091.properties import encode_properties

shortstr = st.text(max_size=60)  # up to 240 UTF-8 octets, any plane
channels = st.integers(0, 65535)
tags = st.integers(0, 2**64 - 1)
frame_maxes = st.sampled_from([0, 9, 10, 13, 100, 4096, 131072])
strings = st.none() | st.text(min_size=1, max_size=20)
headers = st.none() | st.dictionaries(
    st.text(min_size=1, max_size=10), st.text(max_size=10) | st.integers(-(2**63), 2**63 - 1)
)
all_properties = st.builds(
    Properties,
    content_type=strings,
    content_encoding=strings,
    headers=headers,
    delivery_mode=st.none() | st.integers(0, 255),
    priority=st.none() | st.integers(0, 255),
    correlation_id=strings,
    reply_to=strings,
    expiration=strings,
    message_id=strings,
    timestamp=st.none() | st.integers(0, 2**32),
    type=strings,
    user_id=strings,
    app_id=strings,
    cluster_id=strings,
)


def unchecked(cls: type[Any], *args: Any) -> Any:
    """The pamqp method without its name validation, which refuses names RabbitMQ accepts."""
    lenient = type(cls.__name__, (cls,), {"__slots__": cls.__slots__, "validate": _no_check})
    return lenient(*args)


def _no_check(self: Any) -> None:
    pass


def pamqp_properties(props: Properties) -> commands.Basic.Properties:
    theirs = commands.Basic.Properties()
    for field in dataclasses.fields(Properties):
        value = getattr(props, field.name)
        if field.name == "timestamp" and value is not None:
            value = datetime.datetime.fromtimestamp(value, datetime.UTC)
        setattr(theirs, "message_type" if field.name == "type" else field.name, value)
    return theirs


def pamqp_content(channel: int, props: Properties, body: bytes, frame_max: int) -> bytes:
    """pamqp's content header frame, then body frames of at most frame_max - 8 octets."""
    header = pamqp_header.ContentHeader(0, len(body), pamqp_properties(props))
    frames = [pamqp_frame.marshal(header, channel)]
    chunk = frame_max - 8 if frame_max else max(len(body), 1)
    for start in range(0, len(body), chunk):
        frames.append(
            pamqp_frame.marshal(pamqp_body.ContentBody(body[start : start + chunk]), channel)
        )
    return b"".join(frames)


def signed(tag: int) -> int:
    """pamqp packs longlongs signed; the same 64 bits as the unsigned delivery tag."""
    return tag - 2**64 if tag >= 2**63 else tag


def ours(encoder: Any, *args: Any) -> bytes:
    out = bytearray(b"previous")
    encoder(out, *args)
    assert out[:8] == b"previous"  # encoders append, never overwrite
    return bytes(out[8:])


@given(channels, shortstr, tags, st.booleans(), shortstr, shortstr, all_properties,
       st.binary(max_size=300), frame_maxes)  # fmt: skip
def test_deliver_matches_pamqp(
    channel: int, ctag: str, tag: int, redelivered: bool, exchange: str, rkey: str,
    props: Properties, body: bytes, frame_max: int,
) -> None:  # fmt: skip
    method = unchecked(commands.Basic.Deliver, ctag, signed(tag), redelivered, exchange, rkey)
    expected = pamqp_frame.marshal(method, channel) + pamqp_content(channel, props, body, frame_max)
    args = (channel, ctag, tag, redelivered, exchange, rkey, encode_properties(props), body)
    assert ours(encode.encode_deliver, *args, frame_max) == expected


@given(channels, tags, st.booleans(), shortstr, shortstr, st.integers(0, 2**32 - 1),
       all_properties, st.binary(max_size=300), frame_maxes)  # fmt: skip
def test_get_ok_matches_pamqp(
    channel: int, tag: int, redelivered: bool, exchange: str, rkey: str, count: int,
    props: Properties, body: bytes, frame_max: int,
) -> None:  # fmt: skip
    method = unchecked(commands.Basic.GetOk, signed(tag), redelivered, exchange, rkey, count)
    expected = pamqp_frame.marshal(method, channel) + pamqp_content(channel, props, body, frame_max)
    args = (channel, tag, redelivered, exchange, rkey, count, encode_properties(props), body)
    assert ours(encode.encode_get_ok, *args, frame_max) == expected


@given(channels, st.integers(0, 65535), shortstr, shortstr, shortstr, all_properties,
       st.binary(max_size=300), frame_maxes)  # fmt: skip
def test_return_matches_pamqp(
    channel: int, code: int, text: str, exchange: str, rkey: str, props: Properties,
    body: bytes, frame_max: int,
) -> None:  # fmt: skip
    method = unchecked(commands.Basic.Return, code, text, exchange, rkey)
    expected = pamqp_frame.marshal(method, channel) + pamqp_content(channel, props, body, frame_max)
    args = (channel, code, text, exchange, rkey, encode_properties(props), body, frame_max)
    assert ours(encode.encode_return, *args) == expected


@given(channels, shortstr, shortstr, st.booleans(), st.booleans(), all_properties,
       st.binary(max_size=300), frame_maxes)  # fmt: skip
def test_publish_matches_pamqp(
    channel: int, exchange: str, rkey: str, mandatory: bool, immediate: bool,
    props: Properties, body: bytes, frame_max: int,
) -> None:  # fmt: skip
    method = unchecked(commands.Basic.Publish, 0, exchange, rkey, mandatory, immediate)
    expected = pamqp_frame.marshal(method, channel) + pamqp_content(channel, props, body, frame_max)
    args = (channel, exchange, rkey, mandatory, encode_properties(props), body, frame_max)
    assert ours(encode.encode_publish, *args, immediate) == expected


@given(channels, tags, st.booleans())
def test_ack_matches_pamqp(channel: int, tag: int, multiple: bool) -> None:
    expected = pamqp_frame.marshal(commands.Basic.Ack(signed(tag), multiple), channel)
    assert ours(encode.encode_ack, channel, tag, multiple) == expected
    assert ours(encode.encode_client_ack, channel, tag, multiple) == expected


@given(channels, tags, st.booleans(), st.booleans())
def test_nack_matches_pamqp(channel: int, tag: int, multiple: bool, requeue: bool) -> None:
    expected = pamqp_frame.marshal(commands.Basic.Nack(signed(tag), multiple, requeue), channel)
    assert ours(encode.encode_nack, channel, tag, multiple, requeue) == expected


def test_heartbeat_matches_pamqp() -> None:
    assert ours(encode.encode_heartbeat) == pamqp_frame.marshal(pamqp_heartbeat.Heartbeat(), 0)


@given(channels, shortstr, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_method_is_pamqp_marshal(channel: int, queue: str, messages: int, consumers: int) -> None:
    method = unchecked(commands.Queue.DeclareOk, queue, messages, consumers)
    assert ours(encode.encode_method, channel, method) == pamqp_frame.marshal(method, channel)


def test_deliver_body_split_exactly_at_frame_max() -> None:
    out = bytearray()
    body = bytes(range(250)) * 100  # 25000 octets
    encode.encode_deliver(out, 1, "c", 1, False, "", "q", b"\x00\x00", body, 4096)
    expected = pamqp_content(1, Properties(), body, 4096)
    assert out.endswith(expected)
    assert expected.count(b"\x03\x00\x01\x00\x00\x0f\xf8") == 6  # six full 4088-octet frames


def test_too_long_short_string_raises_value_error() -> None:
    out = bytearray()
    try:
        encode.encode_deliver(out, 1, "c" * 256, 1, False, "", "q", b"\x00\x00", b"", 0)
    except ValueError as err:
        assert "255" in str(err)
    else:
        raise AssertionError("a 256-octet consumer tag was encoded")


def test_routing_keys_and_exchanges_longer_than_a_shortstr_are_cut_at_a_character() -> None:
    # An MQTT topic of up to 64 KiB becomes a routing key: it is delivered cut, not dropped.
    long_key = "é" * 200  # 400 octets
    out = bytearray()
    encode.encode_deliver(out, 1, "c", 1, False, "x" * 300, long_key, b"\x00\x00", b"", 0)
    method = pamqp_frame.unmarshal(bytes(out))[2]
    assert method.exchange == "x" * 255
    assert method.routing_key == "é" * 127  # 254 octets: the 255th would split a character
    got = bytearray()
    encode.encode_get_ok(got, 1, 7, False, "", long_key, 0, b"\x00\x00", b"", 0)
    assert pamqp_frame.unmarshal(bytes(got))[2].routing_key == "é" * 127
