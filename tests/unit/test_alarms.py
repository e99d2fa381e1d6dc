from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.core import Broker, Message, Properties, Session
from rapidmq.core.alarms import (
    AlarmCleared,
    AlarmSet,
    BadLimit,
    ResourceAlarms,
    Watermark,
    format_size,
    parse_size,
    parse_watermark,
)
from rapidmq.core.api import ClientInfo
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.core.queue import PAGE_IN_BATCH
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.storage.memory import MemoryMessageStore

MB = 1000**2


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("50MB", 50 * MB),
        ("50 mb", 50 * MB),
        ("512MiB", 512 << 20),
        ("2GiB", 2 << 30),
        ("1.5GB", 1_500_000_000),
        ("1000TB", 1000 * 1000**4),
        ("64kB", 64_000),
        ("64KiB", 65_536),
        ("123", 123),
        ("0", 0),
        (4096, 4096),
    ],
)
def test_sizes_follow_rabbitmq_units(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-5MB", "5 parsecs", "1e9", True, -1, 1.5, None])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(BadLimit):
        parse_size(text)


@given(st.integers(min_value=0, max_value=1 << 60))
def test_a_plain_number_of_bytes_round_trips(size: int) -> None:
    assert parse_size(str(size)) == size


@pytest.mark.parametrize(
    ("value", "watermark"),
    [
        ("0.4", Watermark(fraction=0.4)),
        (0.4, Watermark(fraction=0.4)),
        ("1", Watermark(fraction=1.0)),
        ("512MB", Watermark(size_bytes=512 * MB)),
        ("2GiB", Watermark(size_bytes=2 << 30)),
    ],
)
def test_watermark_is_a_fraction_of_ram_or_a_size(value: object, watermark: Watermark) -> None:
    assert parse_watermark(value) == watermark


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan", "inf", "0MB", "lots", True, None])
def test_bad_watermarks_are_refused(value: object) -> None:
    with pytest.raises(BadLimit):
        parse_watermark(value)


def test_watermark_limit_in_bytes() -> None:
    assert Watermark(fraction=0.4).limit_bytes(24 << 30) == int((24 << 30) * 0.4)
    assert Watermark(size_bytes=150 * MB).limit_bytes(24 << 30) == 150 * MB


def test_format_size() -> None:
    assert [format_size(n) for n in (999, 64_000, 150 * MB, 2 * 1000**3, 3 * 1000**4)] == [
        "999 B",
        "64.0 kB",
        "150.0 MB",
        "2.0 GB",
        "3.0 TB",
    ]


def alarms() -> ResourceAlarms:
    return ResourceAlarms(memory_limit_bytes=100 * MB, disk_free_limit_bytes=50 * MB)


def test_memory_alarm_sets_at_the_watermark_and_clears_below_ninety_percent() -> None:
    a = alarms()
    free = 10_000 * MB
    assert a.update(memory_used_bytes=99 * MB, disk_free_bytes=free) == []
    assert a.active == ()
    assert a.update(memory_used_bytes=100 * MB, disk_free_bytes=free) == [
        AlarmSet("memory", 100 * MB, 100 * MB)
    ]
    assert a.active == ("memory",)
    # Hysteresis: hovering just under the watermark keeps the alarm on.
    assert a.update(memory_used_bytes=95 * MB, disk_free_bytes=free) == []
    assert a.update(memory_used_bytes=90 * MB, disk_free_bytes=free) == []
    assert a.update(memory_used_bytes=89 * MB, disk_free_bytes=free) == [
        AlarmCleared("memory", 89 * MB, 100 * MB)
    ]
    assert a.active == ()
    assert a.update(memory_used_bytes=99 * MB, disk_free_bytes=free) == []


def test_disk_alarm_sets_below_the_limit_and_clears_ten_percent_above_it() -> None:
    a = alarms()
    assert a.update(memory_used_bytes=0, disk_free_bytes=50 * MB) == []
    assert a.update(memory_used_bytes=0, disk_free_bytes=50 * MB - 1) == [
        AlarmSet("disk", 50 * MB - 1, 50 * MB)
    ]
    assert a.update(memory_used_bytes=0, disk_free_bytes=55 * MB) == []
    assert a.active == ("disk",)
    # An unreadable sample changes nothing.
    assert a.update(memory_used_bytes=0, disk_free_bytes=None) == []
    assert a.active == ("disk",)
    assert a.update(memory_used_bytes=0, disk_free_bytes=55 * MB + 1) == [
        AlarmCleared("disk", 55 * MB + 1, 50 * MB)
    ]
    assert a.active == ()


def test_both_alarms_at_once_memory_first() -> None:
    a = alarms()
    assert a.update(memory_used_bytes=200 * MB, disk_free_bytes=0) == [
        AlarmSet("memory", 200 * MB, 100 * MB),
        AlarmSet("disk", 0, 50 * MB),
    ]
    assert a.active == ("memory", "disk")
    assert a.update(memory_used_bytes=0, disk_free_bytes=None) == [
        AlarmCleared("memory", 0, 100 * MB)
    ]
    assert a.active == ("disk",)


def test_paging_starts_at_half_the_watermark_without_hysteresis() -> None:
    a = alarms()
    a.update(memory_used_bytes=50 * MB - 1, disk_free_bytes=None)
    assert not a.paging
    a.update(memory_used_bytes=50 * MB, disk_free_bytes=None)
    assert a.paging
    a.update(memory_used_bytes=49 * MB, disk_free_bytes=None)
    assert not a.paging


def test_statistics_list_the_alarms() -> None:
    a = alarms()
    a.update(memory_used_bytes=120 * MB, disk_free_bytes=80 * MB)
    assert a.statistics() == {
        "alarms": ["memory"],
        "memory_used_bytes": 120 * MB,
        "memory_limit_bytes": 100 * MB,
        "memory_paging_threshold_bytes": 50 * MB,
        "paging": True,
        "disk_free_bytes": 80 * MB,
        "disk_free_limit_bytes": 50 * MB,
        "alarms_set": 1,
    }


# -- paging: bodies of stored messages leave memory and come back on delivery --------------


class Sink:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        self.bodies.append(message.body)

    def consumer_cancelled(self, consumer_tag: str) -> None:
        pass

    def writable(self) -> bool:
        return True


def paging_broker() -> tuple[Persistence, Session, Sink]:
    persist = Persistence(MemoryMessageStore(), MessageCodec(encode_properties, decode_properties))
    broker = Broker(persistence=persist)
    sink = Sink()
    session = broker.connect("/", ClientInfo("amqp091", "127.0.0.1:1", user="guest")).open_session(
        sink
    )
    return persist, session, sink


def body(i: int) -> bytes:
    return i.to_bytes(4, "big") * 100


def test_page_out_drops_stored_bodies_behind_the_head_and_delivery_reads_them_back() -> None:
    persist, session, sink = paging_broker()
    session.declare_queue("q", durable=True)
    session.declare_queue("t", durable=True)
    count = PAGE_IN_BATCH * 3
    for i in range(count):
        session.publish(Message("", "q", body(i), Properties(delivery_mode=2)))
        session.publish(Message("", "t", body(i), Properties(delivery_mode=1)))
    queue = persist.queues[("/", "q")]
    stats_before = queue.statistics()
    dropped = persist.page_out()
    # Transient messages stay; the head batch of the durable queue stays in memory.
    assert dropped == (count - PAGE_IN_BATCH) * 400
    assert list(persist.queues) == [("/", "q")]
    assert queue.paged_bytes == dropped
    assert queue.statistics()["message_bytes_ready"] == stats_before["message_bytes_ready"]
    assert persist.page_out() == 0  # each entry is looked at once
    session.set_prefetch(PAGE_IN_BATCH + 5)
    session.consume("q", "c")
    assert sink.bodies == [body(i) for i in range(PAGE_IN_BATCH + 5)]
    for _ in range(3):
        session.ack(0, multiple=True)  # everything outstanding: credit for the next batch
    assert sink.bodies == [body(i) for i in range(count)]
    assert (queue.paged_bytes, queue.ready_count, persist.paged_out) == (
        0,
        0,
        count - PAGE_IN_BATCH,
    )
    assert persist.paged_in == count - PAGE_IN_BATCH


def test_basic_get_reads_a_paged_body_back_and_purge_forgets_paged_bytes() -> None:
    persist, session, _sink = paging_broker()
    session.declare_queue("q", durable=True)
    for i in range(PAGE_IN_BATCH + 2):
        session.publish(Message("", "q", body(i), Properties(delivery_mode=2)))
    queue = persist.queues[("/", "q")]
    assert persist.page_out() == 2 * 400
    gets = [session.get("q", no_ack=True) for _ in range(PAGE_IN_BATCH + 1)]
    assert [g.message.body for g in gets if g is not None][-1] == body(PAGE_IN_BATCH)
    assert session.purge_queue("q") == 1
    assert (queue.paged_bytes, queue.statistics()["message_bytes_ready"]) == (0, 0)


def test_storage_alarm_is_set_and_cleared_once_and_listed_with_the_others() -> None:
    a = ResourceAlarms(memory_limit_bytes=100 * MB, disk_free_limit_bytes=50 * MB)
    assert a.update(memory_used_bytes=200 * MB, disk_free_bytes=None) == [
        AlarmSet("memory", 200 * MB, 100 * MB)
    ]
    assert a.storage_failed("rapidmq: cannot write (No space left on device)") == [
        AlarmSet("storage", 0, 0)
    ]
    assert a.storage_failed("rapidmq: cannot write (again)") == []
    assert (a.active, a.storage_error, a.set_count) == (
        ("memory", "storage"),
        "rapidmq: cannot write (again)",
        2,
    )
    assert a.statistics()["alarms"] == ["memory", "storage"]
    assert a.storage_recovered() == [AlarmCleared("storage", 0, 0)]
    assert a.storage_recovered() == []
    assert (a.active, a.storage_error) == (("memory",), "")
