"""connection.update-secret from real clients: pika (blocking) and aio-pika / aiormq.

A right secret is answered with update-secret-ok and the connection goes on; a
wrong one closes it with 530.  RabbitMQ's internal backend accepts any secret
(see test_update_secret_differential.py), so the refusal tests run against
RapidMQ only.
"""

from __future__ import annotations

import os

import aio_pika
import aiormq
import aiormq.exceptions
import anyio
import pika
import pika.exceptions
import pytest
from compat_support import Scratch

STEP_TIMEOUT_S = 10.0
REFUSED_TEXT = "NOT_ALLOWED - New secret was refused by one of the backends"

needs_rapidmq = pytest.mark.skipif(
    bool(os.environ.get("RAPIDMQ_COMPAT_URL")),
    reason="RabbitMQ's internal backend accepts any new secret; RapidMQ checks it",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_pika_update_secret_then_publish_and_get(scratch: Scratch) -> None:
    conn = scratch.connect()
    conn.update_secret("guest", "token refresh")
    ch = conn.channel()
    ch.confirm_delivery()
    queue = scratch.queue()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"m")
    _method, _props, body = ch.basic_get(queue, auto_ack=True)
    assert (body, conn.is_open) == (b"m", True)


@needs_rapidmq
def test_pika_update_secret_with_a_wrong_secret_is_closed_with_530(scratch: Scratch) -> None:
    conn = scratch.connect()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.update_secret("wrong", "token refresh")
    assert (info.value.reply_code, info.value.reply_text) == (530, REFUSED_TEXT)
    assert conn.is_closed


@pytest.mark.anyio
async def test_aio_pika_update_secret_then_publish_and_get(scratch: Scratch) -> None:
    queue_name = scratch.queue()
    with anyio.fail_after(STEP_TIMEOUT_S):
        conn = await aio_pika.connect(scratch.url, timeout=5)
        async with conn:
            await conn.update_secret("guest", reason="token refresh")
            ch = await conn.channel()
            queue = await ch.declare_queue(queue_name)
            await ch.default_exchange.publish(aio_pika.Message(b"m"), routing_key=queue_name)
            message = await queue.get(timeout=5)
            await message.ack()
            assert message.body == b"m"


@needs_rapidmq
@pytest.mark.anyio
async def test_aiormq_update_secret_with_a_wrong_secret_is_closed_with_530(
    scratch: Scratch,
) -> None:
    with anyio.fail_after(STEP_TIMEOUT_S):
        conn = await aiormq.connect(scratch.url)
        try:
            with pytest.raises(aiormq.exceptions.ConnectionNotAllowed) as info:
                await conn.update_secret("wrong", reason="token refresh")
            assert info.value.args[0] == REFUSED_TEXT
        finally:
            await conn.close()
