"""A small async AMQP 0-9-1 client for in-process tests, on Trio or asyncio.

It speaks through pamqp only, independently of RapidMQ's own codec, so the
server's hand-written frames are checked by a second implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from pamqp import body, commands, frame, header, heartbeat
from pamqp.base import Frame

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class ConnectionClosed(Exception):
    """The server sent connection.close while the client expected something else."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(f"{reply_code} {reply_text}")
        self.reply_code = reply_code
        self.reply_text = reply_text


@dataclass
class Delivery:
    method: Any
    properties: commands.Basic.Properties
    body: bytes


@dataclass
class Client:
    stream: anyio.abc.SocketStream
    buffer: bytearray = field(default_factory=bytearray)
    frame_max: int = 131072
    server_properties: dict[str, Any] = field(default_factory=dict)

    async def send(
        self, channel: int, *frames: Frame | header.ContentHeader | body.ContentBody
    ) -> None:
        await self.stream.send(b"".join(frame.marshal(f, channel) for f in frames))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def read_frame(self, timeout_s: float = 5.0) -> tuple[int, Any]:
        with anyio.fail_after(timeout_s):
            while True:
                if self.buffer:
                    try:
                        consumed, channel, value = frame.unmarshal(bytes(self.buffer))
                    except Exception:
                        consumed = 0
                    if consumed:
                        del self.buffer[:consumed]
                        return channel, value
                chunk = await self.stream.receive(65536)
                self.buffer += chunk

    async def expect(self, kind: type[Any], timeout_s: float = 5.0) -> Any:
        """Read frames, skipping heartbeats, until one arrives; it must be ``kind``."""
        while True:
            _channel, value = await self.read_frame(timeout_s)
            if isinstance(value, heartbeat.Heartbeat):
                continue
            if isinstance(value, commands.Connection.Close) and kind is not type(value):
                raise ConnectionClosed(value.reply_code, value.reply_text)
            if not isinstance(value, kind):
                raise AssertionError(f"expected {kind.__name__}, got {value!r}")
            return value

    async def read_content(self, method: Any) -> Delivery:
        head = await self.expect(header.ContentHeader)
        data = bytearray()
        while len(data) < head.body_size:
            part = await self.expect(body.ContentBody)
            data += part.value
        return Delivery(method, head.properties, bytes(data))

    async def next_delivery(self) -> Delivery:
        method = await self.expect(commands.Basic.Deliver)
        return await self.read_content(method)

    async def publish(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        data: bytes,
        properties: commands.Basic.Properties | None = None,
        *,
        mandatory: bool = False,
    ) -> None:
        props = properties or commands.Basic.Properties()
        frames: list[Any] = [
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
            header.ContentHeader(0, len(data), props),
        ]
        step = self.frame_max - 8
        for i in range(0, len(data), step):
            frames.append(body.ContentBody(data[i : i + step]))
        await self.send(channel, *frames)

    async def rpc(self, channel: int, method: Frame, reply: type[Any]) -> Any:
        await self.send(channel, method)
        return await self.expect(reply)

    async def open_channel(self, channel: int = 1) -> None:
        await self.rpc(channel, commands.Channel.Open(), commands.Channel.OpenOk)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect(
    port: int,
    *,
    user: str = "guest",
    password: str = "guest",
    vhost: str = "/",
    heartbeat_s: int = 0,
    host: str = "127.0.0.1",
) -> Client:
    """Connect and finish the handshake (connection.open-ok received)."""
    stream = await anyio.connect_tcp(host, port)
    client = Client(stream)
    try:
        await _handshake(client, user, password, vhost, heartbeat_s)
    except BaseException:
        await stream.aclose()
        raise
    return client


async def _handshake(
    client: Client, user: str, password: str, vhost: str, heartbeat_s: int
) -> None:
    await client.send_raw(PROTOCOL_HEADER)
    start = await client.expect(commands.Connection.Start)
    client.server_properties = start.server_properties
    capabilities = {"consumer_cancel_notify": True, "connection.blocked": True}
    await client.send(
        0,
        commands.Connection.StartOk(
            client_properties={"product": "test", "capabilities": capabilities},
            mechanism="PLAIN",
            response=f"\0{user}\0{password}",
        ),
    )
    tune = await client.expect(commands.Connection.Tune)
    client.frame_max = tune.frame_max
    await client.send(
        0,
        commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat_s
        ),
        commands.Connection.Open(virtual_host=vhost),
    )
    await client.expect(commands.Connection.OpenOk)
