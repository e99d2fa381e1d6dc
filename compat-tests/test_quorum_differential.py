"""Quorum queues, RabbitMQ 3.10 against RapidMQ: the same pika script, the same observations.

Each scenario declares its queues with the per-test token in their names,
drives them with pika and returns what a client sees: refusal codes and texts,
bodies, redelivered flags and headers (``x-delivery-count``, ``x-death`` less
its time), confirms.  The two observations, token replaced, must be equal.
Waiting is on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import ObserveBoth, Scratch

pytestmark = pytest.mark.differential

Scenario = Callable[[Scratch], Any]
SCENARIOS: list[Scenario] = []
Q = {"x-queue-type": "quorum"}
DEADLINE_S = 10.0


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def headers_seen(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """Headers less x-death times, with the AMQP width x-delivery-count came in."""
    if headers is None:
        return headers
    out = dict(headers)
    if "x-death" in out:
        out["x-death"] = [{k: v for k, v in d.items() if k != "time"} for d in out["x-death"]]
    if "x-delivery-count" in out:  # pika decodes a 64-bit long as its own ``long``
        count = out["x-delivery-count"]
        out["x-delivery-count"] = (count, type(count).__name__)
    return out


def get(ch: Any, queue: str) -> tuple[Any, ...] | None:
    """basic.get with ack: (body, redelivered, headers, delivery tag) or None."""
    method, props, body = ch.basic_get(queue)
    if method is None:
        return None
    return body, method.redelivered, headers_seen(props.headers), method.delivery_tag


def wait_get(ch: Any, queue: str) -> tuple[Any, ...] | None:
    """basic.get until a message comes (a dead letter may trail its cause), or None."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        got = get(ch, queue)
        if got is not None:
            return got
        ch.connection.process_data_events(0.02)
    return None


def refusal(s: Scratch, name: str, **kwargs: Any) -> str:
    ch = s.channel(confirm=False)
    try:
        ch.queue_declare(name, **kwargs)
    except pika.exceptions.ChannelClosedByBroker as err:
        return f"{err.reply_code} {err.reply_text}"
    ch.queue_delete(name)
    return "declared"


@scenario
def declare_refusals(s: Scratch) -> Any:
    q = s.queue()
    cases: list[dict[str, Any]] = [
        {"durable": False, "arguments": Q},
        {"durable": True, "auto_delete": True, "arguments": Q},
        {"durable": True, "exclusive": True, "arguments": Q},
        {"durable": False, "exclusive": True, "auto_delete": True, "arguments": Q},
        {"durable": False, "exclusive": True, "arguments": Q},
        {"durable": False, "arguments": {**Q, "x-max-priority": 1}},
        {"durable": False, "arguments": {**Q, "x-message-ttl": -1}},
        {"durable": True, "arguments": {**Q, "x-max-priority": -1}},
        {"durable": True, "arguments": {**Q, "x-max-priority": 1, "x-queue-version": 2}},
        {"durable": True, "arguments": {**Q, "x-queue-version": 2, "x-max-priority": 1}},
        {"durable": True, "arguments": {**Q, "x-max-age": "1D", "x-max-priority": 1}},
        {"durable": True, "arguments": {**Q, "x-message-ttl": -1, "x-max-priority": 1}},
        {"durable": True, "arguments": {**Q, "x-queue-mode": "lazy"}},
        {"durable": True, "arguments": {**Q, "x-queue-master-locator": "client-local"}},
        {"durable": True, "arguments": {**Q, "x-stream-max-segment-size-bytes": 1}},
        {"durable": True, "arguments": {**Q, "x-initial-cluster-size": 1}},
        {"durable": True, "arguments": {**Q, "x-quorum-initial-group-size": 0}},
        {"durable": True, "arguments": {**Q, "x-quorum-initial-group-size": -1}},
        {"durable": True, "arguments": {**Q, "x-dead-letter-strategy": "bad"}},
        {"durable": True, "arguments": {**Q, "x-overflow": "bad"}},
        {"durable": True, "arguments": {**Q, "x-queue-leader-locator": "bad"}},
        {"durable": True, "arguments": {**Q, "x-delivery-limit": "abc", "x-custom": 1}},
        {"durable": True, "arguments": {**Q, "x-max-in-memory-length": 5}},
        {"durable": True, "arguments": {**Q, "x-overflow": "reject-publish-dlx"}},
        {"durable": True, "arguments": {"x-delivery-limit": 3}},
        {"durable": True, "arguments": {"x-dead-letter-strategy": "at-least-once"}},
        {"durable": True, "arguments": {"x-max-in-memory-length": -1}},
        {"durable": True, "arguments": {"x-quorum-initial-group-size": 0}},
        {"durable": True, "arguments": {"x-queue-leader-locator": "balanced"}},
        {"durable": True, "arguments": {"x-message-ttl": -1, "x-delivery-limit": 3}},
        {"durable": True, "arguments": {"x-queue-type": "stream", "x-max-priority": 1}},
        {"durable": True, "arguments": {"x-queue-type": "stream", "x-delivery-limit": 1}},
        {"durable": True, "arguments": {"x-queue-type": "stream", "x-overflow": "drop-head"}},
    ]
    return [refusal(s, q, **kwargs) for kwargs in cases]


@scenario
def redeclare_is_checked_against_the_quorum_queue(s: Scratch) -> Any:
    q = s.queue()
    s.channel(confirm=False).queue_declare(q, durable=True, arguments=Q)
    return [
        refusal(s, q, durable=True),
        refusal(s, q, durable=True, arguments={**Q, "x-delivery-limit": 2}),
        refusal(s, q, durable=True, arguments=Q),
    ]


@scenario
def basic_get_counts_returns_from_zero_and_the_limit_dead_letters(s: Scratch) -> Any:
    q, dead, dlx = s.queue(), s.queue("dead"), s.exchange("dlx")
    ch = s.channel()
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    arguments = {**Q, "x-delivery-limit": 1, "x-dead-letter-exchange": dlx}
    ch.queue_declare(q, durable=True, arguments=arguments)
    ch.basic_publish("", q, b"m", pika.BasicProperties(headers={"a": 1}))
    seen = []
    while (got := get(ch, q)) is not None:
        seen.append(got[:3])
        ch.basic_nack(got[3], requeue=True)
    dead_letter = wait_get(ch, dead)
    return {"seen": seen, "dead": dead_letter and dead_letter[:3]}


@scenario
def consumers_see_the_count_from_the_first_return_and_channel_close_counts(s: Scratch) -> Any:
    q = s.queue()
    ch = s.channel()
    ch.queue_declare(q, durable=True, arguments={**Q, "x-delivery-limit": 5})
    ch.basic_publish("", q, b"m", pika.BasicProperties(delivery_mode=1))
    seen: list[Any] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        seen.append((body, method.redelivered, headers_seen(props.headers), props.delivery_mode))
        if len(seen) < 3:
            channel.basic_reject(method.delivery_tag, requeue=True)

    consumer_ch = s.connect().channel()
    consumer_ch.basic_consume(q, on_message)
    deadline = time.monotonic() + DEADLINE_S
    while len(seen) < 3 and time.monotonic() < deadline:
        consumer_ch.connection.process_data_events(0.02)
    consumer_ch.close()  # the third delivery goes back unacked: one more return
    after = get(ch, q)
    return {"seen": seen, "after_close": after and after[:3]}


@scenario
def multiple_nack_and_basic_recover_each_count_one_return(s: Scratch) -> Any:
    q = s.queue()
    ch = s.channel()
    ch.queue_declare(q, durable=True, arguments={**Q, "x-delivery-limit": 5})
    for body in (b"a", b"b"):
        ch.basic_publish("", q, body)
    rounds = []
    for settle in ("nack multiple", "recover", "ack"):
        got = [get(ch, q), get(ch, q)]
        rounds.append([g and g[:3] for g in got])
        last = got[-1]
        assert last is not None
        if settle == "nack multiple":
            ch.basic_nack(last[3], multiple=True, requeue=True)
        elif settle == "recover":
            ch.basic_recover(requeue=True)
        else:
            ch.basic_ack(last[3], multiple=True)
    return {"rounds": rounds, "left": declared_count(ch, q)}


@scenario
def delivery_limit_zero_drops_at_the_first_return_without_a_dead_letter_exchange(
    s: Scratch,
) -> Any:
    q = s.queue()
    ch = s.channel()
    ch.queue_declare(q, durable=True, arguments={**Q, "x-delivery-limit": 0})
    ch.basic_publish("", q, b"m")
    first = get(ch, q)
    assert first is not None
    ch.basic_reject(first[3], requeue=True)
    return {"first": first[:3], "then": get(ch, q), "count": declared_count(ch, q)}


def declared_count(ch: Any, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


@scenario
def reject_publish_refuses_only_once_over_the_limit(s: Scratch) -> Any:
    q, c = s.queue(), s.queue("classic")
    ch = s.channel()
    ch.queue_declare(
        q, durable=True, arguments={**Q, "x-max-length": 1, "x-overflow": "reject-publish"}
    )
    ch.queue_declare(c, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    results: dict[str, list[str]] = {q: [], c: []}
    for queue in (q, c):
        for i in range(3):
            try:
                ch.basic_publish("", queue, str(i).encode())
                results[queue].append("ack")
            except pika.exceptions.NackError:
                results[queue].append("nack")
    return {"results": results, "counts": [declared_count(ch, q), declared_count(ch, c)]}


@scenario
def reject_publish_dlx_acts_as_drop_head(s: Scratch) -> Any:
    q, dead, dlx = s.queue(), s.queue("dead"), s.exchange("dlx")
    ch = s.channel()
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    arguments = {
        **Q,
        "x-max-length": 1,
        "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": dlx,
    }
    ch.queue_declare(q, durable=True, arguments=arguments)
    ch.basic_publish("", q, b"a")
    ch.basic_publish("", q, b"b")  # confirmed: the head goes instead
    dead_letter = wait_get(ch, dead)
    head = get(ch, q)
    return {"head": head and head[:3], "dead": dead_letter and dead_letter[:3]}


@scenario
def message_ttl_expires_in_a_quorum_queue(s: Scratch) -> Any:
    q, dead, dlx = s.queue(), s.queue("dead"), s.exchange("dlx")
    ch = s.channel()
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dead)
    ch.queue_bind(dead, dlx)
    arguments = {**Q, "x-message-ttl": 50, "x-dead-letter-exchange": dlx}
    ch.queue_declare(q, durable=True, arguments=arguments)
    ch.basic_publish("", q, b"queue ttl")
    ch.basic_publish("", q, b"message ttl", pika.BasicProperties(expiration="20"))
    first = wait_get(ch, dead)
    second = wait_get(ch, dead)
    return [first and first[:3], second and second[:3], get(ch, q)]


@scenario
def global_qos_consumer_on_a_quorum_queue_closes_the_connection(s: Scratch) -> Any:
    q = s.queue()
    s.channel().queue_declare(q, durable=True, arguments=Q)
    ch = s.connect().channel()
    ch.basic_qos(prefetch_count=5, global_qos=True)
    try:
        ch.basic_consume(q, lambda *args: None)
        deadline = time.monotonic() + DEADLINE_S
        while ch.is_open and time.monotonic() < deadline:
            ch.connection.process_data_events(0.02)
    except pika.exceptions.ConnectionClosedByBroker as err:
        return f"{err.reply_code} {err.reply_text}"
    return "consuming"


@scenario
def server_named_quorum_queue_is_refused(s: Scratch) -> Any:
    return refusal(s, "", durable=True, arguments=Q)


@pytest.mark.parametrize("run", SCENARIOS, ids=[fn.__name__ for fn in SCENARIOS])
def test_rapidmq_quorum_queues_behave_as_rabbitmqs(
    run: Scenario, observe_both: ObserveBoth
) -> None:
    expected, actual = observe_both(run)
    assert actual == expected
