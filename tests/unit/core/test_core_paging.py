"""Paging against a real RocksDB store: transient bodies, priorities, limits, TTL, recovery."""

from __future__ import annotations

import struct

import pytest
from core_support import FakeClock, Stores, connect, msg

from rapidmq.core import Broker, Message, Properties
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.core.policy import make_policy
from rapidmq.core.queue import PAGE_IN_BATCH, Queue
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.storage.api import StorageError

CODEC = MessageCodec(encode_properties, decode_properties)
COUNT = PAGE_IN_BATCH * 3
BODY_BYTES = 400


def body(i: int) -> bytes:
    return i.to_bytes(4, "big") * (BODY_BYTES // 4)


def new_broker(stores: Stores, clock: FakeClock) -> tuple[Broker, Persistence]:
    persist = Persistence(stores.open(), CODEC)
    return Broker(clock=clock, persistence=persist), persist


def queue_of(broker: Broker, name: str) -> Queue:
    vhost = broker.vhost("/")
    assert vhost is not None
    return vhost.queues[name]


def drain(broker: Broker, name: str) -> list[bytes]:
    s = connect(broker).session
    got = []
    while (result := s.get(name, no_ack=True)) is not None:
        got.append(result.message.body)
    return got


def test_transient_bodies_of_a_non_durable_queue_are_paged_and_read_back_in_order(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q")
    for i in range(COUNT):
        s.publish(msg(body(i)))
    queue = queue_of(broker, "q")
    assert persist.page_out() == (COUNT - PAGE_IN_BATCH) * BODY_BYTES
    assert (queue.paged_bytes, queue.ready_bytes) == (
        (COUNT - PAGE_IN_BATCH) * BODY_BYTES,
        PAGE_IN_BATCH * BODY_BYTES,
    )
    assert persist.store.read_page(("/", "q"), COUNT) == body(COUNT - 1)
    assert persist.store.statistics()["messages"] == 0  # pages are not stored messages
    assert drain(broker, "q") == [body(i) for i in range(COUNT)]
    assert (queue.paged_bytes, persist.paged_in) == (0, COUNT - PAGE_IN_BATCH)
    persist.commit()
    with pytest.raises(StorageError):
        persist.store.read_page(("/", "q"), COUNT)  # read back, then deleted


def test_persistent_messages_of_a_non_durable_queue_are_paged_as_pages(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q")
    for i in range(COUNT):
        s.publish(msg(body(i), delivery_mode=2))
    assert persist.page_out() == (COUNT - PAGE_IN_BATCH) * BODY_BYTES
    assert drain(broker, "q") == [body(i) for i in range(COUNT)]


def test_priority_levels_page_behind_each_head_and_deliver_by_priority(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q", arguments={"x-max-priority": 2})
    for i in range(COUNT):
        s.publish(msg(body(i), priority=i % 2 * 2))
    per_level = COUNT // 2
    assert persist.page_out() == 2 * (per_level - PAGE_IN_BATCH) * BODY_BYTES
    high = [body(i) for i in range(COUNT) if i % 2]
    low = [body(i) for i in range(COUNT) if not i % 2]
    assert drain(broker, "q") == high + low
    assert queue_of(broker, "q").paged_bytes == 0


def test_drop_head_without_dead_lettering_never_reads_a_paged_body(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q", arguments={"x-max-length": COUNT})
    for i in range(COUNT):
        s.publish(msg(body(i)))
    persist.page_out()
    # The head window goes first, then ten paged heads.
    for i in range(COUNT, COUNT + PAGE_IN_BATCH + 10):
        s.publish(msg(body(i)))
    queue = queue_of(broker, "q")
    assert (persist.paged_in, queue.dropped) == (0, PAGE_IN_BATCH + 10)
    persist.commit()
    with pytest.raises(StorageError):
        persist.store.read_page(("/", "q"), PAGE_IN_BATCH + 1)  # the first paged one
    assert drain(broker, "q") == [
        body(i) for i in range(PAGE_IN_BATCH + 10, COUNT + PAGE_IN_BATCH + 10)
    ]
    assert queue.paged_bytes == 0


def test_max_length_bytes_counts_paged_bodies_and_dead_letters_with_the_body(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("dlq")
    s.declare_queue(
        "q",
        arguments={
            "x-max-length-bytes": COUNT * BODY_BYTES,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "dlq",
        },
    )
    for i in range(COUNT):
        s.publish(msg(body(i)))
    persist.page_out()
    for i in range(COUNT, COUNT + PAGE_IN_BATCH + 3):
        s.publish(msg(body(i)))
    # The bytes limit counted the paged bodies; the three paged heads were read back.
    assert persist.paged_in == 3
    assert drain(broker, "dlq") == [body(i) for i in range(PAGE_IN_BATCH + 3)]
    assert drain(broker, "q") == [
        body(i) for i in range(PAGE_IN_BATCH + 3, COUNT + PAGE_IN_BATCH + 3)
    ]


def test_expired_paged_messages_are_dropped_without_a_read_and_pages_deleted(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q", arguments={"x-message-ttl": 1000})
    for i in range(COUNT):
        s.publish(msg(body(i)))
    persist.page_out()
    clock.advance(2)
    queue = queue_of(broker, "q")
    queue.on_timer(clock())
    assert (queue.ready_count, queue.paged_bytes, queue.expired, persist.paged_in) == (
        0,
        0,
        COUNT,
        0,
    )
    persist.commit()
    with pytest.raises(StorageError):
        persist.store.read_page(("/", "q"), COUNT)


def test_expired_paged_messages_are_dead_lettered_with_their_bodies(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("dlq")
    s.declare_queue(
        "q",
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"},
    )
    for i in range(COUNT):
        s.publish(msg(body(i), delivery_mode=2 if i % 2 else 1, expiration="1000"))
    persist.page_out()
    clock.advance(2)
    queue_of(broker, "q").on_timer(clock())
    assert drain(broker, "dlq") == [body(i) for i in range(COUNT)]


def test_purge_and_delete_drop_the_pages(stores: Stores, clock: FakeClock) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    for name in ("a", "b"):
        s.declare_queue(name)
        for i in range(COUNT):
            s.publish(msg(body(i), name))
    persist.page_out()
    assert s.purge_queue("a") == COUNT
    s.delete_queue("b")
    persist.commit()
    for name in ("a", "b"):
        with pytest.raises(StorageError):
            persist.store.read_page(("/", name), COUNT)
    assert list(persist.queues) == [("/", "a")]


def test_recovery_restores_a_long_queue_without_its_bodies(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q", durable=True)
    for i in range(COUNT):
        s.publish(msg(body(i), delivery_mode=2))
    persist.commit()
    stores.close()

    second, persist2 = new_broker(stores, clock)
    connect(second).session.declare_queue("q", durable=True)
    assert second.recover_messages()["messages"] == COUNT
    queue = queue_of(second, "q")
    assert (queue.ready_bytes, queue.paged_bytes) == (
        PAGE_IN_BATCH * BODY_BYTES,
        (COUNT - PAGE_IN_BATCH) * BODY_BYTES,
    )
    assert queue.statistics()["message_bytes_ready"] == COUNT * BODY_BYTES
    assert drain(second, "q") == [body(i) for i in range(COUNT)]
    assert persist2.paged_in == COUNT - PAGE_IN_BATCH


def test_a_recovered_message_ttl_counts_from_its_publish(stores: Stores, clock: FakeClock) -> None:
    broker, persist = new_broker(stores, clock)
    persist.wall_clock = lambda: 1_000_000.0
    s = connect(broker).session
    s.declare_queue("q", durable=True)
    s.publish(msg("ten seconds", delivery_mode=2, expiration="10000"))
    s.publish(msg("a minute", delivery_mode=2, expiration="60000"))
    persist.commit()
    stores.close()

    second, persist2 = new_broker(stores, clock)
    persist2.wall_clock = lambda: 1_000_008.0  # restarted 8 s after the publish
    connect(second).session.declare_queue("q", durable=True)
    second.recover_messages()
    queue = queue_of(second, "q")
    assert queue.next_deadline() == pytest.approx(clock() + 2.0)
    clock.advance(2.5)
    queue.on_timer(clock())
    assert drain(second, "q") == [b"a minute"]


def test_codec_keeps_the_publish_time_and_reads_version_1_records() -> None:
    message = Message("x", "k", b"body", Properties(delivery_mode=2))
    data = CODEC.encode(message, 1_700_000_000.5)
    back, published_at, size = CODEC.decode_record(data, with_body=False)
    assert (back.body, back.routing_key, published_at, size) == (b"", "k", 1_700_000_000.5, 4)
    props = encode_properties(message.properties)
    v1 = struct.pack(">BBHHIII", 1, 0, 1, 1, len(props), 4, 0) + b"xk" + props + b"body"
    old, old_published_at, _ = CODEC.decode_record(v1)
    assert (old.exchange, old.routing_key, old.body, old_published_at) == ("x", "k", b"body", None)
    assert CODEC.decode(CODEC.encode(message)).body == b"body"  # 0: no publish time
    assert CODEC.decode_record(CODEC.encode(message))[1] is None


def test_a_policy_queue_mode_lazy_pages_an_existing_queue_and_clearing_it_stops(
    stores: Stores, clock: FakeClock
) -> None:
    broker, persist = new_broker(stores, clock)
    s = connect(broker).session
    s.declare_queue("q")
    for i in range(COUNT):
        s.publish(msg(body(i), "q"))
    vhost = broker.vhost("/")
    assert vhost is not None
    lazy = {"pattern": "^q$", "definition": {"queue-mode": "lazy"}}
    vhost.set_policy(make_policy("/", "lazy", lazy, operator=False))
    assert persist.page_out_lazy() > 0
    assert queue_of(broker, "q").paged_bytes > 0
    vhost.clear_policy("lazy")
    assert persist.lazy == {}
    assert drain(broker, "q") == [body(i) for i in range(COUNT)]
