"""Robustness: malformed, truncated, oversized and random input on raw sockets.

While a healthy pika connection stays open, raw connections send bad bytes.
Each raw connection must be ended by the server (connection.close with the
right reply code, or EOF) within a few seconds, and afterwards the healthy
connection must still publish and consume.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pamqp.commands as cmd
import pamqp.exceptions
import pamqp.frame
import pamqp.header
import pytest
from compat_support import BrokerEndpoint, Scratch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AMQP_0_9_1_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"
FRAME_MAX = 4096
CLOSE_TIMEOUT_S = 5.0
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8


@pytest.fixture
def watchdog_s() -> float:
    return 120.0


def frame(kind: int, channel: int, payload: bytes, end: bytes = FRAME_END) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + end


def content_header(class_id: int, body_size: int) -> bytes:
    return struct.pack(">HHQH", class_id, 0, body_size, 0)


Outcome = tuple[Any, ...]


def _unmarshal(raw: bytes) -> tuple[int, Any]:
    try:
        _, channel, value = pamqp.frame.unmarshal(raw)
        return channel, value
    except pamqp.exceptions.UnmarshalingException:
        # A close's reply text may quote the offending bytes, which need not be UTF-8.
        kind, channel, _size = struct.unpack(">BHI", raw[:7])
        if kind != METHOD or raw[7:11] != struct.pack(">HH", 10, 50):
            raise
        code, length = struct.unpack(">HB", raw[11:14])
        text = raw[14 : 14 + length].decode("utf-8", errors="replace")
        class_id, method_id = struct.unpack(">HH", raw[14 + length : 18 + length])
        return channel, cmd.Connection.Close(code, text, class_id, method_id)


class RawConnection:
    """A hand-driven AMQP 0-9-1 client that can send anything."""

    def __init__(self, endpoint: BrokerEndpoint) -> None:
        parts = urlsplit(endpoint.amqp_url)
        self.user = parts.username or "guest"
        self.password = parts.password or "guest"
        self.sock = socket.create_connection((endpoint.host, endpoint.amqp_port), timeout=5)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.send(pamqp.frame.marshal(method, channel))

    def read(self, timeout_s: float = CLOSE_TIMEOUT_S) -> Outcome:
        """The next protocol header or frame, else ("eof",) or ("timeout",)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.buffer.startswith(b"AMQP") and len(self.buffer) >= 8:
                header, self.buffer = self.buffer[:8], self.buffer[8:]
                return ("header", header)
            if len(self.buffer) >= 7 and not self.buffer.startswith(b"AMQP"):
                size = struct.unpack(">I", self.buffer[3:7])[0]
                if len(self.buffer) >= size + 8:
                    raw, self.buffer = self.buffer[: size + 8], self.buffer[size + 8 :]
                    return ("frame", *_unmarshal(raw))
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout",)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return ("timeout",)
            except ConnectionResetError:
                return ("eof",)
            if not data:
                return ("eof",)
            self.buffer += data

    def expect(self, kind: type) -> Any:
        got = self.read()
        assert got[0] == "frame" and isinstance(got[2], kind), f"expected {kind}, got {got!r}"
        return got[2]

    def handshake(self, heartbeat_s: int = 0) -> None:
        self.send(AMQP_0_9_1_HEADER)
        self.expect(cmd.Connection.Start)
        response = f"\0{self.user}\0{self.password}"
        self.send_method(0, cmd.Connection.StartOk(client_properties={}, response=response))
        tune = self.expect(cmd.Connection.Tune)
        self.send_method(
            0,
            cmd.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=FRAME_MAX, heartbeat=heartbeat_s
            ),
        )
        self.send_method(0, cmd.Connection.Open(virtual_host="/"))
        self.expect(cmd.Connection.OpenOk)

    def open_channel(self, channel: int = 1) -> None:
        self.send_method(channel, cmd.Channel.Open())
        self.expect(cmd.Channel.OpenOk)

    def wait_closed(self, timeout_s: float = CLOSE_TIMEOUT_S) -> Outcome:
        """("close", code, text) or ("eof",) once the server ends the connection."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.read(max(0.0, deadline - time.monotonic()))
            if got[0] == "frame" and isinstance(got[2], cmd.Connection.Close):
                self.send_method(0, cmd.Connection.CloseOk())
                return ("close", got[2].reply_code, got[2].reply_text)
            if got[0] in ("eof", "timeout"):
                return got


class Healthy:
    """A pika connection that must keep working whatever the raw sockets do."""

    def __init__(self, scratch: Scratch) -> None:
        self.ch = scratch.channel()
        self.queue = scratch.queue("healthy")
        self.ch.queue_declare(self.queue)
        self.n = 0

    def check(self) -> None:
        self.n += 1
        body = f"alive-{self.n}".encode()
        self.ch.basic_publish("", self.queue, body)
        method, _props, got = self.ch.basic_get(self.queue, auto_ack=True)
        assert method is not None and got == body


@pytest.fixture(scope="module")
def healthy(rapidmq: BrokerEndpoint) -> Iterator[Healthy]:
    scratch = Scratch(rapidmq.amqp_url)
    try:
        yield Healthy(scratch)
    finally:
        scratch.close()


@pytest.fixture
def raw(rapidmq: BrokerEndpoint) -> Iterator[Callable[[], RawConnection]]:
    made: list[RawConnection] = []

    def make() -> RawConnection:
        conn = RawConnection(rapidmq)
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()


# --- bad protocol headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x00\x00\x09\x02",
        b"AMQP\x00\x01\x00\x00",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00" * 8,
    ],
    ids=["amqp-0-8-0", "amqp-0-9-2", "amqp-1-0", "http", "zeros"],
)
def test_bad_protocol_header_gets_supported_header_and_close(
    raw: Callable[[], RawConnection], healthy: Healthy, header: bytes
) -> None:
    conn = raw()
    conn.send(header)
    assert conn.read() == ("header", AMQP_0_9_1_HEADER)
    assert conn.read() == ("eof",)
    healthy.check()


# --- malformed frames after a complete handshake ------------------------------------------


def _on_channel(payload: Callable[[RawConnection], None]) -> Callable[[RawConnection], None]:
    def run(conn: RawConnection) -> None:
        conn.open_channel(1)
        payload(conn)

    return run


PUBLISH = cmd.Basic.Publish(exchange="", routing_key="compat-nowhere")

MALFORMED: dict[str, tuple[Callable[[RawConnection], None], set[int]]] = {
    "bad-frame-end": (
        lambda c: c.send(frame(METHOD, 0, struct.pack(">HH", 20, 10) + b"\x00", end=b"\x00")),
        {501},
    ),
    "unknown-frame-type": (lambda c: c.send(frame(9, 0, b"abc")), {501}),
    "oversized-frame": (lambda c: c.send(frame(METHOD, 1, b"\x00" * (FRAME_MAX * 2))), {501}),
    "oversized-frame-header-only": (
        lambda c: c.send(struct.pack(">BHI", METHOD, 1, 100_000_000) + b"\x00" * 64),
        {501},
    ),
    "method-payload-too-short": (lambda c: c.send(frame(METHOD, 0, b"\x00")), {501, 502}),
    "truncated-method-arguments": (
        _on_channel(lambda c: c.send(frame(METHOD, 1, struct.pack(">HH", 50, 10) + b"\x00"))),
        {501, 502},
    ),
    "short-string-past-end": (
        _on_channel(lambda c: c.send(frame(METHOD, 1, struct.pack(">HHH", 50, 10, 0) + b"\xffab"))),
        {501, 502},
    ),
    "unknown-class-and-method": (
        _on_channel(lambda c: c.send(frame(METHOD, 1, struct.pack(">HH", 999, 1)))),
        {501, 503, 540},
    ),
    "method-on-unopened-channel": (
        lambda c: c.send_method(5, cmd.Basic.Qos(prefetch_count=1)),
        {504},
    ),
    "second-channel-open": (_on_channel(lambda c: c.send_method(1, cmd.Channel.Open())), {504}),
    "channel-method-on-channel-zero": (lambda c: c.send_method(0, cmd.Channel.Open()), {504}),
    "publish-on-channel-zero": (lambda c: c.send_method(0, PUBLISH), {504}),
    "connection-method-on-channel": (
        _on_channel(lambda c: c.send_method(1, cmd.Connection.Open(virtual_host="/"))),
        {503, 504},
    ),
    "body-without-header": (_on_channel(lambda c: c.send(frame(BODY, 1, b"hello"))), {505}),
    "header-without-method": (
        _on_channel(lambda c: c.send(frame(HEADER, 1, content_header(60, 5)))),
        {505},
    ),
    "body-on-channel-zero": (lambda c: c.send(frame(BODY, 0, b"abc")), {505}),
    "header-on-channel-zero": (lambda c: c.send(frame(HEADER, 0, content_header(60, 5))), {505}),
    "heartbeat-on-channel": (lambda c: c.send(frame(HEARTBEAT, 1, b"")), {501, 505}),
    "method-instead-of-content-header": (
        _on_channel(
            lambda c: (c.send_method(1, PUBLISH), c.send_method(1, cmd.Basic.Qos(prefetch_count=1)))
        ),
        {505},
    ),
    "content-header-of-wrong-class": (
        _on_channel(
            lambda c: (c.send_method(1, PUBLISH), c.send(frame(HEADER, 1, content_header(50, 3))))
        ),
        {505},
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_frame_closes_only_that_connection(
    raw: Callable[[], RawConnection], healthy: Healthy, case: str
) -> None:
    send, codes = MALFORMED[case]
    conn = raw()
    conn.handshake()
    send(conn)
    outcome = conn.wait_closed()
    if outcome[0] == "close":
        code, text = outcome[1], outcome[2]
        assert code in codes, outcome
        names = {501: "FRAME_ERROR", 502: "SYNTAX_ERROR", 503: "COMMAND_INVALID"}
        names |= {504: "CHANNEL_ERROR", 505: "UNEXPECTED_FRAME", 540: "NOT_IMPLEMENTED"}
        assert text.startswith(names[code] + " - "), outcome
    else:
        assert outcome == ("eof",), f"server did not end the connection: {outcome!r}"
    healthy.check()


def test_truncated_frame_then_eof_is_cleaned_up(
    raw: Callable[[], RawConnection], healthy: Healthy
) -> None:
    conn = raw()
    conn.handshake()
    conn.send(struct.pack(">BHI", METHOD, 0, 100) + b"x" * 10)
    conn.sock.shutdown(socket.SHUT_WR)
    assert conn.wait_closed()[0] in ("eof", "close")
    healthy.check()


def test_truncated_protocol_header_then_eof(
    raw: Callable[[], RawConnection], healthy: Healthy
) -> None:
    conn = raw()
    conn.send(b"AMQ")
    conn.sock.shutdown(socket.SHUT_WR)
    assert conn.read() in (("eof",), ("header", AMQP_0_9_1_HEADER))
    healthy.check()


def test_client_missing_heartbeats_is_disconnected(
    raw: Callable[[], RawConnection], healthy: Healthy
) -> None:
    conn = raw()
    conn.handshake(heartbeat_s=1)
    # The server may send heartbeats first; it must give up on the silent peer within
    # the deadline (the exact timing is tested with a fake clock in the unit tests).
    outcome = conn.wait_closed(timeout_s=6.0)
    assert outcome[0] in ("eof", "close"), outcome
    healthy.check()


def test_pipelined_valid_frames_in_one_write(
    raw: Callable[[], RawConnection], healthy: Healthy
) -> None:
    """Control case: good frames glued together must work, so the others test what they say."""
    conn = raw()
    conn.handshake()
    conn.open_channel(1)
    batch = b"".join(
        [
            pamqp.frame.marshal(cmd.Basic.Publish(exchange="", routing_key=healthy.queue), 1),
            frame(HEADER, 1, content_header(60, 4)),
            frame(BODY, 1, b"ra"),
            frame(BODY, 1, b"w!"),
            pamqp.frame.marshal(cmd.Channel.Close(200, "bye", 0, 0), 1),
        ]
    )
    conn.send(batch)
    conn.expect(cmd.Channel.CloseOk)
    method, _props, body = healthy.ch.basic_get(healthy.queue, auto_ack=True)
    assert (method is not None, body) == (True, b"raw!")
    conn.send_method(0, cmd.Connection.Close(200, "done", 0, 0))
    conn.expect(cmd.Connection.CloseOk)
    healthy.check()


# --- random input -------------------------------------------------------------------------

frames = st.builds(
    frame,
    kind=st.sampled_from([METHOD, HEADER, BODY, HEARTBEAT, 0, 4, 255]),
    channel=st.sampled_from([0, 1, 2, 65535]),
    payload=st.binary(max_size=64),
    end=st.sampled_from([FRAME_END, b"\x00", b""]),
)
# Methods whose random arguments cannot create or delete anything on a shared broker
# (no declares or deletes), yet cover short strings, bit fields and field tables.
SAFE_METHODS = [
    (10, 11),  # connection.start-ok, in the wrong state
    (20, 10),  # channel.open
    (20, 40),  # channel.close
    (40, 30),  # exchange.bind (table)
    (60, 10),  # basic.qos
    (60, 20),  # basic.consume (table)
    (60, 40),  # basic.publish
    (60, 80),  # basic.ack
    (60, 90),  # basic.reject
    (85, 10),  # confirm.select
    (90, 10),  # tx.select
]
method_payloads = st.builds(
    lambda ids, args: struct.pack(">HH", *ids) + args,
    ids=st.sampled_from(SAFE_METHODS),
    args=st.binary(max_size=48),
)
content_headers = st.builds(
    lambda size, flags, props: struct.pack(">HHQH", 60, 0, size, flags) + props,
    size=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 0xFFFF),
    props=st.binary(max_size=64),
)


def _send_and_let_go(conn: RawConnection, data: bytes) -> None:
    try:
        conn.send(data)
    except OSError:
        return  # the server may already have closed; that is allowed
    conn.wait_closed(timeout_s=0.1)


@FUZZ_SETTINGS
@given(data=st.binary(min_size=1, max_size=256))
def test_random_bytes_instead_of_protocol_header(
    raw: Callable[[], RawConnection], healthy: Healthy, data: bytes
) -> None:
    conn = raw()
    _send_and_let_go(conn, data)
    conn.close()
    healthy.check()


@FUZZ_SETTINGS
@given(data=st.lists(frames, min_size=1, max_size=4).map(b"".join))
def test_random_frames_after_handshake(
    raw: Callable[[], RawConnection], healthy: Healthy, data: bytes
) -> None:
    conn = raw()
    conn.handshake()
    conn.open_channel(1)
    _send_and_let_go(conn, data)
    conn.close()
    healthy.check()


@FUZZ_SETTINGS
@given(payload=method_payloads)
def test_random_method_arguments_after_handshake(
    raw: Callable[[], RawConnection], healthy: Healthy, payload: bytes
) -> None:
    conn = raw()
    conn.handshake()
    conn.open_channel(1)
    _send_and_let_go(conn, frame(METHOD, 1, payload))
    conn.close()
    healthy.check()


@FUZZ_SETTINGS
@given(header=content_headers)
def test_random_content_header_after_publish(
    raw: Callable[[], RawConnection], healthy: Healthy, header: bytes
) -> None:
    conn = raw()
    conn.handshake()
    conn.open_channel(1)
    publish = pamqp.frame.marshal(cmd.Basic.Publish(exchange="", routing_key="compat-nowhere"), 1)
    _send_and_let_go(conn, publish + frame(HEADER, 1, header) + frame(BODY, 1, b"x" * 16))
    conn.close()
    healthy.check()
