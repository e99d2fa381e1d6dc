"""Metadata records: every kind round-trips, in key order, and survives a reopen."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rapidmq.storage import KINDS, MetadataStore, StorageError, open_stores

ARGUMENTS: dict[str, Any] = {
    "x-message-ttl": 60000,
    "x-dead-letter-exchange": "dlx \u00e9",
    "x-raw": b"\x00\x01\xfe\xff",
    "x-table": {"nested": {"when": datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)}},
    "x-array": [Decimal("3.14"), None, True, ("tuple", 1)],
    "x-float": 0.25,
}


def _record(kind: str, index: int) -> tuple[tuple[str, ...], dict[str, Any]]:
    key = tuple(f"{field}-{index}-\u00e9\x00" for field in KINDS[kind])
    return key, {"kind": kind, "index": index, "arguments": ARGUMENTS}


@pytest.fixture(params=["memory", "rocksdb"])
def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store, messages = open_stores(str(tmp_path / "data"), request.param)
    yield store
    messages.close()
    store.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips_in_key_order(metadata: MetadataStore, kind: str) -> None:
    for index in (2, 0, 1):
        metadata.put(kind, *_record(kind, index))

    assert list(metadata.items(kind)) == [_record(kind, index) for index in (0, 1, 2)]


def test_kinds_do_not_leak_into_each_other(metadata: MetadataStore) -> None:
    metadata.put("permission", ("guest", "/"), {"configure": ".*"})
    metadata.put("topic_permission", ("guest", "/", "amq.topic"), {"write": ".*"})

    assert list(metadata.items("permission")) == [(("guest", "/"), {"configure": ".*"})]
    assert list(metadata.items("topic_permission")) == [
        (("guest", "/", "amq.topic"), {"write": ".*"})
    ]
    assert list(metadata.items("user")) == []


def test_put_replaces_and_delete_removes(metadata: MetadataStore) -> None:
    metadata.put("vhost", ("/",), {"description": "old"})
    metadata.put("vhost", ("/",), {"description": "new"})
    metadata.put("vhost", ("other",), {})
    metadata.delete("vhost", ("other",))
    metadata.delete("vhost", ("never-there",))

    assert list(metadata.items("vhost")) == [(("/",), {"description": "new"})]


def test_unknown_kind_is_refused(metadata: MetadataStore) -> None:
    with pytest.raises(ValueError) as info:
        metadata.put("shovel", ("/",), {})

    assert str(info.value) == "unknown metadata kind 'shovel'"


def test_every_kind_survives_a_reopen(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    store, messages = open_stores(data_dir, "rocksdb")
    for kind in KINDS:
        for index in range(3):
            store.put(kind, *_record(kind, index))
    store.delete("user", _record("user", 1)[0])
    store.close()
    messages.close()

    reopened, messages = open_stores(data_dir, "rocksdb")
    try:
        recovered = {kind: list(reopened.items(kind)) for kind in KINDS}
    finally:
        reopened.close()
        messages.close()

    expected = {kind: [_record(kind, index) for index in range(3)] for kind in KINDS}
    expected["user"] = [_record("user", 0), _record("user", 2)]
    assert recovered == expected


def test_an_unfinished_scan_does_not_keep_the_store_open(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    store, messages = open_stores(data_dir, "rocksdb")
    store.put("vhost", ("a",), {})
    store.put("vhost", ("b",), {})
    scan = store.items("vhost")
    assert next(scan) == (("a",), {})
    messages.close()
    store.close()

    reopened, messages = open_stores(data_dir, "rocksdb")
    assert list(reopened.items("vhost")) == [(("a",), {}), (("b",), {})]
    assert list(scan) == []
    reopened.close()
    messages.close()


def test_a_closed_store_refuses_writes(tmp_path: Path) -> None:
    store, messages = open_stores(str(tmp_path / "data"), "rocksdb")
    messages.close()
    store.close()

    with pytest.raises(StorageError) as info:
        store.put("vhost", ("/",), {})

    assert str(info.value) == "rapidmq: the store is closed"
