"""Quorum queues on one node: declaration rules, returns and the delivery limit, at-least-once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from core_support import WALL_CLOCK_S, Client, FakeClock, connect, msg

from rapidmq.core import Broker
from rapidmq.core.errors import NotImplementedFeature, PreconditionFailed
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.core.quorum import DEAD_LETTER_RETRY_S
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.storage.memory import MemoryMessageStore

Q = {"x-queue-type": "quorum"}
DEATH_TIME = datetime.fromtimestamp(int(WALL_CLOCK_S), UTC)


def refusal(client: Client, name: str = "q", **kwargs: Any) -> str:
    with pytest.raises(PreconditionFailed) as err:
        client.session.declare_queue(name, **kwargs)
    return err.value.text


def test_quorum_queue_properties_are_refused_in_rabbitmqs_order(client: Client) -> None:
    assert [
        refusal(client, durable=False, arguments=Q),
        refusal(client, durable=True, auto_delete=True, arguments=Q),
        refusal(client, durable=True, exclusive=True, arguments=Q),
        refusal(client, durable=False, exclusive=True, auto_delete=True, arguments=Q),
        refusal(client, durable=False, exclusive=True, arguments=Q),
    ] == [
        "invalid property 'non-durable' for queue 'q' in vhost '/'",
        "invalid property 'auto-delete' for queue 'q' in vhost '/'",
        "invalid property 'exclusive-owner' for queue 'q' in vhost '/'",
        "invalid property 'auto-delete' for queue 'q' in vhost '/'",
        "invalid property 'exclusive-owner' for queue 'q' in vhost '/'",
    ]


def test_unsupported_arguments_are_refused_after_values_and_before_properties(
    client: Client,
) -> None:
    def of_type(module: str, key: str) -> str:
        return f"invalid arg '{key}' for queue 'q' in vhost '/' of queue type {module}"

    assert [
        refusal(client, durable=True, arguments={**Q, "x-max-priority": -1}),
        refusal(client, durable=False, arguments={**Q, "x-queue-mode": "lazy"}),
        refusal(client, durable=True, arguments={**Q, "x-max-priority": 1, "x-queue-version": 2}),
        refusal(client, durable=True, arguments={**Q, "x-message-ttl": -1, "x-max-priority": 1}),
        refusal(client, durable=True, arguments={**Q, "x-max-age": "1D"}),
        refusal(client, durable=True, arguments={**Q, "x-quorum-initial-group-size": 0}),
        refusal(client, durable=True, arguments={"x-delivery-limit": 3}),
        refusal(client, durable=True, arguments={"x-max-in-memory-length": -1}),
        refusal(client, durable=True, arguments={"x-queue-type": "stream", "x-max-priority": 1}),
    ] == [
        of_type("rabbit_quorum_queue", "x-max-priority"),
        of_type("rabbit_quorum_queue", "x-queue-mode"),
        of_type("rabbit_quorum_queue", "x-max-priority"),
        "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}",
        of_type("rabbit_quorum_queue", "x-max-age"),
        "invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': {value_zero,0}",
        of_type("rabbit_classic_queue", "x-delivery-limit"),
        of_type("rabbit_classic_queue", "x-max-in-memory-length"),
        of_type("rabbit_stream_queue", "x-max-priority"),
    ]


def test_quorum_queue_accepts_its_arguments_and_unknown_ones(client: Client) -> None:
    arguments = {
        **Q,
        "x-delivery-limit": "not a number",
        "x-max-in-memory-length": 5,
        "x-quorum-initial-group-size": 3,
        "x-queue-leader-locator": "balanced",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish-dlx",
        "x-message-ttl": 1000,
        "x-custom": 1,
    }
    client.session.declare_queue("q", durable=True, arguments=arguments)
    settings = client.connection.vhost.queues["q"].settings
    # reject-publish-dlx acts as drop-head, so at-least-once falls back to at-most-once.
    assert (settings.delivery_limit, settings.overflow, settings.dead_letter_strategy) == (
        None,
        "drop-head",
        "at-most-once",
    )


def test_returns_are_counted_in_x_delivery_count_and_the_limit_dead_letters(
    client: Client,
) -> None:
    s = client.session
    s.declare_queue("dead")
    s.bind_queue("dead", "amq.fanout", "")
    s.declare_queue(
        "q",
        durable=True,
        arguments={**Q, "x-delivery-limit": 1, "x-dead-letter-exchange": "amq.fanout"},
    )
    s.publish(msg("m", headers={"a": 1}))
    s.consume("q", "c")
    s.reject(1, requeue=True)
    s.reject(2, requeue=True)
    assert [(m.body, m.properties.headers) for m in client.sink.messages] == [
        (b"m", {"a": 1}),
        (b"m", {"a": 1, "x-delivery-count": 1}),
    ]
    assert client.sink.take() == [("deliver", "c", 1, False, b"m"), ("deliver", "c", 2, True, b"m")]
    got = s.get("dead", no_ack=True)
    assert got is not None
    assert got.message.properties.headers == {
        "a": 1,
        "x-death": [
            {
                "count": 1,
                "reason": "delivery_limit",
                "queue": "q",
                "time": DEATH_TIME,
                "exchange": "",
                "routing-keys": ["q"],
            }
        ],
        "x-first-death-exchange": "",
        "x-first-death-queue": "q",
        "x-first-death-reason": "delivery_limit",
    }
    assert s.get("q") is None


def test_basic_get_carries_the_count_from_zero_and_a_closed_channel_counts(
    broker: Broker, client: Client
) -> None:
    s = client.session
    s.declare_queue("q", durable=True, arguments={**Q, "x-delivery-limit": 3})
    s.publish(msg("m"))
    counts = []
    for _ in range(2):
        got = s.get("q")
        assert got is not None
        counts.append((got.redelivered, got.message.properties.headers))
        s.reject(got.delivery_tag, requeue=True)
    other = connect(broker)
    other.session.consume("q", "c")
    other.session.close()
    got = s.get("q")
    assert got is not None
    counts.append((got.redelivered, got.message.properties.headers))
    s.reject(got.delivery_tag, requeue=True)
    assert counts == [
        (False, {"x-delivery-count": 0}),
        (True, {"x-delivery-count": 1}),
        (True, {"x-delivery-count": 3}),
    ]
    assert other.sink.messages[0].properties.headers == {"x-delivery-count": 2}
    assert s.get("q") is None  # the fourth return passed the limit: dropped


def test_classic_queue_deliveries_carry_no_count(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.publish(msg("m"))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=True)
    again = s.get("q")
    assert again is not None
    assert (got.message.properties.headers, again.message.properties.headers) == (None, None)


def test_quorum_queue_refuses_publishes_only_once_over_its_limit(client: Client) -> None:
    s = client.session
    arguments = {**Q, "x-max-length": 1, "x-overflow": "reject-publish"}
    s.declare_queue("q", durable=True, arguments=arguments)
    results = [s.publish(msg(str(i))).rejected for i in range(4)]
    assert results == [False, False, True, True]


def test_consuming_a_quorum_queue_under_global_qos_is_not_implemented(client: Client) -> None:
    s = client.session
    s.declare_queue("q", durable=True, arguments=Q)
    s.set_prefetch(5, global_=True)
    with pytest.raises(NotImplementedFeature) as err:
        s.consume("q", "c")
    assert (err.value.text, err.value.scope) == (
        "queue 'q' in vhost '/' does not support global qos",
        "connection",
    )


def test_at_least_once_holds_dead_letters_until_a_queue_takes_them(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    s = client.session
    arguments = {
        **Q,
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    s.declare_queue("q", durable=True, arguments=arguments)
    s.publish(msg("m"))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)
    queue = broker_queues(broker)["q"]
    assert (queue.ready_count, len(queue.held_dead_letters)) == (0, 1)
    clock.advance(DEAD_LETTER_RETRY_S)
    broker.tick()
    assert len(queue.held_dead_letters) == 1  # still nowhere to go
    s.declare_exchange("dlx", "fanout")
    s.declare_queue("dead")
    s.bind_queue("dead", "dlx", "")
    clock.advance(DEAD_LETTER_RETRY_S)
    broker.tick()
    dead = s.get("dead", no_ack=True)
    assert dead is not None
    assert (dead.message.body, len(queue.held_dead_letters), broker.next_deadline()) == (
        b"m",
        0,
        None,
    )


def test_at_most_once_drops_dead_letters_with_nowhere_to_go(broker: Broker, client: Client) -> None:
    s = client.session
    s.declare_queue("q", durable=True, arguments={**Q, "x-dead-letter-exchange": "dlx"})
    s.publish(msg("m"))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)
    assert broker_queues(broker)["q"].held_dead_letters == []


def test_durable_quorum_queue_stores_transient_messages_and_confirms_after_sync(
    clock: FakeClock,
) -> None:
    persist = Persistence(MemoryMessageStore(), MessageCodec(encode_properties, decode_properties))
    broker = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, persistence=persist)
    client = connect(broker)
    s = client.session
    s.declare_queue("q", durable=True, arguments=Q)
    s.declare_queue("c", durable=True)
    results = [
        s.publish(msg("transient", "q")).batch,
        s.publish(msg("persistent", "q", delivery_mode=2)).batch,
        s.publish(msg("classic transient", "c")).batch,
    ]
    persist.commit()
    kept = [(m.queue[1], m.seq) for m in persist.store.recover()]
    assert (results, kept) == ([1, 1, None], [("q", 1), ("q", 2)])


def broker_queues(broker: Broker) -> dict[str, Any]:
    vhost = broker.vhost("/")
    assert vhost is not None
    return vhost.queues  # type: ignore[return-value]


def test_held_dead_letters_stay_in_the_store_until_a_queue_takes_them(
    clock: FakeClock,
) -> None:
    persist = Persistence(MemoryMessageStore(), MessageCodec(encode_properties, decode_properties))
    broker = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, persistence=persist)
    s = connect(broker).session
    arguments = {
        **Q,
        "x-dead-letter-exchange": "dlx",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    s.declare_queue("q", durable=True, arguments=arguments)
    s.publish(msg("m"))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)

    def kept() -> list[tuple[str, int]]:
        persist.commit()
        return [(m.queue[1], m.seq) for m in persist.store.recover()]

    held = kept()
    s.declare_exchange("dlx", "fanout")
    s.declare_queue("dead")  # not durable: the dead letter leaves the store
    s.bind_queue("dead", "dlx", "")
    clock.advance(DEAD_LETTER_RETRY_S)
    broker.tick()
    assert (held, kept(), broker_queues(broker)["dead"].ready_count) == ([("q", 2)], [], 1)
