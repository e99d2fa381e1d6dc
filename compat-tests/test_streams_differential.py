"""Streams, RabbitMQ against RapidMQ: the same pika script, the same observations.

Each scenario declares a stream named with the run's token, publishes with
confirms one message at a time (so that each message is a chunk of its own in
both brokers), consumes with an ``x-stream-offset`` and returns the bodies, the
``x-stream-offset`` header values with their AMQP type, and the reply codes and
texts of refusals.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import ObserveBoth, Scratch

pytestmark = pytest.mark.differential

POLL_TIMEOUT_S = 5.0
STREAM = {"x-queue-type": "stream"}

Observation = dict[str, Any]
Scenario = Callable[[Scratch], Observation]
SCENARIOS: list[Scenario] = []


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def stream(s: Scratch, label: str = "s", **arguments: Any) -> str:
    name = s.queue(label)
    s.channel().queue_declare(name, durable=True, arguments={**STREAM, **arguments})
    return name


def publish(s: Scratch, name: str, *bodies: str) -> None:
    ch = s.channel()
    for body in bodies:
        ch.basic_publish("", name, body.encode())


def read(s: Scratch, name: str, offset: Any, count: int) -> list[tuple[str, Any, str]]:
    """(body, x-stream-offset, its AMQP type as pika decodes it) of ``count`` deliveries.

    Deliveries are acked up to the last one, which stays unacked (a stream refuses
    the nack pika would send for a message still buffered when it closes).
    """
    conn = s.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    got: list[tuple[str, Any, str]] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        value = props.headers["x-stream-offset"]
        got.append((body.decode(), int(value), type(value).__name__))
        if len(got) < count:
            channel.basic_ack(method.delivery_tag)

    arguments = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(name, on_message, arguments=arguments)
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    conn.close()
    return got


def refusal(action: Callable[[Any], object], s: Scratch) -> Any:
    """Run ``action`` on a fresh channel; the broker's (code, text), or "no error"."""
    conn = s.connect()
    ch = conn.channel()
    try:
        action(ch)
        conn.process_data_events(time_limit=0.3)
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as exc:
        return (type(exc).__name__, exc.reply_code, exc.reply_text)
    return "no error"


@scenario
def offsets_first_last_next_and_numeric(s: Scratch) -> Observation:
    name = stream(s)
    publish(s, name, *(f"m{i}" for i in range(6)))
    observed: Observation = {}
    for offset in ("first", "last", 2, -3, 5, b"first"):
        observed[repr(offset)] = read(s, name, offset, 6 if offset in ("first", -3) else 1)
    observed["declare-ok message_count"] = (
        s.channel().queue_declare(name, passive=True).method.message_count
    )
    return observed


@scenario
def next_and_past_the_end_wait_for_new_messages(s: Scratch) -> Observation:
    name = stream(s)
    publish(s, name, "m0", "m1")
    conn = s.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple[str, str]] = []
    for tag, offset in (("next", "next"), ("default", None), ("past", 4)):
        arguments = {} if offset is None else {"x-stream-offset": offset}
        ch.basic_consume(
            name,
            lambda _c, m, p, b: got.append((m.consumer_tag, b.decode())),
            consumer_tag=tag,
            arguments=arguments,
        )
    conn.process_data_events(time_limit=0.2)
    before = list(got)
    publish(s, name, "m2", "m3", "m4", "m5")
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while len(got) < 10 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    return {"before": before, "after": sorted(got)}


@scenario
def timestamps_and_intervals(s: Scratch) -> Observation:
    name = stream(s)
    publish(s, name, "m0", "m1")
    # AMQP timestamps are whole seconds: wait until the clock is past the next second.
    boundary = math.ceil(time.time()) + 1
    conn = s.connect()
    while time.time() < boundary:
        conn.process_data_events(time_limit=0.05)
    publish(s, name, "m2", "m3")
    at = datetime.datetime.fromtimestamp(boundary, datetime.UTC)
    hour = datetime.timedelta(hours=1)
    return {
        "at boundary": read(s, name, at, 2),
        "an hour ago": read(s, name, at - hour, 4),
        "in an hour": read(s, name, at + hour, 1),
        "1h": read(s, name, "1h", 4),
        "1D": read(s, name, "1D", 4),
    }


@scenario
def credit_comes_from_acks(s: Scratch) -> Observation:
    name = stream(s)
    publish(s, name, *(f"m{i}" for i in range(5)))
    conn = s.connect()
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2)
    got: list[tuple[str, int]] = []
    ch.basic_consume(
        name,
        lambda _c, m, _p, b: got.append((b.decode(), m.delivery_tag)),
        arguments={"x-stream-offset": "first"},
    )
    steps = []
    for ack in (None, 1, 3, 5):
        if ack is not None:
            ch.basic_ack(ack, multiple=True)
        conn.process_data_events(time_limit=0.3)
        steps.append(list(got))
    return {"steps": steps, "redelivered": False}


@scenario
def declare_refusals(s: Scratch) -> Observation:
    def declare(**kwargs: Any) -> Callable[[Any], object]:
        arguments = {**STREAM, **kwargs.pop("arguments", {})}
        return lambda ch: ch.queue_declare(s.queue("d"), arguments=arguments, **kwargs)

    cases = {
        "exclusive": declare(durable=True, exclusive=True),
        "auto-delete": declare(durable=True, auto_delete=True),
        "non-durable": declare(durable=False),
        "exclusive and auto-delete": declare(durable=True, exclusive=True, auto_delete=True),
        "ttl and non-durable": declare(durable=False, arguments={"x-message-ttl": 5}),
        "max-length": declare(durable=True, arguments={"x-max-length": 5}),
        "dead-letter": declare(durable=True, arguments={"x-dead-letter-exchange": "x"}),
        "priority": declare(durable=True, arguments={"x-max-priority": 5}),
        "overflow": declare(durable=True, arguments={"x-overflow": "reject-publish"}),
        "max-age 10x": declare(durable=True, arguments={"x-max-age": "10x"}),
        "max-age 0s": declare(durable=True, arguments={"x-max-age": "0s"}),
        "segment size longstr": declare(
            durable=True, arguments={"x-stream-max-segment-size-bytes": "a"}
        ),
        "unknown argument": declare(durable=True, arguments={"x-foo": 1}),
    }
    return {label: refusal(action, s) for label, action in cases.items()}


@scenario
def consume_get_purge_and_nack_refusals(s: Scratch) -> Observation:
    name = stream(s)
    publish(s, name, "m0")

    def consume(prefetch: int, offset: Any = "first", **kwargs: Any) -> Callable[[Any], object]:
        def run(ch: Any) -> None:
            if prefetch:
                ch.basic_qos(prefetch_count=prefetch)
            ch.basic_consume(name, lambda *_: None, arguments={"x-stream-offset": offset}, **kwargs)

        return run

    def nack(ch: Any) -> None:
        ch.basic_qos(prefetch_count=1)
        tags: list[int] = []
        ch.basic_consume(
            name,
            lambda _c, m, _p, _b: tags.append(m.delivery_tag),
            arguments={"x-stream-offset": "first"},
        )
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while not tags and time.monotonic() < deadline:
            ch.connection.process_data_events(time_limit=0.05)
        ch.basic_nack(tags[0], requeue=True)

    def global_qos(ch: Any) -> None:
        ch.basic_qos(prefetch_count=5, global_qos=True)
        ch.basic_consume(name, lambda *_: None)

    def two_exclusive(ch: Any) -> None:
        for _ in range(2):
            consume(5, exclusive=True)(ch)

    cases = {
        "no qos": consume(0),
        "global qos only": global_qos,
        "no-ack": consume(5, auto_ack=True),
        "bad offset 10x": consume(5, "10x"),
        "bad offset without qos": consume(0, "10x"),
        "interval 0s": consume(5, "0s"),
        "x-priority": lambda ch: (
            ch.basic_qos(prefetch_count=5)
            or ch.basic_consume(name, lambda *_: None, arguments={"x-priority": 3})
        ),
        "exclusive consumers": two_exclusive,
        "basic.get": lambda ch: ch.basic_get(name),
        "queue.purge": lambda ch: ch.queue_purge(name),
        "basic.nack": nack,
        "delete if-empty": lambda ch: ch.queue_delete(s.queue("e"), if_empty=True),
    }
    return {label: refusal(action, s) for label, action in cases.items()}


@scenario
def retention_starts_first_and_old_offsets_at_the_first_retained(s: Scratch) -> Observation:
    name = stream(s, **{"x-stream-max-segment-size-bytes": 1000, "x-max-length-bytes": 2000})
    publish(s, name, *("x" * 100 for _ in range(60)))
    # RabbitMQ applies retention in the background: read until it has settled.
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        first = read(s, name, "first", 1)
        zero = read(s, name, 0, 1)
        if read(s, name, "first", 1) == first or time.monotonic() > deadline:
            break
    return {
        "the oldest were removed": first[0][1] > 0,
        "offset 0 starts at the first retained": zero == first,
        "fewer than published are kept": len(read(s, name, "first", 60)) < 60,
    }


@pytest.mark.parametrize("run", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_rapidmq_streams_behave_as_rabbitmqs(run: Scenario, observe_both: ObserveBoth) -> None:
    expected, actual = observe_both(run)
    assert actual == expected
