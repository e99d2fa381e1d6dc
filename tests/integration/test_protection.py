"""The broker protects itself from clients: channel_max, handshake timeouts, deep tables.

Each test uses a real client (pika) or a raw socket speaking the protocol, and
checks that only the offending connection is closed, with RabbitMQ's reply.
"""

from __future__ import annotations

import struct

import anyio
import httpx
import pika
import pika.exceptions
import pytest
from pamqp import commands, frame

from rapidmq.server import Server
from tests.integration.amqp_client import PROTOCOL_HEADER, ConnectionClosed, connect
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio


def _port(server: Server, key: str = "amqp") -> int:
    port = server.ports[key]
    assert port is not None
    return port


async def test_channel_max_plus_one_is_refused_with_rabbitmqs_text(anyio_backend: str) -> None:
    async with serving(channel_max=3) as srv:

        def scenario() -> tuple[int, str]:
            params = pika.ConnectionParameters("127.0.0.1", _port(srv), connection_attempts=1)
            conn = pika.BlockingConnection(params)
            try:
                for number in (1, 2, 3):
                    conn.channel(number)
                with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
                    conn.channel(4)
                return info.value.reply_code, info.value.reply_text
            finally:
                if conn.is_open:
                    conn.close()

        code, text = await anyio.to_thread.run_sync(scenario)
    assert code == 530
    assert text == (
        "NOT_ALLOWED - number of channels opened (3) has reached the negotiated channel_max (3)"
    )


async def _closed_within(port: int, data: bytes, seconds: float) -> tuple[bytes, float]:
    """Connect, send ``data``, and read until the broker closes; what it sent and when."""
    started = anyio.current_time()
    received = bytearray()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        if data:
            await stream.send(data)
        with anyio.fail_after(seconds):
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return bytes(received), anyio.current_time() - started


async def test_a_silent_amqp_client_is_closed_after_the_handshake_timeout(
    anyio_backend: str,
) -> None:
    async with serving(handshake_timeout_s=0.5) as srv:
        received, elapsed = await _closed_within(_port(srv), b"", 5)
        assert received == b""
        assert 0.4 <= elapsed < 3
        # a client that sends the protocol header only gets connection.start, then is closed
        received, elapsed = await _closed_within(_port(srv), PROTOCOL_HEADER, 5)
        _consumed, _channel, start = frame.unmarshal(received)
        assert isinstance(start, commands.Connection.Start)
        assert 0.4 <= elapsed < 3
        # a client that finishes in time is not affected
        client = await connect(_port(srv))
        await anyio.sleep(0.8)
        await client.open_channel(1)
        await client.aclose()


async def test_a_silent_mqtt_client_is_closed_after_the_connect_timeout(anyio_backend: str) -> None:
    async with serving(mqtt_port=0, handshake_timeout_s=0.5) as srv:
        received, elapsed = await _closed_within(_port(srv, "mqtt"), b"", 5)
        assert received == b""
        assert 0.4 <= elapsed < 3
        # half a CONNECT is no CONNECT
        received, elapsed = await _closed_within(_port(srv, "mqtt"), b"\x10\x20\x00\x04MQ", 5)
        assert received == b""
        assert 0.4 <= elapsed < 3


def _nested_table(depth: int) -> bytes:
    """A field table holding a table holding a table ... ``depth`` deep, encoded by hand."""
    inner = b""
    for _ in range(depth):
        inner = b"\x01k" + b"F" + struct.pack(">I", len(inner)) + inner
    return struct.pack(">I", len(inner)) + inner


def _publish_with_headers(table: bytes, channel: int = 1) -> bytes:
    method = frame.marshal(commands.Basic.Publish(exchange="", routing_key="deep"), channel)
    payload = struct.pack(">HHQH", 60, 0, 2, 0x2000) + table
    content_header = struct.pack(">BHI", 2, channel, len(payload)) + payload + b"\xce"
    body = struct.pack(">BHI", 3, channel, 2) + b"hi" + b"\xce"
    return method + content_header + body


async def test_a_deeply_nested_header_table_closes_only_that_connection(
    anyio_backend: str,
) -> None:
    async with serving() as srv:
        bystander = await connect(_port(srv))
        await bystander.open_channel(1)
        await bystander.rpc(1, commands.Queue.Declare(queue="deep"), commands.Queue.DeclareOk)
        attacker = await connect(_port(srv))
        await attacker.open_channel(1)
        await attacker.send_raw(_publish_with_headers(_nested_table(5000)))
        with pytest.raises(ConnectionClosed) as info:
            await attacker.expect(commands.Basic.Ack)
        assert (info.value.reply_code, info.value.reply_text) == (541, "INTERNAL_ERROR")
        await attacker.aclose()
        # the broker and the other connection carry on
        await bystander.rpc(
            1, commands.Queue.Declare(queue="deep", passive=True), commands.Queue.DeclareOk
        )
        await bystander.aclose()


async def test_deeply_nested_method_arguments_are_a_frame_error(anyio_backend: str) -> None:
    async with serving() as srv:
        client = await connect(_port(srv))
        await client.open_channel(1)
        # queue.declare with its arguments table nested 5000 deep, by hand
        args = struct.pack(">HH", 50, 10) + b"\x00\x00" + b"\x01q" + b"\x00" + _nested_table(5000)
        await client.send_raw(struct.pack(">BHI", 1, 1, len(args)) + args + b"\xce")
        with pytest.raises(ConnectionClosed) as info:
            await client.expect(commands.Queue.DeclareOk)
        assert info.value.reply_code == 501
        assert info.value.reply_text.startswith("FRAME_ERROR")
        await client.aclose()
        other = await connect(_port(srv))
        await other.open_channel(1)
        await other.aclose()


async def test_the_api_refuses_queue_names_over_255_bytes_as_rabbitmq(anyio_backend: str) -> None:
    async with serving(http_port=0) as srv:
        url = f"http://127.0.0.1:{_port(srv, 'http')}"
        async with httpx.AsyncClient(base_url=url, auth=("guest", "guest")) as api:
            assert (await api.put("/api/queues/%2F/" + "q" * 255)).status_code == 201
            too_long = await api.put("/api/queues/%2F/" + "q" * 256)
            assert (too_long.status_code, too_long.json()) == (
                400,
                {
                    "error": "bad_request",
                    "reason": "queue should be less than 255 bytes, actually was 256\n",
                },
            )
            # bytes, not characters: 128 two-byte characters are 256 bytes
            wide = await api.put("/api/queues/%2F/" + "%C3%A9" * 128)
            assert (
                wide.json()["reason"] == "queue should be less than 255 bytes, actually was 256\n"
            )
            assert "é" * 128 not in srv.broker.vhost("/").queues  # type: ignore[union-attr]
