"""``consumer_utilisation`` over the management API, with a real pika consumer.

The server runs on the real monotonic clock, so the test waits for conditions
with a deadline and asserts the direction of the figure, not its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pika
import pytest

from rapidmq.server import Server

pytestmark = pytest.mark.anyio

DEADLINE_S = 10.0
PREFETCH = 2
PUBLISHED = 5


async def wait_for(api: httpx.AsyncClient, path: str, ready: Callable[[Any], bool]) -> Any:
    """GET ``path`` until ``ready(body)``; fails at the deadline."""
    with anyio.fail_after(DEADLINE_S):
        while True:
            body = (await api.get(path)).json()
            if ready(body):
                return body
            await anyio.sleep(0.02)


def figures(body: Any) -> tuple[Any, ...]:
    return (
        body["consumers"],
        body["messages_ready"],
        body["messages_unacknowledged"],
        body["consumer_capacity"] == body["consumer_utilisation"],
    )


async def test_a_consumer_whose_prefetch_stays_full_pulls_utilisation_below_one(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    path = "/api/queues/%2F/slow"
    assert (await api.put(path, json={})).status_code == 201
    port = admin_server.ports["amqp"]
    assert port is not None
    params = pika.ConnectionParameters("127.0.0.1", port, heartbeat=0)
    connection = await anyio.to_thread.run_sync(pika.BlockingConnection, params)
    try:
        channel = await anyio.to_thread.run_sync(connection.channel)

        def consume_without_acking() -> None:
            channel.basic_qos(prefetch_count=PREFETCH)
            channel.basic_consume("slow", lambda *delivery: None)

        await anyio.to_thread.run_sync(consume_without_acking)
        idle = await wait_for(api, path, lambda b: b["consumers"] == 1)

        def publish() -> None:
            for i in range(PUBLISHED):
                channel.basic_publish("", "slow", f"m{i}".encode())

        await anyio.to_thread.run_sync(publish)
        blocked = await wait_for(api, path, lambda b: b["messages_ready"] == PUBLISHED - PREFETCH)
        first = blocked["consumer_utilisation"]
        later = await wait_for(api, path, lambda b: b["consumer_utilisation"] < first)
    finally:
        await anyio.to_thread.run_sync(connection.close)
    assert (figures(idle), idle["consumer_utilisation"]) == ((1, 0, 0, True), 1.0)
    assert (figures(blocked), figures(later)) == (
        (1, PUBLISHED - PREFETCH, PREFETCH, True),
        (1, PUBLISHED - PREFETCH, PREFETCH, True),
    )
    assert 0.0 < later["consumer_utilisation"] < first <= 1.0
