"""The frame parser: the same events whole, byte by byte and in any split; RabbitMQ's errors."""

from __future__ import annotations

import datetime
import itertools
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat

from rapidmq.core.message import Properties
from rapidmq.protocols.amqp091.constants import PROTOCOL_HEADER
from rapidmq.protocols.amqp091.errors import FrameError, ProtocolHeaderMismatch
from rapidmq.protocols.amqp091.events import (
    AckReceived,
    HeartbeatReceived,
    MethodReceived,
    ProtocolHeaderReceived,
    PublishReceived,
)
from rapidmq.protocols.amqp091.frames import FrameParser

PROPERTY_NAMES = [
    "content_type", "content_encoding", "headers", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
    "user_id", "app_id", "cluster_id",
]  # fmt: skip


def _no_check(self: Any) -> None:
    pass


def unchecked(cls: type[Any], **fields: Any) -> Any:
    """A pamqp method without its name validation, which refuses names RabbitMQ accepts."""
    lenient = type(cls.__name__, (cls,), {"__slots__": cls.__slots__, "validate": _no_check})
    return lenient(**fields)


def run(data: bytes, splits: list[int] | None = None, frame_max: int = 131072) -> Any:
    """Feed ``data`` cut at ``splits``; the events, then the error as (code, text, ids)."""
    parser = FrameParser(frame_max=frame_max)
    cuts = sorted({0, len(data), *(s for s in splits or [] if 0 < s < len(data))})
    events: list[Any] = []
    for start, stop in itertools.pairwise(cuts):
        try:
            events += parser.receive_data(data[start:stop])
        except FrameError as err:
            events += err.events
            return events, (err.reply_code, err.text, err.class_id, err.method_id)
    return events, None


def run_every_way(data: bytes, splits: list[int], frame_max: int = 131072) -> Any:
    whole = run(data, frame_max=frame_max)
    assert run(data, list(range(len(data))), frame_max) == whole
    assert run(data, splits, frame_max) == whole
    return whole


# -- streams of commands, with the events pamqp's decoding of them implies -----------

strings = st.text(max_size=30)
props = st.builds(
    dict,
    content_type=st.none() | st.text(min_size=1, max_size=10),
    headers=st.none() | st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5)),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 255),
    message_id=st.none() | st.text(min_size=1, max_size=10),
    timestamp=st.none() | st.integers(0, 2**32 - 1),
    type=st.none() | st.text(min_size=1, max_size=10),
)


def publish_frames(channel: int, exchange: str, rkey: str, flags: tuple[bool, bool],
                   values: dict[str, Any], body: bytes, chunk: int) -> list[bytes]:  # fmt: skip
    method = unchecked(commands.Basic.Publish, exchange=exchange, routing_key=rkey,
                       mandatory=flags[0], immediate=flags[1])  # fmt: skip
    theirs = commands.Basic.Properties()
    for name, value in values.items():
        if name == "timestamp" and value is not None:
            value = datetime.datetime.fromtimestamp(value, datetime.UTC)
        setattr(theirs, "message_type" if name == "type" else name, value)
    frames = [pamqp_frame.marshal(method, channel)]
    frames.append(pamqp_frame.marshal(pamqp_header.ContentHeader(0, len(body), theirs), channel))
    for start in range(0, len(body), chunk):
        piece = pamqp_body.ContentBody(body[start : start + chunk])
        frames.append(pamqp_frame.marshal(piece, channel))
    return frames


# fmt: off
commands_strategy = st.one_of(
    st.builds(publish_frames, st.integers(1, 3), strings, strings,
              st.tuples(st.booleans(), st.booleans()), props,
              st.binary(max_size=100), st.integers(1, 60)),
    st.builds(lambda ch, tag, multiple: [
        pamqp_frame.marshal(commands.Basic.Ack(tag, multiple), ch)],
        st.integers(1, 3), st.integers(0, 2**63 - 1), st.booleans()),
    st.just([pamqp_frame.marshal(pamqp_heartbeat.Heartbeat(), 0)]),
    st.builds(lambda ch, n: [pamqp_frame.marshal(commands.Basic.Qos(prefetch_count=n), ch)],
              st.integers(0, 3), st.integers(0, 65535)),
    st.builds(lambda ch, q, args: [pamqp_frame.marshal(
        unchecked(commands.Queue.Declare, queue=q, durable=True, arguments=args), ch)],
        st.integers(1, 3), strings,
        st.dictionaries(st.text(min_size=1, max_size=5), st.integers(-(2**63), 2**63 - 1))),
    st.builds(lambda ch, text: [pamqp_frame.marshal(commands.Channel.Close(200, text, 0, 0), ch)],
              st.integers(0, 3), strings),
)
# fmt: on


def expected_event(frames: list[bytes]) -> Any:
    """The event for one command, from what pamqp decodes of its frames."""
    decoded = [pamqp_frame.unmarshal(frame) for frame in frames]
    _, channel, first = decoded[0]
    if isinstance(first, pamqp_heartbeat.Heartbeat):
        return HeartbeatReceived()
    if isinstance(first, commands.Basic.Ack) and channel:
        return AckReceived(channel, first.delivery_tag, first.multiple)
    if not isinstance(first, commands.Basic.Publish):
        return MethodReceived(channel, first)
    theirs = decoded[1][2].properties
    values = {}
    for name in PROPERTY_NAMES:
        value = getattr(theirs, "message_type" if name == "type" else name)
        if name == "timestamp" and value is not None:
            value = int(value.timestamp())
        values[name] = None if value == "" else value
    body = b"".join(frame[7:-1] for frame in frames[2:])
    properties = Properties(**values)
    return PublishReceived(channel, first.exchange, first.routing_key, first.mandatory,
                           first.immediate, properties, frames[1][19:-1], body)  # fmt: skip


@st.composite
def interleaved(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    """Commands on several channels, their frames interleaved across channels."""
    queues: dict[int, list[list[bytes]]] = {}
    for frames in draw(st.lists(commands_strategy, max_size=8)):
        channel = pamqp_frame.frame_parts(frames[0])[1]
        queues.setdefault(channel, []).append(frames)
    data = bytearray(PROTOCOL_HEADER)
    events: list[Any] = [ProtocolHeaderReceived()]
    cursors = {channel: [0, 0] for channel in queues}  # command, frame
    while cursors:
        channel = draw(st.sampled_from(sorted(cursors)))
        cursor = cursors[channel]
        command = queues[channel][cursor[0]]
        data += command[cursor[1]]
        cursor[1] += 1
        if cursor[1] == len(command):
            events.append(expected_event(command))
            cursor[0], cursor[1] = cursor[0] + 1, 0
            if cursor[0] == len(queues[channel]):
                del cursors[channel]
    return bytes(data), events


@settings(max_examples=150)
@given(interleaved(), st.lists(st.integers(0, 4000), max_size=10))
def test_same_events_whole_byte_by_byte_and_split(stream: Any, splits: list[int]) -> None:
    data, expected = stream
    assert run_every_way(data, splits) == (expected, None)


def test_zero_length_body_publishes_right_after_the_header() -> None:
    frames = publish_frames(1, "x", "k", (True, False), {}, b"", 10)
    assert len(frames) == 2
    assert run(PROTOCOL_HEADER + b"".join(frames)) == (
        [ProtocolHeaderReceived(),
         PublishReceived(1, "x", "k", True, False, Properties(), b"\x00\x00", b"")],
        None,
    )  # fmt: skip


def test_wrong_protocol_header_raises_mismatch_only_once_eight_octets_arrive() -> None:
    parser = FrameParser()
    assert parser.receive_data(b"GET / H") == []
    with pytest.raises(ProtocolHeaderMismatch) as info:
        parser.receive_data(b"TTP/1.1\r\n")
    assert info.value.received == b"GET / HT"


def test_amqp_0_9_header_is_accepted_as_rabbitmq_does() -> None:
    assert FrameParser().receive_data(b"AMQP\x01\x01\x00\x09") == [ProtocolHeaderReceived()]


# -- errors: RabbitMQ 3.10's reply code and text for each -------------------------------


def raw(channel: int, ftype: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + bytes([end])


PUB = pamqp_frame.marshal(commands.Basic.Publish(exchange="", routing_key="x"), 1)


def header(size: int, channel: int = 1, class_id: int = 60, weight: int = 0) -> bytes:
    return raw(channel, 2, struct.pack(">HHQ", class_id, weight, size) + b"\x00\x00")


UNEXPECTED_HEADER = "expected content header for class 60, got non content header frame instead"
UNEXPECTED_BODY = "expected content body, got non content body frame instead"
ACK = struct.pack(">HH", 60, 80)
# (name, input after the protocol header, reply code, reply text, class id, method id)
RABBITMQ_ERRORS = [
    ("bad frame end", raw(1, 1, b"\x00\x14\x00\x28\x00", end=0), 501,
     "FRAME_ERROR - type 1, all octets = <<0,20,0,40,0>>: {invalid_frame_end_marker,0}", 0, 0),
    ("unknown frame type", raw(1, 5, b"abc"), 501,
     'FRAME_ERROR - type 5, all octets = <<"abc">>: unknown_frame', 0, 0),
    ("unknown frame type, long", raw(1, 200, bytes(range(1, 19))), 501,
     "FRAME_ERROR - type 200, first 16 octets = "
     "<<1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16>>: unknown_frame", 0, 0),
    ("escapes", raw(1, 7, b'ab\ncd\t\x1b"\\'), 501,
     'FRAME_ERROR - type 7, all octets = <<"ab\\ncd\\t\\e\\"\\\\">>: unknown_frame', 0, 0),
    ("delete is not printable", raw(1, 7, b"ab\x7f"), 501,
     "FRAME_ERROR - type 7, all octets = <<97,98,127>>: unknown_frame", 0, 0),
    ("heartbeat on channel 1", raw(1, 8, b""), 505,
     "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0),
    ("heartbeat with payload", raw(0, 8, b"x"), 501,
     'FRAME_ERROR - type 8, all octets = <<"x">>: unknown_frame', 0, 0),
    ("content header on channel 0", header(0, channel=0), 505,
     "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,0,0,0>>", 0, 0),
    ("content body on channel 0", raw(0, 3, b"x"), 505,
     'UNEXPECTED_FRAME - type 3, all octets = <<"x">>', 0, 0),
    ("content header without a method", header(3), 505,
     "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    ("content body without a method", raw(1, 3, b"abc"), 505,
     "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0),
    ("method while a header is expected", PUB + PUB, 505,
     f"UNEXPECTED_FRAME - {UNEXPECTED_HEADER}", 60, 40),
    ("body while a header is expected", PUB + raw(1, 3, b"x"), 505,
     f"UNEXPECTED_FRAME - {UNEXPECTED_HEADER}", 60, 40),
    ("method while a body is expected", PUB + header(3) + PUB, 505,
     f"UNEXPECTED_FRAME - {UNEXPECTED_BODY}", 60, 40),
    ("ack while a body is expected", PUB + header(3) + raw(1, 1, ACK + bytes(9)), 505,
     f"UNEXPECTED_FRAME - {UNEXPECTED_BODY}", 60, 40),
    ("header for another class", PUB + header(0, class_id=61), 505,
     "UNEXPECTED_FRAME - expected content header for class 60, got one for class 61 instead",
     60, 40),
    ("header with a weight", PUB + header(0, weight=1), 505,
     f"UNEXPECTED_FRAME - {UNEXPECTED_HEADER}", 60, 40),
    ("short content header", PUB + raw(1, 2, struct.pack(">HH", 60, 0)), 501,
     "FRAME_ERROR - type 2, all octets = <<0,60,0,0>>: unknown_frame", 0, 0),
    ("short method frame", raw(1, 1, b"\x00\x3c"), 501,
     "FRAME_ERROR - type 1, all octets = <<0,60>>: unknown_frame", 0, 0),
    ("undecodable publish", raw(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x05ab"), 501,
     "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 60, 40),
    ("publish with trailing octets",
     raw(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x00\x01x\x00\x00\x00"), 501,
     "FRAME_ERROR - cannot decode <<0,0,0,1,120,0,0,0>>", 60, 40),
    ("undecodable ack", raw(1, 1, ACK + b"\x00\x00"), 501,
     "FRAME_ERROR - cannot decode <<0,0>>", 60, 80),
    ("ack with trailing octets", raw(1, 1, ACK + struct.pack(">QB", 1, 0) + b"zz"), 501,
     "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,1,0,122,122>>", 60, 80),
    ("undecodable queue.declare", raw(1, 1, struct.pack(">HH", 50, 10) + b"\x00"), 501,
     "FRAME_ERROR - cannot decode <<0>>", 50, 10),
    ("cut to 255 octets", raw(1, 1, ACK + b"\xff" * 9 + bytes(range(200, 256))), 501,
     "FRAME_ERROR - cannot decode <<" + "255," * 9
     + ",".join(map(str, range(200, 246))) + ",24...", 60, 80),
    ("malformed properties", PUB + raw(1, 2, struct.pack(">HHQ", 60, 0, 0) + b"\x80\x00\x09ab"),
     541, "INTERNAL_ERROR", 0, 0),
    ("unknown header field type",
     PUB + raw(1, 2, struct.pack(">HHQ", 60, 0, 0) + b"\x20\x00\x00\x00\x00\x03\x01aZ"),
     541, "INTERNAL_ERROR", 0, 0),
]  # fmt: skip
# Where RabbitMQ 3.10 has no answer (it hangs or drops the socket), newer RabbitMQ's or ours.
OWN_ERRORS = [
    ("body longer than announced", PUB + header(3) + raw(1, 3, b"abcd"), 501,
     "FRAME_ERROR - content body frame exceeds remaining content size", 60, 40),
    ("body larger than 512 MiB", PUB + header(2**29 + 1), 501,
     "FRAME_ERROR - content body size 536870913 exceeds maximum allowed size 536870912", 60, 40),
    ("unknown method", raw(1, 1, struct.pack(">HH", 60, 99)), 540,
     "NOT_IMPLEMENTED - unknown method {60,99}", 0, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "code", "text", "class_id", "method_id"),
    [case[1:] for case in RABBITMQ_ERRORS + OWN_ERRORS],
    ids=[case[0] for case in RABBITMQ_ERRORS + OWN_ERRORS],
)
def test_frame_errors_have_rabbitmqs_reply(
    data: bytes, code: int, text: str, class_id: int, method_id: int
) -> None:
    assert run_every_way(PROTOCOL_HEADER + data, [9, 20]) == (
        [ProtocolHeaderReceived()],
        (code, text, class_id, method_id),
    )


def test_frame_larger_than_frame_max_fails_on_its_header_alone() -> None:
    # RabbitMQ accepts up to frame_max octets of payload (frame_max - 8 plus 8 of slack).
    fits = PUB + header(4096) + raw(1, 3, b"x" * 4096)
    assert run(PROTOCOL_HEADER + fits, frame_max=4096)[1] is None
    too_large = (PROTOCOL_HEADER + raw(1, 3, b"x" * 4097))[:15]
    assert run(too_large, frame_max=4096) == (
        [ProtocolHeaderReceived()],
        (501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}", 0, 0),
    )
    assert run(PROTOCOL_HEADER + raw(1, 3, b"x" * 4097), frame_max=0)[1] == (
        505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0
    )  # fmt: skip


def test_events_before_an_error_ride_on_it_and_the_error_repeats() -> None:
    parser = FrameParser()
    ack = pamqp_frame.marshal(commands.Basic.Ack(7, True), 2)
    with pytest.raises(FrameError) as first:
        parser.receive_data(PROTOCOL_HEADER + ack + raw(1, 5, b""))
    assert first.value.events == [ProtocolHeaderReceived(), AckReceived(2, 7, True)]
    with pytest.raises(FrameError) as second:
        parser.receive_data(ack)
    assert second.value is first.value


@settings(max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_garbage_raises_only_frame_errors(garbage: bytes, splits: list[int]) -> None:
    for data in (garbage, PROTOCOL_HEADER + garbage):
        try:
            run(data, splits)
        except ProtocolHeaderMismatch:
            assert data[:8] != PROTOCOL_HEADER


frame_like = st.builds(
    raw, st.integers(0, 2), st.sampled_from([1, 1, 1, 2, 3, 8, 9]),
    st.one_of(
        st.binary(max_size=40),
        st.builds(lambda index, rest: struct.pack(">I", index) + rest,
                  st.sampled_from(sorted(commands.INDEX_MAPPING)), st.binary(max_size=40)),
        st.builds(lambda size, rest: struct.pack(">HHQ", 60, 0, size) + rest,
                  st.integers(0, 50), st.binary(max_size=30)),
    ),
)  # fmt: skip


@settings(max_examples=500)
@given(st.lists(frame_like, max_size=6))
def test_well_framed_garbage_raises_only_frame_errors(frames: list[bytes]) -> None:
    run(PROTOCOL_HEADER + b"".join(frames))


# -- the same inputs against the local RabbitMQ -----------------------------------------


def rabbitmq_reply(data: bytes) -> tuple[int, str, int, int]:
    """Open a connection and channel 1 on RabbitMQ, send ``data``, return its connection.close."""
    with socket.create_connection(("127.0.0.1", 5672), timeout=5) as sock:
        parser = ReplyReader(sock)
        sock.sendall(PROTOCOL_HEADER)
        parser.next()
        start_ok = commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"
        )
        sock.sendall(pamqp_frame.marshal(start_ok, 0))
        parser.next()
        tune_ok = commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0)
        sock.sendall(pamqp_frame.marshal(tune_ok, 0))
        sock.sendall(pamqp_frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
        parser.next()
        sock.sendall(pamqp_frame.marshal(commands.Channel.Open(), 1))
        parser.next()
        sock.sendall(data)
        close = parser.next()
        assert isinstance(close, commands.Connection.Close), close
        return close.reply_code, close.reply_text, close.class_id, close.method_id


class ReplyReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> Any:
        while True:
            try:
                used, _, frame = pamqp_frame.unmarshal(self.buffer)
            except Exception:  # incomplete: read more
                chunk = self.sock.recv(65536)
                assert chunk, "RabbitMQ closed the connection without connection.close"
                self.buffer += chunk
                continue
            self.buffer = self.buffer[used:]
            return frame


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.differential
@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
@pytest.mark.parametrize(
    ("data", "code", "text", "class_id", "method_id"),
    [case[1:] for case in RABBITMQ_ERRORS],
    ids=[case[0] for case in RABBITMQ_ERRORS],
)
def test_rabbitmq_replies_the_same(
    data: bytes, code: int, text: str, class_id: int, method_id: int
) -> None:
    ours = run(PROTOCOL_HEADER + data)[1]
    assert rabbitmq_reply(data) == ours == (code, text, class_id, method_id)
