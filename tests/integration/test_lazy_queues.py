"""Lazy queues (``x-queue-mode=lazy``): bodies go to the store at once, not at the watermark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pika
import pytest

from rapidmq.server import Server
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio

COUNT = 600
BODY = 2048


@pytest.fixture
async def server(anyio_backend: str, tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(storage="rocksdb", data_dir=str(tmp_path)) as srv:
        yield srv


def params(server: Server) -> pika.ConnectionParameters:
    port = server.ports["amqp"]
    assert port is not None
    return pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1)


def fill(server: Server) -> None:
    conn = pika.BlockingConnection(params(server))
    try:
        channel = conn.channel()
        channel.queue_declare("lazy", durable=True, arguments={"x-queue-mode": "lazy"})
        channel.queue_declare("eager", durable=True)
        for i in range(COUNT):
            # Persistent and transient alike: a lazy queue pages both.
            props = pika.BasicProperties(delivery_mode=2 if i % 2 else 1)
            body = i.to_bytes(4, "big") + bytes(BODY - 4)
            channel.basic_publish("", "lazy", body, props)
            channel.basic_publish("", "eager", body, props)
        channel.queue_declare("lazy", passive=True)  # a round trip: all were read
    finally:
        conn.close()


def drain(server: Server, queue: str) -> list[int]:
    conn = pika.BlockingConnection(params(server))
    seen: list[int] = []
    try:
        channel = conn.channel()
        for method, _props, body in channel.consume(queue, auto_ack=True, inactivity_timeout=5):
            if method is None:
                break
            assert len(body) == BODY
            seen.append(int.from_bytes(body[:4], "big"))
            if len(seen) == COUNT:
                break
        channel.cancel()
    finally:
        conn.close()
    return seen


async def test_a_lazy_queue_pages_its_bodies_out_without_memory_pressure(server: Server) -> None:
    assert not server.alarms.paging  # far below the watermark: only laziness pages
    await anyio.to_thread.run_sync(fill, server)
    vhost = server.broker.vhost("/")
    assert vhost is not None
    lazy, eager = vhost.queues["lazy"], vhost.queues["eager"]
    with anyio.fail_after(5):
        while lazy.statistics()["message_bytes_paged_out"] < (COUNT - 200) * BODY:
            await anyio.sleep(0.05)
    assert eager.statistics()["message_bytes_paged_out"] == 0
    assert lazy.ready_count == eager.ready_count == COUNT
    # Every body comes back, in order.
    assert await anyio.to_thread.run_sync(drain, server, "lazy") == list(range(COUNT))
    assert await anyio.to_thread.run_sync(drain, server, "eager") == list(range(COUNT))


async def test_a_deleted_lazy_queue_is_no_longer_paged(server: Server) -> None:
    await anyio.to_thread.run_sync(fill, server)
    persistence = server.broker.persistence
    assert persistence is not None and ("/", "lazy") in persistence.lazy

    def delete() -> None:
        conn = pika.BlockingConnection(params(server))
        try:
            conn.channel().queue_delete("lazy")
        finally:
            conn.close()

    await anyio.to_thread.run_sync(delete)
    assert ("/", "lazy") not in persistence.lazy
