"""The WebSocket layer on a real listener, on both backends.

The clients (the blocking `websockets.sync` client and paho-mqtt) run in a worker
thread, so the same test drives the server on Trio and on asyncio.  The inner
handlers are small echo servers, and at the end the MQTT front end itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidStatus,
)
from websockets.sync.client import ClientConnection, connect

from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.protocols.mqtt.connection import MQTTConnection, MQTTSettings
from rapidmq.protocols.mqtt.state import MQTTState
from rapidmq.transport.tcp import HandlerFactory, SocketConnection, open_listener
from rapidmq.transport.websocket import MQTT_SUBPROTOCOLS, websocket_factory

pytestmark = pytest.mark.anyio


class Echo:
    """An inner handler that echoes every byte; optionally closes after the first echo."""

    close_after_echo = False

    def __init__(self, peer: tuple[str, int], wake: Callable[[], None]) -> None:
        self.wake = wake
        self.out = bytearray()
        self.closed = False
        self.received = 0
        self.lost = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.out += data
        if self.close_after_echo:
            self.closed = True
        self.wake()

    def data_to_send(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def output_drained(self) -> None:
        pass

    def handle_timer(self, now: float) -> float:
        return 3600.0

    def connection_lost(self) -> None:
        self.lost += 1
        self.closed = True

    def shutdown(self) -> None:
        self.closed = True


class ClosingEcho(Echo):
    close_after_echo = True


class Server:
    """A WebSocket listener on a free loopback port and what it served."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inners: list[Echo] = []
        self.connections: set[SocketConnection] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def wait_until(self, check: Callable[[], bool]) -> None:
        with anyio.fail_after(5):
            while not check():
                await anyio.sleep(0.01)


@asynccontextmanager
async def serving(inner: type[Echo] = Echo) -> AsyncIterator[Server]:
    """Serve ``inner`` handlers over WebSocket, recording each one made."""
    inners: list[Echo] = []

    def make_inner(peer: tuple[str, int], wake: Callable[[], None]) -> Echo:
        handler = inner(peer, wake)
        inners.append(handler)
        return handler

    async with serving_factory(make_inner) as server:
        server.inners = inners
        yield server


@asynccontextmanager
async def serving_factory(inner_factory: HandlerFactory) -> AsyncIterator[Server]:
    """Serve handlers from ``inner_factory`` over WebSocket on a real listener."""
    listener = await open_listener("127.0.0.1", 0, name="MQTT over WebSocket", flag="--port")
    server = Server(int(listener.extra(anyio.abc.SocketAttribute.local_port)))
    factory = websocket_factory(inner_factory, path="/ws", subprotocols=MQTT_SUBPROTOCOLS)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        conn = SocketConnection(stream, factory)
        server.connections.add(conn)
        try:
            await conn.run()
        finally:
            server.connections.discard(conn)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle, tg)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def _connect(url: str, subprotocols: list[str] | None = None) -> ClientConnection:
    return connect(
        url,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        proxy=None,
        max_size=None,
        open_timeout=5,
        close_timeout=5,
    )


def _receive_bytes(ws: ClientConnection, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        message = ws.recv(timeout=5)
        assert isinstance(message, bytes)
        got += message
    return bytes(got)


async def test_upgrade_with_mqtt_subprotocol_then_binary_echo() -> None:
    def client(url: str) -> tuple[str | None, bytes]:
        with _connect(url, ["mqtt"]) as ws:
            ws.send(b"\x10\x00")
            return ws.subprotocol, _receive_bytes(ws, 2)

    async with serving() as server:
        result = await anyio.to_thread.run_sync(client, server.url)
    assert result == ("mqtt", b"\x10\x00")


async def test_the_older_mqttv31_subprotocol_is_answered_as_offered() -> None:
    def client(url: str) -> str | None:
        with _connect(url, ["mqttv3.1"]) as ws:
            return ws.subprotocol

    async with serving() as server:
        assert await anyio.to_thread.run_sync(client, server.url) == "mqttv3.1"


@pytest.mark.parametrize(
    ("path", "subprotocols", "status"),
    [("/mqtt", ["mqtt"], 404), ("/ws", None, 400), ("/ws", ["wamp"], 400)],
)
async def test_refused_upgrades_get_an_http_status(
    path: str, subprotocols: list[str] | None, status: int
) -> None:
    def client(url: str) -> int:
        with pytest.raises(InvalidStatus) as info:
            _connect(url, subprotocols)
        return info.value.response.status_code

    async with serving() as server:
        url = f"ws://127.0.0.1:{server.port}{path}"
        assert await anyio.to_thread.run_sync(client, url) == status
        await server.wait_until(lambda: not server.connections)
        assert server.inners == []


async def test_a_plain_get_gets_400_and_the_socket_closes() -> None:
    async with serving() as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        await stream.send(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
        reply = bytearray()
        with anyio.fail_after(5):
            try:
                while True:
                    reply += await stream.receive()
            except anyio.EndOfStream:
                pass
        await stream.aclose()
    body = b"this endpoint only accepts WebSocket upgrades"
    assert (
        bytes(reply)
        == (
            b"HTTP/1.1 400 Bad Request\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\n"
            b"connection: close\r\n"
            b"\r\n" % len(body)
        )
        + body
    )


async def test_fragmented_and_several_messages_arrive_as_one_stream() -> None:
    chunks = [b"\x30\x0b\x00\x03a/b", b"hello", b"\xc0\x00", b"\xe0", b"\x00"]

    def client(url: str) -> bytes:
        with _connect(url, ["mqtt"]) as ws:
            ws.send(iter(chunks[:2]))  # one message in two fragments
            for chunk in chunks[2:]:
                ws.send(chunk)
            return _receive_bytes(ws, sum(map(len, chunks)))

    async with serving() as server:
        assert await anyio.to_thread.run_sync(client, server.url) == b"".join(chunks)


async def test_ping_is_answered_with_pong() -> None:
    def client(url: str) -> bool:
        with _connect(url, ["mqtt"]) as ws:
            return ws.ping(b"heartbeat").wait(5)

    async with serving() as server:
        assert await anyio.to_thread.run_sync(client, server.url) is True


async def test_client_close_handshake_completes_and_the_inner_handler_is_told_once() -> None:
    def client(url: str) -> tuple[int | None, int | None]:
        ws = _connect(url, ["mqtt"])
        ws.close(1000, "done")
        return ws.close_code, ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None

    async with serving() as server:
        assert await anyio.to_thread.run_sync(client, server.url) == (1000, 1000)
        await server.wait_until(lambda: not server.connections)
        assert [inner.lost for inner in server.inners] == [1]


async def test_an_inner_close_sends_the_last_bytes_then_close_1000() -> None:
    def client(url: str) -> tuple[bytes, int]:
        with _connect(url, ["mqtt"]) as ws:
            ws.send(b"\xe0\x00")
            last = _receive_bytes(ws, 2)
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None
            return last, info.value.rcvd.code

    async with serving(ClosingEcho) as server:
        assert await anyio.to_thread.run_sync(client, server.url) == (b"\xe0\x00", 1000)


async def test_a_text_frame_closes_with_1003() -> None:
    def client(url: str) -> tuple[int, str]:
        with _connect(url, ["mqtt"]) as ws:
            ws.send("CONNECT")
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None
            return info.value.rcvd.code, info.value.rcvd.reason

    async with serving() as server:
        result = await anyio.to_thread.run_sync(client, server.url)
        await server.wait_until(lambda: not server.connections)
        assert [inner.received for inner in server.inners] == [0]
    assert result == (1003, "text frames are not supported")


async def test_a_large_message_is_echoed_whole() -> None:
    payload = os.urandom(5 << 20)

    def client(url: str) -> bytes:
        with _connect(url, ["mqtt"]) as ws:
            ws.send(payload)
            return _receive_bytes(ws, len(payload))

    async with serving() as server:
        assert await anyio.to_thread.run_sync(client, server.url) == payload


async def test_broker_shutdown_closes_with_1001() -> None:
    opened = anyio.Event()

    def client(url: str, signal_open: Callable[[], None]) -> int:
        with _connect(url, ["mqtt"]) as ws:
            signal_open()
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    async with serving() as server, anyio.create_task_group() as tg:
        codes: list[int] = []

        async def run_client() -> None:
            codes.append(
                await anyio.to_thread.run_sync(
                    client, server.url, lambda: anyio.from_thread.run_sync(opened.set)
                )
            )

        tg.start_soon(run_client)
        await opened.wait()
        await server.wait_until(lambda: bool(server.inners))
        for conn in list(server.connections):
            conn.shutdown()
    assert codes == [1001]


class MiniMQTT(Echo):
    """Just enough of an MQTT server for a client to connect and get its publishes back.

    It answers CONNECT with CONNACK, PINGREQ with PINGRESP and echoes every PUBLISH,
    reading whole packets from the byte stream however the frames cut it.
    """

    def __init__(self, peer: tuple[str, int], wake: Callable[[], None]) -> None:
        super().__init__(peer, wake)
        self.buffer = bytearray()
        self.packet_types: list[int] = []

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.buffer += data
        while (packet := self._next_packet()) is not None:
            kind = packet[0] >> 4
            self.packet_types.append(kind)
            if kind == 1:
                self.out += b"\x20\x02\x00\x00"
            elif kind == 3:
                self.out += packet
            elif kind == 12:
                self.out += b"\xd0\x00"
            elif kind == 14:
                self.closed = True
        self.wake()

    def _next_packet(self) -> bytes | None:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(self.buffer):
                return None
            byte = self.buffer[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if len(self.buffer) < i + length:
            return None
        packet = bytes(self.buffer[: i + length])
        del self.buffer[: i + length]
        return packet


async def test_paho_mqtt_connects_over_websocket_and_its_packets_cross_frames() -> None:
    payload = os.urandom(300_000)

    def client(port: int) -> tuple[str, bytes]:
        connected = threading.Event()
        received: list[mqtt.MQTTMessage] = []
        got = threading.Event()

        def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
            connected.set()

        def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
            received.append(message)
            got.set()

        paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="ws-test", transport="websockets"
        )
        paho.ws_set_options(path="/ws")
        paho.on_connect = on_connect
        paho.on_message = on_message
        paho.connect("127.0.0.1", port, keepalive=30)
        paho.loop_start()
        try:
            assert connected.wait(5)
            paho.publish("a/b", payload, qos=0)
            assert got.wait(5)
        finally:
            paho.disconnect()
            paho.loop_stop()
        return received[0].topic, received[0].payload

    async with serving(MiniMQTT) as server:
        result = await anyio.to_thread.run_sync(client, server.port)
        await server.wait_until(lambda: not server.connections)
        inners = server.inners
    assert result == ("a/b", payload)
    assert [(type(i).__name__, i.packet_types, i.lost) for i in inners] == [
        ("MiniMQTT", [1, 3, 14], 1)
    ]


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_paho_mqtt_over_websocket_reaches_the_mqtt_front_end(
    protocol: mqtt.MQTTProtocolVersion,
) -> None:
    broker = Broker()
    users = UserStore()
    users.add_user("guest", "guest")
    state = MQTTState(broker)
    settings = MQTTSettings()

    def make_mqtt(peer: tuple[str, int], wake: Callable[[], None]) -> MQTTConnection:
        return MQTTConnection(broker, users, state, settings, peer, wake)

    def client(port: int) -> list[tuple[str, bytes, int]]:
        subscribed = threading.Event()
        got = threading.Event()
        received: list[tuple[str, bytes, int]] = []

        def on_subscribe(c: mqtt.Client, u: object, mid: int, codes: object, p: object) -> None:
            subscribed.set()

        def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
            received.append((message.topic, message.payload, message.qos))
            got.set()

        paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id="ws-e2e",
            transport="websockets",
            protocol=protocol,
        )
        paho.ws_set_options(path="/ws")
        paho.on_subscribe = on_subscribe
        paho.on_message = on_message
        paho.connect("127.0.0.1", port, keepalive=30)
        paho.loop_start()
        try:
            paho.subscribe("t/#", qos=1)
            assert subscribed.wait(5)
            paho.publish("t/x", b"hello over websocket", qos=1)
            assert got.wait(5)
        finally:
            paho.disconnect()
            paho.loop_stop()
        return received

    async with serving_factory(make_mqtt) as server:
        result = await anyio.to_thread.run_sync(client, server.port)
    assert result == [("t/x", b"hello over websocket", 1)]
