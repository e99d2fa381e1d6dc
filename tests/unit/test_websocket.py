"""The WebSocket layer, driven with bytes from a wsproto client and no sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from rapidmq.transport.websocket import (
    MQTT_SUBPROTOCOLS,
    OUTPUT_MESSAGE_MAX_BYTES,
    WebSocketHandler,
    encode_binary_frame,
)

# The example handshake of RFC 6455 §1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class Echo:
    """An inner handler that echoes every byte and records what happened to it."""

    def __init__(self, peer: tuple[str, int], wake: Callable[[], None]) -> None:
        self.peer = peer
        self.wake = wake
        self.out = bytearray()
        self.closed = False
        self.received: list[bytes] = []
        self.lost = 0
        self.drained = 0
        self.timer_calls: list[float] = []
        self.close_after_echo = False
        self.retime: Callable[[], None] = lambda: None  # the transport's, once upgraded

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.out += data
        if self.close_after_echo:
            self.closed = True
        self.wake()

    def data_to_send(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def output_drained(self) -> None:
        self.drained += 1

    def handle_timer(self, now: float) -> float:
        self.timer_calls.append(now)
        return 5.0

    def connection_lost(self) -> None:
        self.lost += 1
        self.closed = True

    def shutdown(self) -> None:
        self.out += b"bye"
        self.closed = True


class Harness:
    """A handler with a fake clock, counting wakes."""

    def __init__(self, **kwargs: object) -> None:
        self.wakes = 0
        self.now = 100.0

        def wake() -> None:
            self.wakes += 1

        self.handler = WebSocketHandler(
            Echo,
            ("127.0.0.1", 50000),
            wake,
            clock=lambda: self.now,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def inner(self) -> Echo:
        assert isinstance(self.handler.inner, Echo)
        return self.handler.inner

    def feed(self, data: bytes, *, byte_by_byte: bool = False) -> bytes:
        if byte_by_byte:
            for i in range(len(data)):
                self.handler.data_received(data[i : i + 1])
        else:
            self.handler.data_received(data)
        return self.handler.data_to_send()


def _request(target: str = "/ws", protocols: str | None = "mqtt", extra: str = "") -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _switching(protocol: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "upgrade: websocket\r\n"
        "connection: Upgrade\r\n"
        f"sec-websocket-accept: {ACCEPT}\r\n"
        f"sec-websocket-protocol: {protocol}\r\n"
        "\r\n"
    ).encode()


def _refusal(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\n{extra}"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
        "\r\n"
    ).encode() + body


def _open(harness: Harness) -> Connection:
    """Upgrade the harness and return a wsproto client-side frame connection."""
    assert harness.feed(_request()) == _switching("mqtt")
    return Connection(ConnectionType.CLIENT)


def _events(client: Connection, data: bytes) -> list[Event]:
    client.receive_data(data)
    return list(client.events())


# -- handshake -----------------------------------------------------------------------------


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_upgrade_answers_101_with_the_subprotocol_the_client_offered(byte_by_byte: bool) -> None:
    h = Harness(subprotocols=MQTT_SUBPROTOCOLS)
    sent = h.feed(_request(protocols="mqttv3.1"), byte_by_byte=byte_by_byte)
    assert sent == _switching("mqttv3.1")
    assert (h.handler.closed, h.handler.subprotocol, h.inner.peer) == (
        False,
        "mqttv3.1",
        ("127.0.0.1", 50000),
    )


def test_upgrade_picks_the_first_acceptable_subprotocol_in_the_clients_order() -> None:
    h = Harness(subprotocols=MQTT_SUBPROTOCOLS)
    assert h.feed(_request(protocols="wamp, mqtt, mqttv3.1")) == _switching("mqtt")


def test_upgrade_from_a_wsproto_client_is_accepted() -> None:
    h = Harness()
    client = WSConnection(ConnectionType.CLIENT)
    request = client.send(Request(host="localhost", target="/ws", subprotocols=["mqtt"]))
    client.receive_data(h.feed(request))
    assert list(client.events()) == [
        AcceptConnection(subprotocol="mqtt", extensions=[], extra_headers=[])
    ]


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_frames_sent_with_the_request_reach_the_inner_handler(byte_by_byte: bool) -> None:
    frame = Connection(ConnectionType.CLIENT).send(BytesMessage(data=b"\x10\x00"))
    h = Harness()
    sent = h.feed(_request() + frame, byte_by_byte=byte_by_byte)
    client = Connection(ConnectionType.CLIENT)
    assert sent[: len(_switching("mqtt"))] == _switching("mqtt")
    events = _events(client, sent[len(_switching("mqtt")) :])
    assert b"".join(e.data for e in events if isinstance(e, Message)) == b"\x10\x00"
    assert b"".join(h.inner.received) == b"\x10\x00"


def test_another_path_gets_404_and_close() -> None:
    h = Harness()
    assert h.feed(_request(target="/mqtt")) == _refusal(
        "404 Not Found", "no WebSocket endpoint at /mqtt"
    )
    assert (h.handler.closed, h.handler.inner) == (True, None)


def test_a_query_string_does_not_change_the_path() -> None:
    h = Harness()
    assert h.feed(_request(target="/ws?client=1")) == _switching("mqtt")


def test_a_get_without_upgrade_gets_400_and_close() -> None:
    h = Harness()
    sent = h.feed(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sent == _refusal("400 Bad Request", "this endpoint only accepts WebSocket upgrades")
    assert h.handler.closed


@pytest.mark.parametrize("protocols", [None, "wamp", ""])
def test_an_upgrade_without_an_mqtt_subprotocol_gets_400(protocols: str | None) -> None:
    h = Harness(subprotocols=MQTT_SUBPROTOCOLS)
    assert h.feed(_request(protocols=protocols)) == _refusal(
        "400 Bad Request", "no supported WebSocket subprotocol offered (expected mqtt, mqttv3.1)"
    )
    assert (h.handler.closed, h.handler.inner) == (True, None)


def test_a_wrong_websocket_version_gets_426_naming_version_13() -> None:
    h = Harness()
    request = _request().replace(b"Version: 13", b"Version: 8")
    assert h.feed(request) == _refusal(
        "426 Upgrade Required",
        "only WebSocket version 13 is supported",
        "sec-websocket-version: 13\r\n",
    )


def test_a_malformed_key_gets_400() -> None:
    h = Harness()
    request = _request().replace(KEY.encode(), b"not-base64!")
    assert h.feed(request) == _refusal("400 Bad Request", "missing or malformed Sec-WebSocket-Key")


def test_garbage_instead_of_http_gets_400() -> None:
    h = Harness()
    sent = h.feed(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n")
    assert sent.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert h.handler.closed


def test_the_handshake_times_out_and_closes_without_a_reply() -> None:
    h = Harness(handshake_timeout_s=10.0)
    h.handler.data_received(b"GET /ws HTTP/1.1\r\n")
    assert h.handler.handle_timer(100.0) == pytest.approx(10.0)
    assert h.handler.handle_timer(109.9) == pytest.approx(0.1)
    assert h.handler.handle_timer(110.0) == 3600.0
    assert (h.handler.closed, h.handler.data_to_send()) == (True, b"")


def test_the_inner_handler_gets_the_transports_retime() -> None:
    h = Harness()
    retimed: list[str] = []
    h.handler.retime = lambda: retimed.append("retime")  # as the transport sets it
    h.feed(_request())
    assert retimed == ["retime"]  # the upgrade: the inner handler's deadlines now count
    h.inner.retime()
    assert retimed == ["retime", "retime"]


# -- open connection -----------------------------------------------------------------------


def test_fragments_and_several_messages_reach_the_inner_handler_as_one_stream() -> None:
    h = Harness()
    client = _open(h)
    data = (
        client.send(BytesMessage(data=b"\x30\x05", message_finished=False))
        + client.send(BytesMessage(data=b"\x00\x01a", message_finished=False))
        + client.send(BytesMessage(data=b"xy", message_finished=True))
        + client.send(BytesMessage(data=b"\xc0\x00\xe0\x00"))
    )
    sent = h.feed(data)
    assert h.inner.received == [b"\x30\x05\x00\x01axy\xc0\x00\xe0\x00"]
    assert _events(client, sent) == [BytesMessage(data=b"\x30\x05\x00\x01axy\xc0\x00\xe0\x00")]


def test_the_stream_is_the_same_fed_byte_by_byte() -> None:
    h = Harness()
    client = _open(h)
    data = client.send(BytesMessage(data=b"ab", message_finished=False)) + client.send(
        BytesMessage(data=b"cd")
    )
    h.feed(data, byte_by_byte=True)
    assert b"".join(h.inner.received) == b"abcd"


def test_inner_output_wakes_the_transport() -> None:
    h = Harness()
    client = _open(h)
    wakes = h.wakes
    h.handler.data_received(client.send(BytesMessage(data=b"x")))
    assert h.wakes > wakes
    assert len(h.handler.out) == 3  # the echo is already framed, so back-pressure sees it


def test_ping_gets_a_pong_with_the_same_payload() -> None:
    h = Harness()
    client = _open(h)
    assert _events(client, h.feed(client.send(Ping(payload=b"hb")))) == [Pong(payload=b"hb")]
    assert h.inner.received == []


def test_a_close_from_the_peer_is_answered_and_the_inner_handler_is_told_once() -> None:
    h = Harness()
    client = _open(h)
    sent = h.feed(client.send(CloseConnection(code=1000, reason="bye")))
    assert _events(client, sent) == [CloseConnection(code=1000, reason="bye")]
    h.handler.connection_lost()
    assert (h.handler.closed, h.inner.lost) == (True, 1)


def test_an_inner_close_sends_its_last_bytes_then_close_1000() -> None:
    h = Harness()
    client = _open(h)
    h.inner.close_after_echo = True
    sent = h.feed(client.send(BytesMessage(data=b"last")))
    assert _events(client, sent) == [
        BytesMessage(data=b"last"),
        CloseConnection(code=1000, reason=""),
    ]
    assert h.handler.closed


def test_an_inner_close_from_elsewhere_is_sent_on_the_next_flush() -> None:
    h = Harness()
    client = _open(h)
    h.inner.out += b"\xe0\x01\x8e"  # e.g. a DISCONNECT after a session takeover
    h.inner.closed = True
    assert _events(client, h.handler.data_to_send()) == [
        BytesMessage(data=b"\xe0\x01\x8e"),
        CloseConnection(code=1000, reason=""),
    ]
    assert h.handler.closed


def test_a_text_frame_closes_with_1003() -> None:
    h = Harness()
    client = _open(h)
    sent = h.feed(client.send(TextMessage(data="hello")))
    assert _events(client, sent) == [
        CloseConnection(code=1003, reason="text frames are not supported")
    ]
    assert (h.handler.closed, h.inner.received) == (True, [])


def test_a_message_over_the_limit_closes_with_1009() -> None:
    h = Harness(max_message_bytes=10)
    client = _open(h)
    data = client.send(BytesMessage(data=b"0123456789")) + client.send(
        BytesMessage(data=b"0123456789A")
    )
    sent = h.feed(data)
    assert _events(client, sent) == [
        BytesMessage(data=b"0123456789"),
        CloseConnection(code=1009, reason="message too big"),
    ]
    assert h.inner.received == [b"0123456789"]


def test_an_unmasked_client_frame_closes_with_1002() -> None:
    h = Harness()
    client = _open(h)
    unmasked = bytearray()
    encode_binary_frame(unmasked, b"abc")
    sent = h.feed(bytes(unmasked))
    assert _events(client, sent) == [
        CloseConnection(code=1002, reason="server received unexpected unmasked frame")
    ]
    assert (h.handler.closed, h.inner.lost, h.inner.received) == (True, 1, [])


def test_large_inner_output_is_split_into_messages_of_at_most_1_mib() -> None:
    h = Harness()
    client = _open(h)
    size = OUTPUT_MESSAGE_MAX_BYTES * 2 + 12345
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    events = _events(client, h.feed(client.send(BytesMessage(data=payload))))
    assert [len(e.data) for e in events if isinstance(e, Message)] == [
        OUTPUT_MESSAGE_MAX_BYTES,
        OUTPUT_MESSAGE_MAX_BYTES,
        12345,
    ]
    assert b"".join(e.data for e in events if isinstance(e, Message)) == payload


def test_timers_and_drains_go_to_the_inner_handler_once_upgraded() -> None:
    h = Harness()
    _open(h)
    assert h.handler.handle_timer(123.0) == 5.0
    h.handler.output_drained()
    assert (h.inner.timer_calls, h.inner.drained) == ([123.0], 1)


def test_shutdown_lets_the_inner_handler_finish_then_closes_with_1001() -> None:
    h = Harness()
    client = _open(h)
    h.handler.shutdown()
    assert _events(client, h.handler.data_to_send()) == [
        BytesMessage(data=b"bye"),
        CloseConnection(code=1001, reason="broker shutting down"),
    ]
    assert h.handler.closed


def test_shutdown_before_the_upgrade_just_closes() -> None:
    h = Harness()
    h.handler.shutdown()
    assert (h.handler.closed, h.handler.data_to_send(), h.handler.inner) == (True, b"", None)


def test_statistics_after_an_exchange() -> None:
    h = Harness()
    client = _open(h)
    h.feed(client.send(BytesMessage(data=b"a")) + client.send(BytesMessage(data=b"b")))
    assert h.handler.statistics() == {
        "state": "open",
        "path": "/ws",
        "subprotocol": "mqtt",
        "messages_received": 2,
        "frames_sent": 1,
        "pending_output_bytes": 0,
    }


# -- frame encoding ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_binary_frames_match_wsproto_at_length_boundaries(size: int) -> None:
    payload = b"\xab" * size
    ours = bytearray()
    encode_binary_frame(ours, payload)
    theirs = Connection(ConnectionType.SERVER).send(BytesMessage(data=payload))
    assert bytes(ours) == theirs


@given(st.binary(max_size=300))
def test_binary_frames_round_trip_through_a_wsproto_client(payload: bytes) -> None:
    ours = bytearray()
    encode_binary_frame(ours, payload)
    client = Connection(ConnectionType.CLIENT)
    assert _events(client, bytes(ours)) == [BytesMessage(data=payload)]
