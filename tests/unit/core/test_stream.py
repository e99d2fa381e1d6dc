"""Stream queues in the core: the log, offsets, retention, readers and durability."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from core_support import Client, FakeClock, connect, msg

from rapidmq.core import Broker, Message, Properties
from rapidmq.core.errors import NotImplementedFeature, PreconditionFailed
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.core.stream import StreamQueue
from rapidmq.protocols.amqp091.properties import (
    decode_properties,
    encode_properties,
    long_header_writer,
)
from rapidmq.storage import open_stores
from rapidmq.storage.memory import MemoryMessageStore, MemoryMetadataStore

STREAM = {"x-queue-type": "stream"}
CODEC = MessageCodec(encode_properties, decode_properties, long_header_writer)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def broker(clock: FakeClock, wall: FakeClock) -> Broker:
    return Broker(clock=clock, wall_clock=wall)


def declare(client: Client, name: str = "s", **arguments: Any) -> StreamQueue:
    client.session.declare_queue(name, durable=True, arguments={**STREAM, **arguments})
    queue = client.session.vhost.queues[name]
    assert isinstance(queue, StreamQueue)
    return queue


def publish(client: Client, *bodies: str, name: str = "s") -> None:
    for body in bodies:
        client.session.publish(msg(body, name))


def consume(client: Client, offset: Any = None, prefetch: int = 100, tag: str = "c") -> None:
    client.session.set_prefetch(prefetch)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    client.session.consume("s", tag, arguments=arguments)


def delivered(client: Client) -> list[tuple[str, int, bytes, int]]:
    """(consumer tag, delivery tag, body, x-stream-offset) of each delivery so far."""
    events = client.sink.take()
    messages, client.sink.messages = client.sink.messages, []
    return [
        (event[1], event[2], event[4], message.properties.headers["x-stream-offset"])  # type: ignore[index]
        for event, message in zip(events, messages, strict=True)
    ]


def bodies(client: Client) -> list[bytes]:
    return [body for _, _, body, _ in delivered(client)]


def test_consuming_does_not_remove_messages_and_each_delivery_carries_its_offset(
    client: Client,
) -> None:
    declare(client)
    publish(client, "a", "b", "c")
    consume(client, "first")
    assert delivered(client) == [("c", 1, b"a", 0), ("c", 2, b"b", 1), ("c", 3, b"c", 2)]
    client.session.ack(3, multiple=True)
    other = connect(client.connection.broker)
    consume(other, "first", tag="d")
    assert bodies(other) == [b"a", b"b", b"c"]


def test_the_offset_header_joins_the_message_headers_as_a_64_bit_long(client: Client) -> None:
    declare(client)
    client.session.publish(msg("a", "s", headers={"h": 1}))
    consume(client, "first")
    message = client.sink.messages[0]
    assert message.properties.headers == {"h": 1, "x-stream-offset": 0}
    assert encode_properties(message.properties).endswith(b"\x0fx-stream-offsetl" + bytes(8))


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("first", [b"m0", b"m1", b"m2", b"m3"]),
        ("last", [b"m3"]),
        ("next", []),
        (None, []),
        (2, [b"m2", b"m3"]),
        (-5, [b"m0", b"m1", b"m2", b"m3"]),
        (4, []),
        (b"first", [b"m0", b"m1", b"m2", b"m3"]),
    ],
)
def test_a_consumer_starts_where_x_stream_offset_says(
    client: Client, offset: Any, expected: list[bytes]
) -> None:
    declare(client)
    publish(client, "m0", "m1", "m2", "m3")
    consume(client, offset)
    assert bodies(client) == expected
    publish(client, "m4")
    assert bodies(client) == [b"m4"]


def test_an_offset_past_the_end_waits_for_that_offset(client: Client) -> None:
    declare(client)
    publish(client, "m0")
    consume(client, 3)
    publish(client, "m1", "m2")
    assert bodies(client) == []
    publish(client, "m3", "m4")
    assert bodies(client) == [b"m3", b"m4"]


def test_timestamps_and_intervals_start_at_the_first_chunk_written_at_or_after_them(
    client: Client, wall: FakeClock
) -> None:
    declare(client)
    start = wall.now
    publish(client, "m0")
    wall.advance(3600)
    publish(client, "m1")
    wall.advance(60)
    publish(client, "m2")
    consume(client, datetime.fromtimestamp(start + 1, UTC), tag="t")
    assert bodies(client) == [b"m1", b"m2"]
    consume(client, "30s", tag="i")
    assert bodies(client) == [b"m2"]
    consume(client, "2h", tag="j")
    assert bodies(client) == [b"m0", b"m1", b"m2"]
    consume(client, datetime.fromtimestamp(wall.now + 60, UTC), tag="f")
    assert bodies(client) == []


@pytest.mark.parametrize(
    ("offset", "shown"),
    [
        ("10x", '{longstr,<<"10x">>}'),
        ("0s", '{longstr,<<"0s">>}'),
        ("bogus", '{longstr,<<"bogus">>}'),
        (True, "{bool,true}"),
    ],
)
def test_a_bad_offset_is_refused_with_rabbitmqs_text(
    client: Client, offset: Any, shown: str
) -> None:
    declare(client)
    with pytest.raises(PreconditionFailed) as err:
        consume(client, offset)
    assert err.value.text == (
        f"invalid arg 'x-stream-offset' for queue 's' in vhost '/': "
        f"{{invalid_stream_offset_arg,{shown}}}"
    )
    assert client.session.consumers == {}


def test_credit_comes_from_acks_and_acks_remove_nothing(client: Client) -> None:
    queue = declare(client)
    publish(client, *(f"m{i}" for i in range(5)))
    consume(client, "first", prefetch=2)
    assert bodies(client) == [b"m0", b"m1"]
    client.session.ack(1)
    assert bodies(client) == [b"m2"]
    client.session.ack(3, multiple=True)
    assert bodies(client) == [b"m3", b"m4"]
    assert (queue.count, queue.statistics()["messages"]) == (5, 5)


def test_many_consumers_read_at_their_own_offsets(broker: Broker) -> None:
    clients = [connect(broker) for _ in range(3)]
    declare(clients[0])
    publish(clients[0], "m0", "m1", "m2")
    for client, offset in zip(clients, ["first", 1, "last"], strict=True):
        consume(client, offset, prefetch=10)
    publish(clients[0], "m3")
    assert [bodies(c) for c in clients] == [
        [b"m0", b"m1", b"m2", b"m3"],
        [b"m1", b"m2", b"m3"],
        [b"m2", b"m3"],
    ]


def test_a_consumer_restarting_from_its_last_acked_offset_plus_one_continues_exactly(
    client: Client,
) -> None:
    declare(client)
    publish(client, *(f"m{i}" for i in range(6)))
    consume(client, "first", prefetch=3)
    seen = delivered(client)
    client.session.ack(seen[1][1], multiple=True)
    last_acked = seen[1][3]
    client.session.close()
    again = connect(client.connection.broker)
    consume(again, last_acked + 1)
    assert bodies(again) == [b"m2", b"m3", b"m4", b"m5"]


def test_retention_by_bytes_removes_whole_closed_segments(client: Client) -> None:
    queue = declare(client, **{"x-stream-max-segment-size-bytes": 30, "x-max-length-bytes": 50})
    publish(client, *(f"message-{i}" for i in range(10)))  # 9 body bytes each
    # Segments of 4 messages (36 bytes); a closed one goes while over 50 bytes.
    assert (queue.first, queue.next, queue.count, queue.statistics()["segments"]) == (4, 10, 6, 2)
    consume(client, 0)
    assert [offset for _, _, _, offset in delivered(client)] == [4, 5, 6, 7, 8, 9]


def test_retention_by_age_runs_on_the_timer_and_keeps_the_open_segment(
    broker: Broker, client: Client, clock: FakeClock, wall: FakeClock
) -> None:
    queue = declare(client, **{"x-stream-max-segment-size-bytes": 4, "x-max-age": "1h"})
    publish(client, "aaaa", "bbbb")
    wall.advance(1800)
    publish(client, "cccc")
    deadline = broker.next_deadline()
    assert deadline == clock.now + 1800
    wall.advance(1801)
    clock.advance(1801)
    broker.tick()
    assert (queue.first, queue.count) == (2, 1)
    wall.advance(7200)
    clock.advance(7200)
    broker.tick()
    assert (queue.first, queue.count) == (2, 1)  # the open segment stays
    assert broker.next_deadline() is None


def test_apply_settings_retains_with_the_new_limits(client: Client) -> None:
    queue = declare(client, **{"x-stream-max-segment-size-bytes": 4})
    publish(client, "aaaa", "bbbb", "cccc")
    queue.apply_settings(
        queue.settings.__class__(
            queue_type="stream", max_length_bytes=4, stream_max_segment_size_bytes=4
        )
    )
    assert (queue.first, queue.count) == (2, 1)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"exclusive": True}, "invalid property 'exclusive-owner' for queue 's' in vhost '/'"),
        ({"auto_delete": True}, "invalid property 'auto-delete' for queue 's' in vhost '/'"),
        ({"durable": False}, "invalid property 'non-durable' for queue 's' in vhost '/'"),
        (
            {"arguments": {"x-message-ttl": 5}},
            "invalid arg 'x-message-ttl' for queue 's' in vhost '/' of queue type "
            "rabbit_stream_queue",
        ),
        (
            {"arguments": {"x-max-age": "0s"}},
            "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age",
        ),
    ],
)
def test_what_a_stream_cannot_be_is_refused_at_declare(
    client: Client, kwargs: dict[str, Any], text: str
) -> None:
    arguments = {**STREAM, **kwargs.pop("arguments", {})}
    options = {"durable": True, **kwargs}
    with pytest.raises(PreconditionFailed) as err:
        client.session.declare_queue("s", arguments=arguments, **options)
    assert err.value.text == text
    assert "s" not in client.session.vhost.queues


def test_consumers_must_set_a_prefetch_and_acknowledge(client: Client) -> None:
    declare(client)
    with pytest.raises(PreconditionFailed) as refused:
        client.session.consume("s", "c")
    client.session.set_prefetch(5)
    with pytest.raises(NotImplementedFeature) as no_ack:
        client.session.consume("s", "c", no_ack=True)
    assert (refused.value.text, no_ack.value.text, no_ack.value.scope) == (
        "consumer prefetch count is not set for 'queue 's' in vhost '/''",
        "automatic acknowledgement not supported by stream queues queue 's' in vhost '/'",
        "connection",
    )


def test_get_purge_and_reject_are_not_implemented_on_streams(client: Client) -> None:
    declare(client)
    publish(client, "a")
    texts = []
    for call in (
        lambda: client.session.get("s"),
        lambda: client.session.purge_queue("s"),
    ):
        with pytest.raises(NotImplementedFeature) as err:
            call()
        texts.append(err.value.text)
    consume(client, "first")
    with pytest.raises(NotImplementedFeature) as err:
        client.session.reject(1, requeue=True)
    texts.append(err.value.text)
    assert texts == [
        "basic.get not supported by stream queues queue 's' in vhost '/'",
        "queue.purge not supported by stream queues queue 's' in vhost '/'",
        "basic.nack and basic.reject not supported by stream queues queue 's' in vhost '/'",
    ]


def _durable_broker(clock: FakeClock, wall: FakeClock, store: Any, metadata: Any) -> Broker:
    broker = Broker(
        clock=clock,
        wall_clock=wall,
        metadata=metadata,
        persistence=Persistence(store, CODEC),
    )
    broker.restore()
    return broker


def test_chunks_are_group_commit_batches_and_last_starts_at_the_last_one(
    clock: FakeClock, wall: FakeClock
) -> None:
    store = MemoryMessageStore()
    broker = _durable_broker(clock, wall, store, MemoryMetadataStore())
    client = connect(broker)
    declare(client)
    publish(client, "m0")
    assert broker.persistence is not None
    broker.persistence.commit()
    publish(client, "m1", "m2")  # one batch: one chunk
    consume(client, "last")
    assert bodies(client) == [b"m1", b"m2"]


def test_a_transient_message_to_a_stream_is_stored_and_confirmed_after_the_sync(
    clock: FakeClock, wall: FakeClock
) -> None:
    broker = _durable_broker(clock, wall, MemoryMessageStore(), MemoryMetadataStore())
    client = connect(broker)
    declare(client)
    assert client.session.publish(msg("a", "s")).batch == 1


def test_a_stream_in_rocksdb_survives_a_restart_with_offsets_chunks_and_segments(
    tmp_path: Path, clock: FakeClock, wall: FakeClock
) -> None:
    metadata, store = open_stores(str(tmp_path), "rocksdb")
    broker = _durable_broker(clock, wall, store, metadata)
    client = connect(broker)
    declare(client, **{"x-stream-max-segment-size-bytes": 4, "x-max-length-bytes": 8})
    persistence = broker.persistence
    assert persistence is not None
    publish(client, "aaaa", "bbbb", "cccc")  # one batch: one chunk, one segment
    persistence.commit()
    publish(client, "dddd", "eeee")  # a new segment: the first goes (20 bytes > 8)
    persistence.commit()
    store.close()
    metadata.close()

    metadata, store = open_stores(str(tmp_path), "rocksdb")
    try:
        broker = _durable_broker(clock, wall, store, metadata)
        queue = broker.vhost("/").queues["s"]  # type: ignore[union-attr]
        assert isinstance(queue, StreamQueue)
        client = connect(broker)
        consume(client, "first")
        assert [(b, o) for _, _, b, o in delivered(client)] == [(b"dddd", 3), (b"eeee", 4)]
        consume(client, "last", tag="l")
        assert bodies(client) == [b"dddd", b"eeee"]
        publish(client, "ffff")
        assert [o for _, _, _, o in delivered(client)] == [5, 5]
    finally:
        store.close()
        metadata.close()


def test_a_reader_far_behind_reads_from_the_store_in_order(
    tmp_path: Path, clock: FakeClock, wall: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rapidmq.core.stream.CACHE_BYTES", 64)
    metadata, store = open_stores(str(tmp_path), "rocksdb")
    try:
        broker = _durable_broker(clock, wall, store, metadata)
        client = connect(broker)
        queue = declare(client)
        publish(client, *(f"m{i:03d}" for i in range(1000)))
        assert len(queue._cache) < 40
        consume(client, "first", prefetch=2000)
        assert bodies(client) == [f"m{i:03d}".encode() for i in range(1000)]
    finally:
        store.close()
        metadata.close()


def test_a_batch_decode_of_stream_records_equals_decoding_each() -> None:
    messages = [
        Message("x", "k", b"one", Properties(delivery_mode=2)),
        Message("x", "k", b"two", Properties(delivery_mode=2)),
        Message("", "other", b"", Properties(headers={"h": [1, "a"]}, priority=4)),
        Message("x", "k", b"four", Properties(), annotations={"qos": 1, "retain": True}),
    ]
    records = [b"\x01" + CODEC.encode(m, 1_700_000_000.0) for m in messages]
    decoded = CODEC.decode_all(records, 1)
    expected = [CODEC.decode(record[1:]) for record in records]
    seen = [
        (m.exchange, m.routing_key, m.body, m.properties, m.encoded_properties, m.annotations)
        for m in decoded
    ]
    assert seen == [
        (m.exchange, m.routing_key, m.body, m.properties, m.encoded_properties, m.annotations)
        for m in expected
    ]
    with pytest.raises(ValueError):
        CODEC.decode_all([records[0][:-1]], 1)


def test_a_reader_that_retention_passed_resumes_at_the_first_retained_offset(
    client: Client,
) -> None:
    declare(client, **{"x-stream-max-segment-size-bytes": 2, "x-max-length-bytes": 4})
    publish(client, "aa")
    consume(client, "first", prefetch=1)
    assert bodies(client) == [b"aa"]
    publish(client, *(f"{i}{i}" for i in range(1, 6)))  # segments of one; two are kept
    client.session.ack(1)
    assert [(b, o) for _, _, b, o in delivered(client)] == [(b"44", 4)]


def test_closing_a_session_releases_its_stream_deliveries_and_deleting_cancels_readers(
    broker: Broker, client: Client
) -> None:
    queue = declare(client)
    publish(client, "a", "b")
    reader = connect(broker)
    consume(reader, "first")
    assert (queue.unacked_count, queue.statistics()["consumers"]) == (2, 1)
    reader.session.close()
    assert (queue.unacked_count, queue.statistics()["consumers"]) == (0, 0)
    other = connect(broker)
    consume(other, "first", tag="o")
    client.session.delete_queue("s")
    assert other.sink.take()[-1] == ("cancelled", "o")
    assert "s" not in client.session.vhost.queues


def test_a_global_prefetch_also_limits_stream_deliveries(client: Client) -> None:
    declare(client)
    publish(client, *(f"m{i}" for i in range(5)))
    client.session.set_prefetch(2, global_=True)
    consume(client, "first", prefetch=10)
    assert bodies(client) == [b"m0", b"m1"]
    client.session.ack(2, multiple=True)
    assert bodies(client) == [b"m2", b"m3"]
