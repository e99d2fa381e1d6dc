"""What the broker asks of storage: the ``MetadataStore`` and ``MessageStore`` protocols.

Two implementations follow each protocol: an in-memory one (``memory.py``,
transient, for tests and ``--storage memory``) and a RocksDB one
(``rocksdb.py``, through rocksdict in raw mode with column families).

**Metadata** is small and changes rarely: vhosts, users, permissions, durable
exchanges, durable queues with their arguments, bindings between durable
objects, policies and operator policies, MQTT persistent sessions and retained
messages.  It is kept as
records: a *kind* (one of :data:`KINDS`), a key of strings, and a JSON-able
value (see :func:`rapidmq.storage.records.encode_value` for bytes, datetimes
and decimals).  A put or delete is durable when the call returns.

**Messages** are many and hot.  The loop thread adds and removes them in the
current batch without blocking; :meth:`MessageStore.commit` writes the batch
unsynced, and :meth:`MessageStore.sync` (run in a worker thread: it releases
the GIL) makes every committed batch durable at once -- the group commit of
ARCHITECTURE.md §4.  Confirms go out only after the sync that holds them.

**Pages** are bodies of messages that are not stored (transient messages, or
any message of a non-durable queue) taken out of memory when it runs short.
They go into the same batches under a separate namespace that is never
recovered, and are wiped when the store opens.

Opening a store refuses, with :class:`StorageError` and one readable line, a
data dir of a newer format, a corrupted database, or one locked by another
broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rapidmq.errors import RapidMQError

if TYPE_CHECKING:
    from rapidmq.storage.stream_log import StreamLog

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MessageStore",
    "MetadataStore",
    "StorageError",
    "StoredMessage",
]

#: The on-disk format this build writes and reads.  Stored message records carry
#: their own version (see :mod:`rapidmq.core.message_codec`), the ``pages``
#: column family is created when missing, and a delivered marker's value (a
#: quorum queue's count of returns) is empty in older data dirs and means 0
#: there, so none of them changed it.
FORMAT_VERSION = 1

#: The kinds of metadata records, and what their keys are.
KINDS = {
    "vhost": ("name",),
    "user": ("name",),
    "permission": ("user", "vhost"),
    "topic_permission": ("user", "vhost", "exchange"),
    "exchange": ("vhost", "name"),
    "queue": ("vhost", "name"),
    "binding": ("vhost", "source", "destination_kind", "destination", "routing_key", "args_id"),
    "mqtt_session": ("vhost", "client_id"),
    "retained": ("vhost", "topic"),
    "vhost_limits": ("vhost",),
    "user_limits": ("user",),
    "policy": ("vhost", "name"),
    "operator_policy": ("vhost", "name"),
}


class StorageError(RapidMQError):
    """The store cannot be opened or written; ``str(err)`` is one line naming the fix."""


class MetadataStore(Protocol):
    """Durable records of the broker's topology and accounts."""

    def put(self, kind: str, key: tuple[str, ...], value: dict[str, Any]) -> None:
        """Create or replace one record."""

    def delete(self, kind: str, key: tuple[str, ...]) -> None:
        """Remove one record; a missing record is not an error."""

    def items(self, kind: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Every record of ``kind``, in key order."""

    def close(self) -> None:
        """Release the store (and its lock)."""


@dataclass(slots=True, frozen=True)
class StoredMessage:
    """One persistent message of one durable queue, as recovered."""

    queue: tuple[str, str]  # (vhost, queue name)
    seq: int  # the queue's sequence number: recovery order
    data: bytes  # the serialized message
    delivered: bool  # delivered (not acked) before the stop: redeliver flagged
    returns: int = 0  # a quorum queue's count of returns (x-delivery-count)


class MessageStore(Protocol):
    """Persistent messages of durable queues, with group commit."""

    def add(self, queue: tuple[str, str], seq: int, data: bytes) -> None:
        """Add to the current batch (no I/O)."""

    def mark_delivered(self, queue: tuple[str, str], seq: int) -> None:
        """Record in the current batch that the message was handed to a consumer."""

    def mark_returned(self, queue: tuple[str, str], seq: int, returns: int) -> None:
        """Record in the current batch that the message came back ``returns`` times.

        A quorum queue's count of returns, kept with the delivered marker (which
        it sets too) so it is recovered; an unknown message is not an error.
        """

    def remove(self, queue: tuple[str, str], seq: int) -> None:
        """Remove from the current batch's view and from disk (acked, dropped)."""

    def drop_queue(self, queue: tuple[str, str]) -> None:
        """Remove every message of a deleted or purged queue."""

    def commit(self) -> int:
        """Write the current batch without syncing; returns its batch number."""

    def sync(self) -> int:
        """Make every committed batch durable (blocking: run in a worker thread).

        Returns the highest batch number now durable.
        """

    def read(self, queue: tuple[str, str], seq: int) -> bytes:
        """The data of one committed message, for a body paged out of memory.

        Raises:
            StorageError: the message is not in the store (or the read failed).
        """

    def recover(self) -> Iterator[StoredMessage]:
        """Every stored message, grouped by queue in sequence order."""

    #: True when :meth:`page` takes a body out of memory (RocksDB); the memory
    #: store keeps pages in memory, so the broker never pages through it.
    keeps_pages: bool

    def page(self, queue: tuple[str, str], seq: int, body: bytes) -> None:
        """Keep the body of a message that is not stored, in the current batch (no I/O).

        Pages live apart from stored messages, are never synced for their own
        sake and never recovered: opening the store wipes them.
        """

    def read_page(self, queue: tuple[str, str], seq: int) -> bytes:
        """The body kept by :meth:`page`, once its batch is committed.

        Raises:
            StorageError: no such page (or the read failed).
        """

    def unpage(self, queue: tuple[str, str], seq: int) -> None:
        """Delete one page in the current batch (read back or dropped)."""

    def drop_pages(self, queue: tuple[str, str]) -> None:
        """Delete every page of a purged or deleted queue in the current batch."""

    #: The records of stream queues, written in this store's batches.
    streams: StreamLog

    def statistics(self) -> dict[str, Any]:
        """Bytes on disk (total and per queue), messages, batches, syncs."""

    def close(self) -> None:
        """Release the store."""
