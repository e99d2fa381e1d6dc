"""In-memory stores: transient, for tests and ``--storage memory``.

They behave as the RocksDB stores do, minus the disk: values go through the
same encoding (so a record comes back as it would from disk), message changes
wait in a batch until :meth:`MemoryMessageStore.commit`, and
:meth:`~MemoryMessageStore.recover` shows only committed messages.

:class:`MessageIndex` is shared with the RocksDB store: it knows the size and
delivered flag of every stored message, so removes and statistics need no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from rapidmq.storage.api import StorageError, StoredMessage
from rapidmq.storage.records import (
    decode_key,
    decode_value,
    encode_value,
    kind_prefix,
    record_key,
)
from rapidmq.storage.stream_log import MemoryStreamLog, StreamLog

__all__ = ["MemoryMessageStore", "MemoryMetadataStore", "MessageIndex"]

Queue = tuple[str, str]


class MessageIndex:
    """Size and delivered flag of every stored message, per queue.

    It costs about a hundred bytes per message; paging can later replace the
    per-message dict with a compact per-queue array.
    """

    __slots__ = ("_bytes", "_delivered", "_sizes")

    def __init__(self) -> None:
        self._sizes: dict[Queue, dict[int, int]] = {}
        self._bytes: dict[Queue, int] = {}
        self._delivered: dict[Queue, set[int]] = {}

    def add(self, queue: Queue, seq: int, size: int, *, delivered: bool = False) -> None:
        """Count one message (replacing one of the same ``seq``)."""
        sizes = self._sizes.setdefault(queue, {})
        self._bytes[queue] = self._bytes.get(queue, 0) + size - sizes.get(seq, 0)
        sizes[seq] = size
        if delivered:
            self._delivered.setdefault(queue, set()).add(seq)
        else:
            self._delivered.get(queue, set()).discard(seq)

    def mark_delivered(self, queue: Queue, seq: int) -> bool:
        """Flag one message; ``False`` if it is unknown or already flagged."""
        if seq not in self._sizes.get(queue, ()):
            return False
        delivered = self._delivered.setdefault(queue, set())
        if seq in delivered:
            return False
        delivered.add(seq)
        return True

    def mark_returned(self, queue: Queue, seq: int) -> bool:
        """Flag one message that came back; ``False`` if it is unknown."""
        if seq not in self._sizes.get(queue, ()):
            return False
        self._delivered.setdefault(queue, set()).add(seq)
        return True

    def remove(self, queue: Queue, seq: int) -> bool | None:
        """Forget one message; ``None`` if unknown, else whether it was flagged delivered."""
        sizes = self._sizes.get(queue)
        if sizes is None or seq not in sizes:
            return None
        self._bytes[queue] -= sizes.pop(seq)
        delivered = self._delivered.get(queue)
        was_delivered = False
        if delivered is not None and seq in delivered:
            delivered.discard(seq)
            was_delivered = True
        if not sizes:
            self.drop(queue)
        return was_delivered

    def drop(self, queue: Queue) -> None:
        """Forget every message of ``queue``."""
        self._sizes.pop(queue, None)
        self._bytes.pop(queue, None)
        self._delivered.pop(queue, None)

    def clear(self) -> None:
        """Forget everything (before a recovery rebuilds the index)."""
        self._sizes.clear()
        self._bytes.clear()
        self._delivered.clear()

    def statistics(self) -> dict[str, Any]:
        """Messages and data bytes, in total and per queue (in key order)."""
        queues = {
            queue: {"messages": len(self._sizes[queue]), "bytes": self._bytes[queue]}
            for queue in sorted(self._sizes)
        }
        return {
            "messages": sum(len(sizes) for sizes in self._sizes.values()),
            "bytes": sum(self._bytes.values()),
            "queues": queues,
        }


class MemoryMetadataStore:
    """Metadata records in a dict, encoded as the RocksDB store encodes them."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[bytes, bytes] = {}

    def put(self, kind: str, key: tuple[str, ...], value: dict[str, Any]) -> None:
        """Create or replace one record."""
        self._records[record_key(kind, key)] = encode_value(value)

    def delete(self, kind: str, key: tuple[str, ...]) -> None:
        """Remove one record; a missing record is not an error."""
        self._records.pop(record_key(kind, key), None)

    def items(self, kind: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Every record of ``kind``, in key order."""
        prefix = kind_prefix(kind)
        selected = sorted(item for item in self._records.items() if item[0].startswith(prefix))
        for raw_key, raw_value in selected:
            yield decode_key(raw_key)[1:], decode_value(raw_value)

    def close(self) -> None:
        """Nothing to release."""


class MemoryMessageStore:
    """Persistent messages kept in memory, with the batch semantics of RocksDB."""

    __slots__ = (
        "_batch",
        "_committed",
        "_delivered",
        "_durable",
        "_index",
        "_messages",
        "_pages",
        "_syncs",
        "streams",
    )

    keeps_pages = False  # pages would stay in memory: the broker does not page through it

    def __init__(self) -> None:
        self._index = MessageIndex()
        self._batch: list[Callable[[], None]] = []
        self._messages: dict[Queue, dict[int, bytes]] = {}
        # Delivered markers, each with its count of returns (0 unless a quorum queue's).
        self._delivered: dict[tuple[Queue, int], int] = {}
        self._pages: dict[tuple[Queue, int], bytes] = {}
        self._committed = 0
        self._durable = 0
        self._syncs = 0
        self.streams: StreamLog = MemoryStreamLog(self._defer)

    def _defer(self, operation: Callable[[], None]) -> None:
        self._batch.append(operation)

    def add(self, queue: Queue, seq: int, data: bytes) -> None:
        """Add to the current batch (no I/O)."""
        _check_seq(seq)
        data = bytes(data)
        self._index.add(queue, seq, len(data))

        def apply() -> None:
            self._messages.setdefault(queue, {})[seq] = data
            self._delivered.pop((queue, seq), None)

        self._batch.append(apply)

    def mark_delivered(self, queue: Queue, seq: int) -> None:
        """Record in the current batch that the message was handed to a consumer."""
        if self._index.mark_delivered(queue, seq):

            def apply() -> None:
                self._delivered.setdefault((queue, seq), 0)

            self._batch.append(apply)

    def mark_returned(self, queue: Queue, seq: int, returns: int) -> None:
        """Record in the current batch that the message came back ``returns`` times."""
        if self._index.mark_returned(queue, seq):
            self._batch.append(lambda: self._delivered.__setitem__((queue, seq), returns))

    def remove(self, queue: Queue, seq: int) -> None:
        """Remove from the current batch's view and from the committed state."""
        if self._index.remove(queue, seq) is None:
            return

        def apply() -> None:
            messages = self._messages.get(queue, {})
            messages.pop(seq, None)
            if not messages:
                self._messages.pop(queue, None)
            self._delivered.pop((queue, seq), None)

        self._batch.append(apply)

    def drop_queue(self, queue: Queue) -> None:
        """Remove every message of a deleted or purged queue."""
        self._index.drop(queue)

        def apply() -> None:
            self._messages.pop(queue, None)
            self._delivered = {
                key: returns for key, returns in self._delivered.items() if key[0] != queue
            }

        self._batch.append(apply)

    def commit(self) -> int:
        """Apply the current batch; returns its number (the last one's if it is empty)."""
        if self._batch:
            batch, self._batch = self._batch, []
            for apply in batch:
                apply()
            self._committed += 1
        return self._committed

    def sync(self) -> int:
        """Every committed batch is as durable as memory gets; returns the last number."""
        self._durable = self._committed
        self._syncs += 1
        return self._durable

    def read(self, queue: Queue, seq: int) -> bytes:
        """The data of one committed message."""
        try:
            return self._messages[queue][seq]
        except KeyError:
            raise StorageError(f"rapidmq: message {seq} of queue {queue} is not stored") from None

    def recover(self) -> Iterator[StoredMessage]:
        """Every committed message, grouped by queue in sequence order.

        The index is rebuilt from them as they are read.
        """
        self._index.clear()
        for queue in sorted(self._messages):
            messages = self._messages[queue]
            for seq in sorted(messages):
                returns = self._delivered.get((queue, seq))
                delivered = returns is not None
                self._index.add(queue, seq, len(messages[seq]), delivered=delivered)
                yield StoredMessage(queue, seq, messages[seq], delivered, returns or 0)

    def page(self, queue: Queue, seq: int, body: bytes) -> None:
        """Keep a body in the current batch (in memory: this store frees nothing)."""
        _check_seq(seq)
        data = bytes(body)
        self._batch.append(lambda: self._pages.__setitem__((queue, seq), data))

    def read_page(self, queue: Queue, seq: int) -> bytes:
        """A committed page."""
        try:
            return self._pages[queue, seq]
        except KeyError:
            raise StorageError(f"rapidmq: page {seq} of queue {queue} is not kept") from None

    def unpage(self, queue: Queue, seq: int) -> None:
        """Delete one page in the current batch."""

        def apply() -> None:
            self._pages.pop((queue, seq), None)

        self._batch.append(apply)

    def drop_pages(self, queue: Queue) -> None:
        """Delete every page of the queue in the current batch."""

        def apply() -> None:
            self._pages = {key: body for key, body in self._pages.items() if key[0] != queue}

        self._batch.append(apply)

    def statistics(self) -> dict[str, Any]:
        """Messages and bytes (total and per queue), batches, syncs; nothing on disk."""
        return {
            **self._index.statistics(),
            "pending_ops": len(self._batch),
            "batches": self._committed,
            "durable_batch": self._durable,
            "syncs": self._syncs,
            "disk_bytes": 0,
        }

    def close(self) -> None:
        """Commit what is pending; nothing else to release."""
        self.commit()


def _check_seq(seq: int) -> None:
    if not 0 <= seq < 1 << 64:
        raise ValueError(f"a message seq is an unsigned 64-bit int, not {seq!r}")
