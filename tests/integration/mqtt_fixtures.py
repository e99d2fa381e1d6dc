"""An in-process broker with its MQTT listener, and a small async MQTT client on RapidMQ's codec.

Import the fixture into a test module with ``from .mqtt_fixtures import mqtt_server``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest

from rapidmq.protocols.mqtt.codec import MQTTParser, encode
from rapidmq.protocols.mqtt.packets import MQTT_5, ConnAck, Connect, Packet
from rapidmq.server import Server

from .conftest import serving

__all__ = ["MQTTClient", "mqtt_connect", "mqtt_port", "mqtt_server"]


@pytest.fixture
async def mqtt_server(anyio_backend: str) -> AsyncIterator[Server]:
    """A broker in this process with AMQP and MQTT on free loopback ports."""
    async with serving(mqtt_port=0) as srv:
        yield srv


def mqtt_port(server: Server) -> int:
    port = server.ports["mqtt"]
    assert port is not None
    return port


class MQTTClient:
    """Packets out through ``encode``, packets in through a client-side ``MQTTParser``."""

    def __init__(self, stream: anyio.abc.SocketStream, level: int) -> None:
        self.stream = stream
        self.level = level
        self.parser = MQTTParser(protocol_level=level)
        self.pending: list[Packet] = []

    async def send(self, *packets: Packet) -> None:
        await self.stream.send(b"".join(encode(p, self.level) for p in packets))

    async def recv(self, timeout_s: float = 5.0) -> Packet:
        """The next packet from the server."""
        with anyio.fail_after(timeout_s):
            while not self.pending:
                self.pending.extend(self.parser.receive_data(await self.stream.receive()))
        return self.pending.pop(0)

    async def recv_many(self, count: int, timeout_s: float = 5.0) -> list[Packet]:
        return [await self.recv(timeout_s) for _ in range(count)]

    async def nothing(self, wait_s: float = 0.2) -> list[Packet]:
        """What arrives within ``wait_s`` (expected: nothing)."""
        got: list[Packet] = list(self.pending)
        self.pending.clear()
        with anyio.move_on_after(wait_s):
            while True:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
                got.extend(self.parser.receive_data(data))
        return got

    async def closed_by_server(self, timeout_s: float = 5.0) -> list[Packet]:
        """Read until the server closes the socket; returns what came before."""
        got: list[Packet] = list(self.pending)
        self.pending.clear()
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return got
                got.extend(self.parser.receive_data(data))

    async def aclose(self) -> None:
        await self.stream.aclose()


async def mqtt_connect(
    server: Server, client_id: str, *, level: int = MQTT_5, **connect: Any
) -> tuple[MQTTClient, ConnAck]:
    """Open a socket, send CONNECT, and return the client with the CONNACK."""
    stream = await anyio.connect_tcp("127.0.0.1", mqtt_port(server))
    client = MQTTClient(stream, level)
    await client.send(Connect(level, client_id, **connect))
    ack = await client.recv()
    assert isinstance(ack, ConnAck)
    return client, ack
