"""Message stores: batches, recovery order, delivered flags and returns, statistics, crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapidmq.storage import MessageStore, StoredMessage, open_stores
from rapidmq.storage.datadir import lock_data_dir, open_database
from rapidmq.storage.records import encode_key

Q1 = ("/", "orders")
Q2 = ("/", "orders\x00")
Q3 = ("other", "a")


@pytest.fixture(params=["memory", "rocksdb"])
def messages(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageStore]:
    metadata, store = open_stores(str(tmp_path / "data"), request.param)
    yield store
    store.close()
    metadata.close()


def _reopen(data_dir: Path) -> tuple[list[StoredMessage], dict[str, object]]:
    metadata, store = open_stores(str(data_dir), "rocksdb")
    try:
        recovered = list(store.recover())
        statistics = store.statistics()
    finally:
        store.close()
        metadata.close()
    return recovered, statistics


def test_recover_groups_by_queue_in_sequence_order(messages: MessageStore) -> None:
    for queue, seq in [(Q3, 1), (Q1, 300), (Q2, 5), (Q1, 2), (Q1, 2**40)]:
        messages.add(queue, seq, f"{queue[1]}:{seq}".encode())
    messages.commit()

    assert [(m.queue, m.seq, m.data) for m in messages.recover()] == [
        (Q1, 2, b"orders:2"),
        (Q1, 300, b"orders:300"),
        (Q1, 2**40, b"orders:1099511627776"),
        (Q2, 5, b"orders\x00:5"),
        (Q3, 1, b"a:1"),
    ]


def test_only_committed_batches_are_recovered(messages: MessageStore) -> None:
    messages.add(Q1, 1, b"one")
    first = messages.commit()
    messages.add(Q1, 2, b"two")

    assert (first, messages.commit(), messages.commit()) == (1, 2, 2)
    messages.add(Q1, 3, b"pending")
    assert list(messages.recover()) == [
        StoredMessage(Q1, 1, b"one", False),
        StoredMessage(Q1, 2, b"two", False),
    ]


def test_remove_after_add_in_the_same_batch_leaves_nothing(messages: MessageStore) -> None:
    messages.add(Q1, 1, b"kept")
    messages.add(Q1, 2, b"acked at once")
    messages.mark_delivered(Q1, 2)
    messages.remove(Q1, 2)
    messages.remove(Q1, 99)
    messages.commit()

    assert list(messages.recover()) == [StoredMessage(Q1, 1, b"kept", False)]
    assert messages.statistics()["queues"] == {Q1: {"messages": 1, "bytes": 4}}


def test_delivered_flags_are_recovered_and_cleared_by_remove(messages: MessageStore) -> None:
    for seq in range(4):
        messages.add(Q1, seq, b"m%d" % seq)
    messages.commit()
    messages.mark_delivered(Q1, 1)
    messages.mark_delivered(Q1, 2)
    messages.mark_delivered(Q1, 42)
    messages.commit()
    messages.remove(Q1, 2)
    messages.commit()

    assert list(messages.recover()) == [
        StoredMessage(Q1, 0, b"m0", False),
        StoredMessage(Q1, 1, b"m1", True),
        StoredMessage(Q1, 3, b"m3", False),
    ]


def test_counts_of_returns_are_recovered_with_their_delivered_flags(
    messages: MessageStore,
) -> None:
    for seq in range(4):
        messages.add(Q1, seq, b"m%d" % seq)
    messages.commit()
    messages.mark_delivered(Q1, 1)
    messages.mark_returned(Q1, 1, 1)
    messages.mark_returned(Q1, 2, 300)  # flags it delivered as well
    messages.mark_returned(Q1, 42, 1)  # unknown: nothing
    messages.mark_delivered(Q1, 3)
    messages.commit()
    messages.mark_returned(Q1, 1, 2)
    messages.mark_delivered(Q1, 1)  # delivered again: the count stays
    messages.commit()

    assert list(messages.recover()) == [
        StoredMessage(Q1, 0, b"m0", False, 0),
        StoredMessage(Q1, 1, b"m1", True, 2),
        StoredMessage(Q1, 2, b"m2", True, 300),
        StoredMessage(Q1, 3, b"m3", True, 0),
    ]


def test_a_count_of_returns_goes_with_its_message(messages: MessageStore) -> None:
    for queue in (Q1, Q2):
        messages.add(queue, 1, b"old")
        messages.mark_returned(queue, 1, 2)
    messages.commit()
    messages.remove(Q1, 1)
    messages.drop_queue(Q2)
    messages.mark_returned(Q2, 1, 3)  # after the drop: must not outlive it
    messages.commit()
    for queue in (Q1, Q2):
        messages.add(queue, 1, b"new")  # the same seq again, as a recreated queue's
    messages.commit()

    assert list(messages.recover()) == [
        StoredMessage(Q1, 1, b"new", False, 0),
        StoredMessage(Q2, 1, b"new", False, 0),
    ]


def test_a_data_dir_written_without_counts_recovers_its_delivered_messages_with_none(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    metadata, store = open_stores(str(data_dir), "rocksdb")
    for seq in (1, 2, 3):
        store.add(Q1, seq, b"m%d" % seq)
    store.mark_returned(Q1, 2, 300)
    store.close()
    metadata.close()
    # A build that kept no counts wrote every delivered marker with an empty value.
    locked = lock_data_dir(str(data_dir))
    db = open_database(locked)
    delivered = db.get_column_family("delivered")
    key = encode_key(Q1)
    delivered.put(key + (1).to_bytes(8, "big"), b"")
    written = delivered.get(key + (2).to_bytes(8, "big"))
    del delivered
    db.close()
    locked.release()

    recovered, _ = _reopen(data_dir)

    assert (written, recovered) == (
        (300).to_bytes(2, "big"),
        [
            StoredMessage(Q1, 1, b"m1", True, 0),
            StoredMessage(Q1, 2, b"m2", True, 300),
            StoredMessage(Q1, 3, b"m3", False, 0),
        ],
    )


def test_drop_queue_removes_only_that_queue(messages: MessageStore) -> None:
    for queue in (Q1, Q2, Q3):
        messages.add(queue, 1, b"x")
        messages.add(queue, 2, b"y")
        messages.mark_delivered(queue, 2)
    messages.commit()
    messages.drop_queue(Q1)
    messages.add(Q1, 7, b"after the purge")
    messages.commit()

    assert list(messages.recover()) == [
        StoredMessage(Q1, 7, b"after the purge", False),
        StoredMessage(Q2, 1, b"x", False),
        StoredMessage(Q2, 2, b"y", True),
        StoredMessage(Q3, 1, b"x", False),
        StoredMessage(Q3, 2, b"y", True),
    ]


def test_statistics_count_messages_bytes_batches_and_syncs(messages: MessageStore) -> None:
    messages.add(Q1, 1, b"12345")
    messages.add(Q1, 2, b"123")
    messages.add(Q3, 1, b"1")
    messages.commit()
    messages.remove(Q1, 1)
    durable = messages.sync()

    statistics = messages.statistics()
    disk_bytes = statistics.pop("disk_bytes")
    assert durable == 1
    assert statistics == {
        "messages": 2,
        "bytes": 4,
        "queues": {Q1: {"messages": 1, "bytes": 3}, Q3: {"messages": 1, "bytes": 1}},
        "pending_ops": 1,
        "batches": 1,
        "durable_batch": 1,
        "syncs": 1,
    }
    assert isinstance(disk_bytes, int)


def test_seq_outside_64_bits_is_refused(messages: MessageStore) -> None:
    with pytest.raises(ValueError) as info:
        messages.add(Q1, -1, b"")

    assert str(info.value) == "a message seq is an unsigned 64-bit int, not -1"


def test_recovery_after_reopen_rebuilds_statistics(tmp_path: Path) -> None:
    metadata, store = open_stores(str(tmp_path / "data"), "rocksdb")
    for seq in range(100):
        store.add(Q1, seq, b"x" * seq)
    store.mark_delivered(Q1, 50)
    store.commit()
    for seq in range(0, 100, 2):
        store.remove(Q1, seq)
    store.close()  # commits and syncs what is pending
    metadata.close()

    recovered, statistics = _reopen(tmp_path / "data")

    assert [(m.seq, len(m.data), m.delivered) for m in recovered] == [
        (seq, seq, False) for seq in range(1, 100, 2)
    ]
    assert statistics["queues"] == {Q1: {"messages": 50, "bytes": sum(range(1, 100, 2))}}
    assert statistics["disk_bytes"] > 0  # type: ignore[operator]


def test_dropped_queue_space_is_compacted(tmp_path: Path) -> None:
    metadata, store = open_stores(str(tmp_path / "data"), "rocksdb")
    for seq in range(2000):
        store.add(Q1, seq, bytes(1024))
    store.commit()
    store.sync()
    assert store.compaction_pending is False  # type: ignore[attr-defined]
    store.drop_queue(Q1)
    store.commit()
    assert store.compaction_pending is True  # type: ignore[attr-defined]
    store.compact()  # type: ignore[attr-defined]
    assert store.compaction_pending is False  # type: ignore[attr-defined]
    store.close()
    metadata.close()

    recovered, statistics = _reopen(tmp_path / "data")

    assert (recovered, statistics["messages"]) == ([], 0)


_CRASH = textwrap.dedent(
    """
    import os, sys
    from rapidmq.storage import open_stores
    metadata, store = open_stores(sys.argv[1], "rocksdb")
    metadata.put("queue", ("/", "q"), {"durable": True})
    for seq in range(3):
        store.add(("/", "q"), seq, b"synced %d" % seq)
    store.mark_delivered(("/", "q"), 1)
    store.mark_returned(("/", "q"), 2, 5)
    store.commit()
    if sys.argv[2] == "sync":
        store.sync()
    store.add(("/", "q"), 3, b"never committed")
    os._exit(0)  # no close: as if killed
    """
)


@pytest.mark.parametrize("mode", ["sync", "commit-only"])
def test_committed_batches_survive_a_process_kill(tmp_path: Path, mode: str) -> None:
    data_dir = tmp_path / "data"
    subprocess.run([sys.executable, "-c", _CRASH, str(data_dir), mode], check=True, timeout=60)

    metadata, store = open_stores(str(data_dir), "rocksdb")
    try:
        queues = list(metadata.items("queue"))
        recovered = list(store.recover())
    finally:
        store.close()
        metadata.close()

    assert queues == [(("/", "q"), {"durable": True})]
    # An unsynced write is in the OS's page cache: it survives the process but
    # not a power loss; only sync() makes it durable against both.
    assert recovered == [
        StoredMessage(("/", "q"), 0, b"synced 0", False),
        StoredMessage(("/", "q"), 1, b"synced 1", True),
        StoredMessage(("/", "q"), 2, b"synced 2", True, 5),
    ]
