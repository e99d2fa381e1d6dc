"""Every unbind case against RabbitMQ and RapidMQ, compared as a client sees them.

RabbitMQ 3.x answers queue.unbind and exchange.unbind with unbind-ok when the
binding is not there, whether or not its source or destination exists; only the
default exchange is refused (403) and an existing binding to another
connection's exclusive queue is locked (405).  aio-pika's RPC pattern relies on
the first rule when it tears down, so it is checked with it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import aio_pika.patterns
import anyio
import pika.exceptions
import pytest
from compat_support import BrokerEndpoint, ObserveBoth, Scratch

Step = Callable[[Any], None]


def outcome(scratch: Scratch, step: Step) -> str:
    """``ok`` or the channel-close code and text one step ends with, on a new channel."""
    ch = scratch.connect().channel()
    try:
        step(ch)
    except pika.exceptions.ChannelClosedByBroker as err:
        return scratch.normalize(f"{err.reply_code} {err.reply_text}")
    return "ok"


def unbind_cases(scratch: Scratch) -> dict[str, str]:
    q, x, gone_q, gone_x = (scratch.queue(), scratch.exchange(), scratch.queue("gone"), "")
    gone_x = scratch.exchange("gone")
    auto_x = scratch.exchange("auto")
    auto_x2 = scratch.exchange("auto2")

    def setup(ch: Any) -> None:
        ch.exchange_declare(x, "direct")
        ch.queue_declare(q)

    def unbind_after_auto_delete(ch: Any) -> None:
        ch.exchange_declare(auto_x, "direct", auto_delete=True)
        ch.queue_bind(q, auto_x, "k")
        ch.queue_unbind(q, auto_x, "k")  # the last binding goes, and the exchange with it
        ch.queue_unbind(q, auto_x, "k")

    def exchange_unbind_after_auto_delete(ch: Any) -> None:
        ch.exchange_declare(auto_x2, "topic", auto_delete=True)
        ch.exchange_bind(x, auto_x2, "a.#")
        ch.exchange_unbind(x, auto_x2, "a.#")
        ch.exchange_unbind(x, auto_x2, "a.#")

    def unbind_twice(ch: Any) -> None:
        ch.queue_bind(q, x, "twice", arguments={"a": 1})
        ch.queue_unbind(q, x, "twice", arguments={"a": 1})
        ch.queue_unbind(q, x, "twice", arguments={"a": 1})

    steps: dict[str, Step] = {
        "setup": setup,
        "queue: missing binding": lambda ch: ch.queue_unbind(q, x, "nokey"),
        "queue: other arguments": lambda ch: ch.queue_unbind(q, x, "k", arguments={"b": 2}),
        "queue: missing source": lambda ch: ch.queue_unbind(q, gone_x, "k"),
        "queue: missing destination": lambda ch: ch.queue_unbind(gone_q, x, "k"),
        "queue: missing both": lambda ch: ch.queue_unbind(gone_q, gone_x, "k"),
        "queue: default exchange": lambda ch: ch.queue_unbind(q, "", q),
        "queue: default exchange, missing queue": lambda ch: ch.queue_unbind(gone_q, "", "k"),
        "queue: after auto-delete chain": unbind_after_auto_delete,
        "queue: twice": unbind_twice,
        "exchange: missing binding": lambda ch: ch.exchange_unbind(x, "amq.direct", "k"),
        "exchange: missing source": lambda ch: ch.exchange_unbind(x, gone_x, "k"),
        "exchange: missing destination": lambda ch: ch.exchange_unbind(gone_x, x, "k"),
        "exchange: missing both": lambda ch: ch.exchange_unbind(gone_x, gone_x + "2", "k"),
        "exchange: default source": lambda ch: ch.exchange_unbind(x, "", "k"),
        "exchange: default destination": lambda ch: ch.exchange_unbind("", x, "k"),
        "exchange: after auto-delete chain": exchange_unbind_after_auto_delete,
    }
    seen = {name: outcome(scratch, step) for name, step in steps.items()}
    seen.update(exclusive_cases(scratch, x))
    return seen


def exclusive_cases(scratch: Scratch, x: str) -> dict[str, str]:
    """Unbinds by a second connection of the first one's exclusive queue."""
    owner = scratch.connect().channel()
    q = owner.queue_declare("", exclusive=True).method.queue
    owner.queue_bind(q, x, "bound")
    token = scratch.token
    seen = {
        "exclusive: missing binding": outcome(scratch, lambda ch: ch.queue_unbind(q, x, "none")),
        "exclusive: missing source": outcome(
            scratch, lambda ch: ch.queue_unbind(q, f"compat-nox-{token}", "k")
        ),
        "exclusive: existing binding": outcome(scratch, lambda ch: ch.queue_unbind(q, x, "bound")),
    }
    # Server-named queues differ per broker; the texts quote them.
    return {name: text.replace(q, "QUEUE") for name, text in seen.items()}


@pytest.mark.differential
def test_every_unbind_case_matches_rabbitmq(observe_both: ObserveBoth) -> None:
    expected, actual = observe_both(unbind_cases)
    assert actual == expected
    # The cases that prove the 3.x rule, so that a RabbitMQ answering otherwise is noticed.
    assert expected["queue: missing source"] == "ok"
    assert expected["exchange: after auto-delete chain"] == "ok"


async def rpc_round_trip(url: str) -> list[int]:
    """aio-pika's RPC pattern: register a method, call it, close both sides."""
    results = []
    with anyio.fail_after(20):
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            channel = await connection.channel()
            rpc = await aio_pika.patterns.RPC.create(channel)
            method = f"double-{uuid.uuid4().hex[:8]}"

            async def double(*, x: int) -> int:
                return x * 2

            await rpc.register(method, double, auto_delete=True)
            for x in (1, 2, 21):
                results.append(await rpc.call(method, kwargs={"x": x}))
            await rpc.close()  # unbinds from the rpc.dlx exchange that may be gone already
    return results


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_aio_pika_rpc_pattern_calls_and_closes(rapidmq: BrokerEndpoint) -> None:
    assert await rpc_round_trip(rapidmq.amqp_url) == [2, 4, 42]
