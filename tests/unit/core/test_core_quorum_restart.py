"""A quorum queue's count of returns across restarts, on a real RocksDB store."""

from __future__ import annotations

from typing import Any

from core_support import FakeClock, Stores, connect, msg

from rapidmq.core import Broker
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.core.queue import PAGE_IN_BATCH
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.storage.memory import MemoryMessageStore

CODEC = MessageCodec(encode_properties, decode_properties)
Q = {"x-queue-type": "quorum"}
LIMITED = {**Q, "x-delivery-limit": 3, "x-dead-letter-exchange": "amq.fanout"}


def start(stores: Stores, clock: FakeClock, arguments: dict[str, Any]) -> Broker:
    """A broker on the data dir with its queues declared (the metadata a restart restores)."""
    broker = Broker(clock=clock, persistence=Persistence(stores.open(), CODEC))
    s = connect(broker).session
    s.declare_queue("dead", durable=True)
    s.bind_queue("dead", "amq.fanout", "")
    s.declare_queue("q", durable=True, arguments=arguments)
    broker.recover_messages()
    return broker


def test_the_count_of_returns_survives_restarts_and_the_limit_holds_across_them(
    stores: Stores, clock: FakeClock
) -> None:
    broker = start(stores, clock, LIMITED)
    s = connect(broker).session
    s.publish(msg("m", headers={"a": 1}))
    before = []
    for _ in range(2):
        got = s.get("q")
        assert got is not None
        before.append((got.redelivered, got.message.properties.headers))
        s.reject(got.delivery_tag, requeue=True)
    stores.close()

    s = connect(start(stores, clock, LIMITED)).session
    got = s.get("q")
    assert got is not None
    after_restart = (got.redelivered, got.message.properties.headers)
    s.reject(got.delivery_tag, requeue=True)  # the third return: still within the limit
    stores.close()

    broker = start(stores, clock, LIMITED)
    client = connect(broker)
    client.session.consume("q", "c")
    client.session.reject(1, requeue=True)  # the fourth: past the limit
    dead = client.session.get("dead", no_ack=True)
    assert dead is not None
    assert before == [
        (False, {"a": 1, "x-delivery-count": 0}),
        (True, {"a": 1, "x-delivery-count": 1}),
    ]
    assert after_restart == (True, {"a": 1, "x-delivery-count": 2})
    assert client.sink.take() == [("deliver", "c", 1, True, b"m")]
    assert [(m.body, m.properties.headers) for m in client.sink.messages] == [
        (b"m", {"a": 1, "x-delivery-count": 3}),
    ]
    assert (
        dead.message.body,
        dead.message.properties.headers["x-first-death-reason"],
        "x-delivery-count" in dead.message.properties.headers,
        client.session.get("q"),
    ) == (b"m", "delivery_limit", False, None)


def test_recovered_messages_beyond_the_head_window_keep_their_count_while_paged(
    stores: Stores, clock: FakeClock
) -> None:
    count = PAGE_IN_BATCH + 3
    broker = start(stores, clock, Q)
    s = connect(broker).session
    for i in range(count):
        s.publish(msg(f"m{i}"))
    tags = []
    for _ in range(count):
        got = s.get("q")
        assert got is not None
        tags.append(got.delivery_tag)
    s.reject(tags[-1], multiple=True, requeue=True)
    s.publish(msg("never returned"))
    stores.close()

    second = start(stores, clock, Q)
    vhost = second.vhost("/")
    assert vhost is not None
    paged = vhost.queues["q"].paged_count
    client = connect(second)
    client.session.consume("q", "c")
    assert (paged, [(m.body, m.properties.headers) for m in client.sink.messages]) == (
        count + 1 - PAGE_IN_BATCH,
        [(f"m{i}".encode(), {"x-delivery-count": 1}) for i in range(count)]
        + [(b"never returned", None)],
    )


def test_returns_of_a_classic_queue_write_nothing_to_the_store(clock: FakeClock) -> None:
    store = MemoryMessageStore()
    broker = Broker(clock=clock, persistence=Persistence(store, CODEC))
    s = connect(broker).session
    s.declare_queue("classic", durable=True)
    s.declare_queue("quorum", durable=True, arguments=Q)
    pending = {}
    for name in ("classic", "quorum"):
        s.publish(msg("m", name, delivery_mode=2))
        got = s.get(name)
        assert got is not None
        delivered = store.statistics()["pending_ops"]
        s.reject(got.delivery_tag, requeue=True)
        pending[name] = store.statistics()["pending_ops"] - delivered
    assert pending == {"classic": 0, "quorum": 1}
