"""RocksDB stores, through rocksdict in raw mode (bytes in, bytes out; never pickle).

Theory of operation.  One database under ``DATA_DIR/db`` holds four column
families:

- ``default``: the key ``format``, holding :data:`FORMAT_VERSION` in ASCII, and
  pages: :data:`PAGE_PREFIX` + the message key, the bodies of messages that
  are not stored, paged out of memory.  Nothing there needs to survive a stop:
  they are wiped when the store opens and never recovered (an older build
  ignores them);
- ``meta``: metadata records, key ``encode_key((kind, *key))``, value tagged JSON;
- ``messages``: key ``encode_key((vhost, queue)) + seq`` (8 bytes, big-endian),
  so one queue's messages are contiguous and in order; value the message data;
- ``delivered``: the same keys, for messages handed to a consumer; the value is
  the message's count of returns in a quorum queue (unsigned big-endian, as
  few bytes as it needs), empty for 0: data dirs written before counts were
  kept hold only empty values, and a build that does not know counts ignores
  them;
- ``streams``: the records of stream queues (see :mod:`rapidmq.storage.stream_log`),
  written in the same batches.

Metadata writes are synced when they return: they are rare.  Message changes
accumulate in a ``WriteBatch`` on the loop thread (no I/O); ``commit`` writes
it unsynced and numbers it, and ``sync`` -- in a worker thread, since
``flush_wal`` releases the GIL -- makes every committed batch durable with one
fsync.  That is the group commit.

Space comes back through deletes and RocksDB's compaction.  Files with many
deletes in a row are compacted early (a deletion-triggered collector), and
:meth:`RocksMessageStore.compact` compacts the ranges of dropped queues; a
timer in the broker is meant to run it in a worker thread.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from typing import Any

import rocksdict

from rapidmq.storage.api import StorageError, StoredMessage
from rapidmq.storage.datadir import (
    COLUMN_FAMILIES,
    DataDir,
    corrupted_error,
    lock_data_dir,
    one_line,
    open_database,
)
from rapidmq.storage.memory import MessageIndex
from rapidmq.storage.records import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    kind_prefix,
    prefix_end,
    record_key,
)
from rapidmq.storage.stream_log import RocksStreamLog, StreamLog

__all__ = ["PAGE_PREFIX", "RocksMessageStore", "RocksMetadataStore", "open_rocksdb"]

Queue = tuple[str, str]

_SEQ_BYTES = 8
#: Pages sort apart from the ``format`` key of the default column family.
PAGE_PREFIX = b"pages/"
_PAGES_END = b"pages0"


class _Database:
    """The open database and the data-dir lock, shared by both stores.

    RocksDB stays open while any column family object, handle or iterator is
    alive, so they are all kept here and dropped on the last release.
    """

    __slots__ = ("data_dir", "db", "families", "handles", "scans", "users")

    def __init__(self, data_dir: DataDir, db: rocksdict.Rdict) -> None:
        self.data_dir = data_dir
        self.db = db
        self.families = {name: db.get_column_family(name) for name in COLUMN_FAMILIES}
        self.handles = {name: db.get_column_family_handle(name) for name in COLUMN_FAMILIES}
        self.scans: weakref.WeakSet[_Scan] = weakref.WeakSet()
        self.users = 2  # the metadata store and the message store

    def family(self, name: str) -> rocksdict.Rdict:
        try:
            return self.families[name]
        except KeyError:
            raise StorageError("rapidmq: the store is closed") from None

    def release(self) -> None:
        """Close the database and unlock the dir once both stores are closed."""
        self.users -= 1
        if self.users == 0:
            for scan in list(self.scans):
                scan.close()
            self.families.clear()
            self.handles.clear()
            self.db.close()
            self.data_dir.release()

    def corrupted(self, detail: object) -> StorageError:
        return corrupted_error(self.data_dir.path, detail)

    def write_failed(self, exc: BaseException) -> StorageError:
        return StorageError(
            f"rapidmq: cannot write to the database in {self.data_dir.path} ({one_line(exc)}); "
            "free disk space or fix the data dir"
        )


def open_rocksdb(data_dir: str) -> tuple[RocksMetadataStore, RocksMessageStore]:
    """Lock ``data_dir``, check its format and open (or create) its database.

    Raises:
        StorageError: one line naming the fix (see :mod:`rapidmq.storage.datadir`).
    """
    locked = lock_data_dir(data_dir)
    try:
        db = open_database(locked)
    except BaseException:
        locked.release()
        raise
    database = _Database(locked, db)
    return RocksMetadataStore(database), RocksMessageStore(database)


class _Scan:
    """Keys and values of one column family from ``start`` up to ``end``.

    A read error is a corrupted database.  Closing the store closes open scans.
    """

    __slots__ = ("__weakref__", "_database", "_end", "_iterator")

    def __init__(self, database: _Database, family: str, start: bytes, end: bytes | None) -> None:
        read_options = rocksdict.ReadOptions()
        read_options.set_verify_checksums(True)
        # Not ReadOptions' upper bound: rocksdict encodes it as a non-raw key.
        self._end = end
        self._database = database
        self._iterator: rocksdict.RdictIter | None = database.family(family).iter(read_options)
        self._iterator.seek(start)
        database.scans.add(self)

    def __iter__(self) -> _Scan:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        iterator = self._iterator
        if iterator is None:
            raise StopIteration
        try:
            if iterator.valid():
                key: bytes = iterator.key()
                if self._end is None or key < self._end:
                    item = (key, iterator.value())
                    iterator.next()
                    return item
            iterator.status()
        except Exception as exc:
            self.close()
            raise self._database.corrupted(exc) from None
        self.close()
        raise StopIteration

    def close(self) -> None:
        self._iterator = None


class RocksMetadataStore:
    """Metadata records in the ``meta`` column family; every write is synced."""

    __slots__ = ("_closed", "_database", "_sync")

    def __init__(self, database: _Database) -> None:
        self._database = database
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self._closed = False

    def put(self, kind: str, key: tuple[str, ...], value: dict[str, Any]) -> None:
        """Create or replace one record, durably."""
        raw_key, raw_value = record_key(kind, key), encode_value(value)
        meta = self._database.family("meta")
        try:
            meta.put(raw_key, raw_value, self._sync)
        except Exception as exc:
            raise self._database.write_failed(exc) from None

    def delete(self, kind: str, key: tuple[str, ...]) -> None:
        """Remove one record, durably; a missing record is not an error."""
        raw_key = record_key(kind, key)
        meta = self._database.family("meta")
        try:
            meta.delete(raw_key, self._sync)
        except Exception as exc:
            raise self._database.write_failed(exc) from None

    def items(self, kind: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Every record of ``kind``, in key order.

        Raises:
            StorageError: the records cannot be read (a corrupted database).
        """
        prefix = kind_prefix(kind)
        for raw_key, raw_value in _Scan(self._database, "meta", prefix, prefix_end(prefix)):
            try:
                key, value = decode_key(raw_key)[1:], decode_value(raw_value)
            except ValueError as exc:
                raise self._database.corrupted(f"{kind} record {raw_key!r}: {exc}") from None
            yield key, value

    def close(self) -> None:
        """Release the store; the database closes with the last store."""
        if not self._closed:
            self._closed = True
            self._database.release()


class RocksMessageStore:
    """Persistent messages in the ``messages`` and ``delivered`` column families."""

    __slots__ = (
        "_batch",
        "_closed",
        "_committed",
        "_database",
        "_delivered",
        "_dropped",
        "_durable",
        "_index",
        "_messages",
        "_no_sync",
        "_pages",
        "_prefixes",
        "_stream_log",
        "_syncs",
        "streams",
    )

    def __init__(self, database: _Database) -> None:
        self._database = database
        self._messages = database.handles["messages"]
        self._delivered = database.handles["delivered"]
        self._pages = database.db.get_column_family_handle("default")
        self._batch = rocksdict.WriteBatch(raw_mode=True)
        self._no_sync = rocksdict.WriteOptions()
        self._no_sync.sync = False
        # Pages of the last run are garbage.
        wipe = rocksdict.WriteBatch(raw_mode=True)
        wipe.delete_range(PAGE_PREFIX, _PAGES_END, self._pages)
        try:
            database.db.write(wipe, self._no_sync)
        except Exception as exc:
            raise database.write_failed(exc) from None
        self._index = MessageIndex()
        self._prefixes: dict[Queue, bytes] = {}
        self._dropped: list[bytes] = []
        self._committed = 0
        self._durable = 0
        self._syncs = 0
        self._closed = False
        self._stream_log = RocksStreamLog(self, database)
        self.streams: StreamLog = self._stream_log

    @property
    def batch(self) -> rocksdict.WriteBatch:
        """The current batch, which the stream log writes into as well."""
        return self._batch

    def _key(self, queue: Queue, seq: int) -> bytes:
        prefix = self._prefixes.get(queue)
        if prefix is None:
            prefix = self._prefixes[queue] = encode_key(queue)
        try:
            return prefix + seq.to_bytes(_SEQ_BYTES, "big")
        except OverflowError:
            raise ValueError(f"a message seq is an unsigned 64-bit int, not {seq!r}") from None

    def add(self, queue: Queue, seq: int, data: bytes) -> None:
        """Add to the current batch (no I/O)."""
        key = self._key(queue, seq)
        self._batch.put(key, bytes(data), self._messages)
        if self._index.remove(queue, seq):
            self._batch.delete(key, self._delivered)
        self._index.add(queue, seq, len(data))

    def mark_delivered(self, queue: Queue, seq: int) -> None:
        """Record in the current batch that the message was handed to a consumer."""
        if self._index.mark_delivered(queue, seq):
            self._batch.put(self._key(queue, seq), b"", self._delivered)

    def mark_returned(self, queue: Queue, seq: int, returns: int) -> None:
        """Record in the current batch, on the delivered marker, that the message
        came back ``returns`` times; an unknown message is not an error."""
        # The index knowing the message keeps a marker from outliving a dropped queue.
        if self._index.mark_returned(queue, seq):
            value = returns.to_bytes((returns.bit_length() + 7) // 8, "big")
            self._batch.put(self._key(queue, seq), value, self._delivered)

    def remove(self, queue: Queue, seq: int) -> None:
        """Delete in the current batch; an unknown message is not an error."""
        was_delivered = self._index.remove(queue, seq)
        if was_delivered is None:
            return
        key = self._key(queue, seq)
        self._batch.delete(key, self._messages)
        if was_delivered:
            self._batch.delete(key, self._delivered)

    def drop_queue(self, queue: Queue) -> None:
        """Delete the queue's key range in the current batch."""
        self._index.drop(queue)
        prefix = self._prefixes.pop(queue, None) or encode_key(queue)
        end = prefix_end(prefix)
        self._batch.delete_range(prefix, end, self._messages)
        self._batch.delete_range(prefix, end, self._delivered)
        self._dropped.append(prefix)

    keeps_pages = True

    def page(self, queue: Queue, seq: int, body: bytes) -> None:
        """Keep the body of a message that is not stored, in the current batch (no I/O)."""
        self._batch.put(PAGE_PREFIX + self._key(queue, seq), bytes(body), self._pages)

    def read_page(self, queue: Queue, seq: int) -> bytes:
        """A page of a committed batch.

        Raises:
            StorageError: no such page, or the read failed.
        """
        try:
            self._database.family("messages")  # raises once the store is closed
            data = self._database.db.get(PAGE_PREFIX + self._key(queue, seq))
        except StorageError:
            raise
        except Exception as exc:
            raise self._database.corrupted(exc) from None
        if not isinstance(data, bytes):
            raise StorageError(f"rapidmq: page {seq} of queue {queue} is not kept")
        return data

    def unpage(self, queue: Queue, seq: int) -> None:
        """Delete one page in the current batch."""
        self._batch.delete(PAGE_PREFIX + self._key(queue, seq), self._pages)

    def drop_pages(self, queue: Queue) -> None:
        """Delete every page of the queue in the current batch."""
        prefix = PAGE_PREFIX + (self._prefixes.get(queue) or encode_key(queue))
        self._batch.delete_range(prefix, prefix_end(prefix), self._pages)

    def commit(self) -> int:
        """Write the current batch unsynced; returns its number (the last one's if empty).

        Raises:
            StorageError: the write failed (disk full, I/O error).
        """
        if self._batch.is_empty():
            return self._committed
        batch, self._batch = self._batch, rocksdict.WriteBatch(raw_mode=True)
        try:
            self._database.db.write(batch, self._no_sync)
        except Exception as exc:
            raise self._database.write_failed(exc) from None
        self._committed += 1
        return self._committed

    def sync(self) -> int:
        """Fsync the write-ahead log (blocking: run in a worker thread).

        Returns:
            The highest batch number now durable.

        Raises:
            StorageError: the sync failed.
        """
        target = self._committed  # every batch written before the fsync starts
        try:
            self._database.db.flush_wal(True)
        except Exception as exc:
            raise self._database.write_failed(exc) from None
        self._durable = max(self._durable, target)
        self._syncs += 1
        return self._durable

    @property
    def compaction_pending(self) -> bool:
        """True when dropped queues left key ranges that :meth:`compact` would reclaim."""
        return bool(self._dropped)

    def compact(self) -> None:
        """Compact the ranges of queues dropped so far (blocking: run in a worker thread)."""
        dropped, self._dropped = self._dropped, []
        for name in ("messages", "delivered"):
            family = self._database.family(name)
            for prefix in dropped:
                family.compact_range(prefix, prefix_end(prefix))

    def read(self, queue: Queue, seq: int) -> bytes:
        """The data of one committed (not necessarily synced) message.

        Raises:
            StorageError: the message is not stored, or the read failed.
        """
        try:
            data = self._database.family("messages").get(self._key(queue, seq))
        except StorageError:
            raise
        except Exception as exc:
            raise self._database.corrupted(exc) from None
        if not isinstance(data, bytes):
            raise StorageError(f"rapidmq: message {seq} of queue {queue} is not stored")
        return data

    def recover(self) -> Iterator[StoredMessage]:
        """Every stored message, grouped by queue in sequence order; rebuilds the index.

        Raises:
            StorageError: a message cannot be read (a corrupted database).
        """
        self._index.clear()
        delivered = _Scan(self._database, "delivered", b"", None)
        next_delivered = next(delivered, None)
        last_prefix, queue = b"", ("", "")
        for key, data in _Scan(self._database, "messages", b"", None):
            # Both families are in key order: walk them side by side.
            while next_delivered is not None and next_delivered[0] < key:
                next_delivered = next(delivered, None)
            flagged, returns = False, 0
            if next_delivered is not None and next_delivered[0] == key:
                # An empty marker (0 returns, or written before counts were kept) reads as 0.
                flagged, returns = True, int.from_bytes(next_delivered[1], "big")
            prefix = key[:-_SEQ_BYTES]
            if prefix != last_prefix:
                queue = self._decode_queue(key)
                last_prefix = prefix
            seq = int.from_bytes(key[-_SEQ_BYTES:], "big")
            self._index.add(queue, seq, len(data), delivered=flagged)
            yield StoredMessage(queue, seq, data, flagged, returns)

    def _decode_queue(self, key: bytes) -> Queue:
        try:
            parts = decode_key(key[:-_SEQ_BYTES])
        except ValueError as exc:
            raise self._database.corrupted(f"message key {key!r}: {exc}") from None
        if len(parts) != 2:
            raise self._database.corrupted(f"message key {key!r} names no queue")
        return parts[0], parts[1]

    def statistics(self) -> dict[str, Any]:
        """Messages and data bytes (total and per queue), batches, syncs, bytes on disk."""
        return {
            **self._index.statistics(),
            "pending_ops": len(self._batch),
            "batches": self._committed,
            "durable_batch": self._durable,
            "syncs": self._syncs,
            "disk_bytes": _directory_bytes(self._database.data_dir.db_path),
        }

    def close(self) -> None:
        """Commit and sync what is pending, then release the store."""
        if self._closed:
            return
        try:
            self.commit()
            self.sync()
        finally:
            self._closed = True
            # Handles keep RocksDB open: drop them before the last release closes it.
            del self._messages, self._delivered, self._pages
            self._stream_log.close()
            self._batch = rocksdict.WriteBatch(raw_mode=True)
            self._database.release()


def _directory_bytes(path: str) -> int:
    total = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total
