"""aio-pika (asyncio) against the broker under test: publish, consume and RPC."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import anyio
import pytest
from compat_support import Scratch

pytestmark = pytest.mark.anyio

STEP_TIMEOUT_S = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_publish_and_consume_with_properties(scratch: Scratch) -> None:
    q = scratch.queue()
    with anyio.fail_after(STEP_TIMEOUT_S):
        conn = await aio_pika.connect(scratch.url, timeout=5)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            queue = await ch.declare_queue(q)
            for i in range(3):
                await ch.default_exchange.publish(
                    aio_pika.Message(
                        f"m{i}".encode(),
                        content_type="text/plain",
                        headers={"n": i},
                        message_id=f"id-{i}",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=q,
                )
            got = []
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        got.append(
                            (
                                message.body,
                                message.content_type,
                                message.headers,
                                message.message_id,
                                message.delivery_mode,
                                message.redelivered,
                            )
                        )
                    if len(got) == 3:
                        break
            assert got == [
                (f"m{i}".encode(), "text/plain", {"n": i}, f"id-{i}", 2, False) for i in range(3)
            ]
            assert await queue.get(fail=False) is None


async def test_rpc_with_reply_to_and_correlation_id(scratch: Scratch) -> None:
    rpc_queue = scratch.queue("rpc")
    with anyio.fail_after(STEP_TIMEOUT_S):
        server_conn = await aio_pika.connect(scratch.url, timeout=5)
        client_conn = await aio_pika.connect(scratch.url, timeout=5)
        async with server_conn, client_conn:
            server_ch = await server_conn.channel()
            requests = await server_ch.declare_queue(rpc_queue)

            async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    n = int(message.body)
                    await server_ch.default_exchange.publish(
                        aio_pika.Message(
                            str(n * n).encode(), correlation_id=message.correlation_id
                        ),
                        routing_key=message.reply_to,
                    )

            await requests.consume(serve)

            client_ch = await client_conn.channel()
            callback = await client_ch.declare_queue("", exclusive=True)
            assert callback.name.startswith("amq.gen-")
            pending: dict[str, asyncio.Future[bytes]] = {}

            async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    future = pending.pop(message.correlation_id or "", None)
                    assert future is not None, f"unexpected reply {message.correlation_id!r}"
                    future.set_result(message.body)

            await callback.consume(on_reply)

            async def call(n: int) -> bytes:
                corr = uuid.uuid4().hex
                future = asyncio.get_running_loop().create_future()
                pending[corr] = future
                await client_ch.default_exchange.publish(
                    aio_pika.Message(str(n).encode(), correlation_id=corr, reply_to=callback.name),
                    routing_key=rpc_queue,
                )
                return await future

            results = await asyncio.gather(*(call(n) for n in range(10)))
            assert results == [str(n * n).encode() for n in range(10)]
            assert pending == {}
