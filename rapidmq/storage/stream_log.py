"""Stream logs: the append-only records of stream queues, beside the message store.

A stream's records are keyed by (stream, offset): ``encode_key((vhost, name))``
followed by the offset as 8 big-endian bytes, so one stream is one contiguous
key range in offset order.  A record is one flag byte (:data:`CHUNK_START` when
the message opens a chunk, a batch of appends written together) followed by the
stored form of the message.

Appends, trims and drops go into the message store's current batch, so they
are committed and synced by the same group commit as persistent messages, and
a publisher confirm for a stream message waits for the same sync.  Reads see
committed batches only; the broker commits before it reads.

:class:`RocksStreamLog` keeps the records in the ``streams`` column family;
:class:`MemoryStreamLog` keeps them in a dict, with the same batch semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Protocol

import rocksdict

from rapidmq.storage.api import StorageError
from rapidmq.storage.records import encode_key, prefix_end

if TYPE_CHECKING:
    from rapidmq.storage.rocksdb import RocksMessageStore, _Database

__all__ = ["CHUNK_START", "MemoryStreamLog", "RocksStreamLog", "StreamLog"]

Stream = tuple[str, str]

#: The flag byte of a record that opens a chunk.
CHUNK_START = 0x01
_OFFSET_BYTES = 8


class StreamLog(Protocol):
    """The records of every stream, written in the message store's batches."""

    def append(self, stream: Stream, offset: int, record: bytes) -> None:
        """Add one record in the current batch (no I/O)."""

    def trim(self, stream: Stream, before: int) -> None:
        """Delete every record below offset ``before`` in the current batch."""

    def drop(self, stream: Stream) -> None:
        """Delete every record of the stream in the current batch."""

    def read(self, stream: Stream, start: int, count: int) -> list[bytes]:
        """The committed records at offsets ``start`` to ``start + count - 1``, every
        one of which the caller knows is there.

        Raises:
            StorageError: a record is missing, or the read failed.
        """

    def scan(self, stream: Stream) -> Iterator[tuple[int, bytes]]:
        """Every committed record of the stream, in order (for recovery)."""


def _offset_key(prefix: bytes, offset: int) -> bytes:
    return prefix + offset.to_bytes(_OFFSET_BYTES, "big")


class RocksStreamLog:
    """Stream records in the ``streams`` column family of the RocksDB store."""

    __slots__ = ("_database", "_handle", "_last", "_prefixes", "_store")

    def __init__(self, store: RocksMessageStore, database: _Database) -> None:
        self._store = store
        self._database = database
        # A handle keeps RocksDB open: the store drops it when it closes (close()).
        self._handle: rocksdict.ColumnFamily | None = database.handles["streams"]
        self._prefixes: dict[Stream, bytes] = {}
        self._last: tuple[Stream, bytes] = (("", ""), b"")  # the last stream appended to

    def close(self) -> None:
        """Drop the column family handle (the store is closing)."""
        self._handle = None

    def _prefix(self, stream: Stream) -> bytes:
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = encode_key(stream)
        return prefix

    def append(self, stream: Stream, offset: int, record: bytes) -> None:
        """Add one record in the current batch (no I/O)."""
        last_stream, prefix = self._last
        if stream is not last_stream:
            prefix = self._prefix(stream)
            self._last = (stream, prefix)
        key = prefix + offset.to_bytes(_OFFSET_BYTES, "big")
        self._store.batch.put(key, record, self._family_handle())

    def _family_handle(self) -> rocksdict.ColumnFamily:
        handle = self._handle
        if handle is None:
            raise StorageError("rapidmq: the store is closed")
        return handle

    def trim(self, stream: Stream, before: int) -> None:
        """Delete every record below offset ``before`` in the current batch."""
        prefix = self._prefix(stream)
        self._store.batch.delete_range(prefix, _offset_key(prefix, before), self._family_handle())

    def drop(self, stream: Stream) -> None:
        """Delete every record of the stream in the current batch."""
        prefix = self._prefixes.pop(stream, None) or encode_key(stream)
        self._last = (("", ""), b"")
        self._store.batch.delete_range(prefix, prefix_end(prefix), self._family_handle())

    def read(self, stream: Stream, start: int, count: int) -> list[bytes]:
        """The committed records at offsets ``start`` to ``start + count - 1``.

        Raises:
            StorageError: a record is missing, or the read failed.
        """
        prefix = self._prefix(stream)
        family = self._database.family("streams")
        try:
            # Offsets are contiguous: the records are the next ``count`` values.
            records = list(islice(family.values(from_key=_offset_key(prefix, start)), count))
            last = family.get(_offset_key(prefix, start + count - 1)) if records else None
        except Exception as exc:
            raise StorageError(f"rapidmq: cannot read stream {stream}: {exc}") from None
        if len(records) != count or records[-1] != last:
            raise StorageError(
                f"rapidmq: stream {stream} lacks offsets {start}..{start + count - 1}"
            )
        return records

    def scan(self, stream: Stream) -> Iterator[tuple[int, bytes]]:
        """Every committed record of the stream, in order."""
        prefix = self._prefix(stream)
        size = len(prefix)
        items = self._database.family("streams").items(from_key=prefix)
        try:
            for key, record in items:
                assert isinstance(key, bytes) and isinstance(record, bytes)  # raw mode
                if key[:size] != prefix:
                    return
                yield int.from_bytes(key[size:], "big"), record
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"rapidmq: cannot read stream {stream}: {exc}") from None


class MemoryStreamLog:
    """Stream records in memory, applied when the store commits its batch."""

    __slots__ = ("_defer", "_streams")

    def __init__(self, defer: Callable[[Callable[[], None]], None]) -> None:
        self._defer = defer  # adds an operation to the store's current batch
        self._streams: dict[Stream, dict[int, bytes]] = {}

    def append(self, stream: Stream, offset: int, record: bytes) -> None:
        """Add one record in the current batch."""
        self._defer(lambda: self._streams.setdefault(stream, {}).__setitem__(offset, record))

    def trim(self, stream: Stream, before: int) -> None:
        """Delete every record below offset ``before`` in the current batch."""

        def apply() -> None:
            records = self._streams.get(stream, {})
            for offset in [o for o in records if o < before]:
                del records[offset]

        self._defer(apply)

    def drop(self, stream: Stream) -> None:
        """Delete every record of the stream in the current batch."""

        def apply() -> None:
            self._streams.pop(stream, None)

        self._defer(apply)

    def read(self, stream: Stream, start: int, count: int) -> list[bytes]:
        """The committed records at offsets ``start`` to ``start + count - 1``."""
        records = self._streams.get(stream, {})
        try:
            return [records[offset] for offset in range(start, start + count)]
        except KeyError as exc:
            raise StorageError(f"rapidmq: stream {stream} lacks offset {exc}") from None

    def scan(self, stream: Stream) -> Iterator[tuple[int, bytes]]:
        """Every committed record of the stream, in order."""
        records = self._streams.get(stream, {})
        for offset in sorted(records):
            yield offset, records[offset]
