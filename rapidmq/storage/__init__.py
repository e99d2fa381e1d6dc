"""Storage: durable metadata and persistent messages (ARCHITECTURE.md §4).

:func:`open_stores` is the one way in; :mod:`rapidmq.storage.api` holds the
protocols the broker codes against.
"""

from __future__ import annotations

from typing import Literal

from rapidmq.storage.api import (
    FORMAT_VERSION,
    KINDS,
    MessageStore,
    MetadataStore,
    StorageError,
    StoredMessage,
)
from rapidmq.storage.memory import MemoryMessageStore, MemoryMetadataStore
from rapidmq.storage.rocksdb import open_rocksdb

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "MessageStore",
    "MetadataStore",
    "StorageError",
    "StoredMessage",
    "open_stores",
]


def open_stores(
    data_dir: str, kind: Literal["rocksdb", "memory"]
) -> tuple[MetadataStore, MessageStore]:
    """Open the metadata and message stores.

    Args:
        data_dir: where RocksDB keeps its files (created if missing); unused for memory.
        kind: ``"rocksdb"`` (durable) or ``"memory"`` (nothing on disk, no lock).

    Raises:
        StorageError: one line naming the fix: the data dir is in use, of a newer
            format, corrupted, not writable, or not a directory.
    """
    if kind == "memory":
        return MemoryMetadataStore(), MemoryMessageStore()
    if kind == "rocksdb":
        return open_rocksdb(data_dir)
    raise ValueError(f"unknown storage kind {kind!r}")
