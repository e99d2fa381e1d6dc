"""Streams through ``rapidmq serve`` with real clients (pika, aio-pika) and RocksDB.

A stream keeps every message, transient ones too; a confirm goes out after the
group commit's sync, so SIGKILL loses nothing that was confirmed, and readers
resume at the offsets they stored.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import aio_pika
import anyio
import httpx
import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from rapidmq.testing import BrokerProcess

STREAM = {"x-queue-type": "stream"}
DEADLINE_S = 20.0


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", "--http-port", "off", data_dir=str(data_dir))


def _channel(broker: BrokerProcess) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    return connection, connection.channel()


def read(
    broker: BrokerProcess, offset: Any, count: int, prefetch: int = 50
) -> list[tuple[bytes, int]]:
    """(body, x-stream-offset) of the first ``count`` deliveries from ``offset``.

    The last is left unacked, so with ``prefetch=1`` nothing more is in flight
    when the connection closes (pika would nack it, which a stream refuses).
    """
    connection, ch = _channel(broker)
    got: list[tuple[bytes, int]] = []
    try:
        ch.basic_qos(prefetch_count=prefetch)

        def on_message(channel: BlockingChannel, method: Any, props: Any, body: bytes) -> None:
            got.append((body, props.headers["x-stream-offset"]))
            if len(got) < count:
                channel.basic_ack(method.delivery_tag)

        ch.basic_consume("s", on_message, arguments={"x-stream-offset": offset})
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            connection.process_data_events(0.05)
    finally:
        connection.close()
    return got


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_confirmed_stream_messages_survive_sigkill_transient_ones_too(data_dir: Path) -> None:
    first = _broker(data_dir).start()
    try:
        connection, ch = _channel(first)
        ch.queue_declare("s", durable=True, arguments=STREAM)
        ch.confirm_delivery()
        for i in range(300):
            mode = 2 if i % 2 else 1
            ch.basic_publish("", "s", f"m{i}".encode(), pika.BasicProperties(delivery_mode=mode))
        assert read(first, "first", 300) == [(f"m{i}".encode(), i) for i in range(300)]
        assert first.stop(signal.SIGKILL) == -9
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()
    finally:
        first.stop()

    with _broker(data_dir) as second:
        assert read(second, 250, 50) == [(f"m{i}".encode(), i) for i in range(250, 300)]
        connection, ch = _channel(second)
        ch.confirm_delivery()
        ch.basic_publish("", "s", b"after")
        connection.close()
        assert read(second, "last", 1) == [(b"after", 300)]


def test_a_reader_resumes_from_its_last_acked_offset_plus_one(tmp_path: Path) -> None:
    with _broker(tmp_path / "data") as broker:
        connection, ch = _channel(broker)
        ch.queue_declare("s", durable=True, arguments=STREAM)
        ch.confirm_delivery()
        for i in range(20):
            ch.basic_publish("", "s", f"m{i}".encode())
        connection.close()
        first_part = read(broker, "first", 7, prefetch=1)
        resumed = read(broker, first_part[-1][1] + 1, 13)
        assert first_part + resumed == [(f"m{i}".encode(), i) for i in range(20)]


def test_stream_refusals_close_the_channel_or_connection_with_rabbitmqs_codes(
    tmp_path: Path,
) -> None:
    with _broker(tmp_path / "data") as broker:
        outcomes = []
        tags: list[int] = []
        for attempt in ("get", "no-qos", "no-ack", "nack"):
            connection, ch = _channel(broker)
            ch.queue_declare("s", durable=True, arguments=STREAM)
            try:
                if attempt == "get":
                    ch.basic_get("s")
                elif attempt == "no-qos":
                    ch.basic_consume("s", lambda *_: None)
                else:
                    ch.basic_qos(prefetch_count=5)
                    if attempt == "no-ack":
                        ch.basic_consume("s", lambda *_: None, auto_ack=True)
                    else:
                        ch.confirm_delivery()
                        ch.basic_publish("", "s", b"x")
                        ch.basic_consume(
                            "s",
                            lambda _c, m, _p, _b: tags.append(m.delivery_tag),
                            arguments={"x-stream-offset": "first"},
                        )
                        deadline = time.monotonic() + DEADLINE_S
                        while not tags and time.monotonic() < deadline:
                            connection.process_data_events(0.05)
                        ch.basic_nack(tags[0], requeue=True)
                        connection.process_data_events(1.0)
            except pika.exceptions.AMQPError as err:
                inner = err.args[0] if isinstance(err.args[0], BaseException) else err
                outcomes.append((type(inner).__name__, getattr(inner, "reply_code", None)))
                with contextlib.suppress(pika.exceptions.AMQPError):
                    connection.close()
        assert outcomes == [
            ("ConnectionClosedByBroker", 540),
            ("ChannelClosedByBroker", 406),
            ("ConnectionClosedByBroker", 540),
            ("ConnectionClosedByBroker", 540),
        ]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aio_pika_reads_a_stream_from_first_with_offsets(tmp_path: Path) -> None:
    with _broker(tmp_path / "data") as broker:
        with anyio.fail_after(DEADLINE_S):
            connection = await aio_pika.connect(broker.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                queue = await channel.declare_queue("s", durable=True, arguments=STREAM)
                for i in range(10):
                    await channel.default_exchange.publish(
                        aio_pika.Message(f"m{i}".encode(), headers={"n": i}), routing_key="s"
                    )
                await channel.set_qos(prefetch_count=4)
                got = []
                async with queue.iterator(arguments={"x-stream-offset": "first"}) as messages:
                    async for message in messages:
                        await message.ack()
                        got.append((message.body, dict(message.headers)))
                        if len(got) == 10:
                            break
        assert got == [(f"m{i}".encode(), {"n": i, "x-stream-offset": i}) for i in range(10)]


def test_the_http_api_shows_a_stream_with_its_log_length(tmp_path: Path) -> None:
    with BrokerProcess("--bind", "127.0.0.1", data_dir=str(tmp_path / "data")) as broker:
        connection, ch = _channel(broker)
        ch.queue_declare("s", durable=True, arguments=STREAM)
        ch.confirm_delivery()
        for i in range(3):
            ch.basic_publish("", "s", f"m{i}".encode())
        declared = ch.queue_declare("s", passive=True).method.message_count
        connection.close()
        read(broker, "first", 3, prefetch=1)  # reading removes nothing
        url = f"http://127.0.0.1:{broker.http_port}/api/queues/%2F/s"
        shown = httpx.get(url, auth=("guest", "guest"), timeout=10).json()
        assert (declared, {key: shown[key] for key in SHOWN}) == (
            0,
            {
                "type": "stream",
                "durable": True,
                "arguments": STREAM,
                "messages": 3,
                "messages_ready": 3,
                "messages_unacknowledged": 0,
            },
        )


SHOWN = ("type", "durable", "arguments", "messages", "messages_ready", "messages_unacknowledged")
