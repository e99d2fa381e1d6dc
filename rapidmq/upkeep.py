"""The broker's upkeep tasks: the group commit of the message store, and the resource monitor.

Both run in the server's task group for as long as it serves.  Neither touches
a socket: when an alarm changes they call ``tell``, and the server tells every
publishing connection (ARCHITECTURE.md §4).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from rapidmq.config import Settings
from rapidmq.core.alarms import AlarmEvent, AlarmSet, ResourceAlarms, format_size
from rapidmq.core.broker import Broker
from rapidmq.core.persistence import Persistence
from rapidmq.process import disk_free_bytes, resident_bytes, return_free_memory
from rapidmq.storage.api import StorageError

__all__ = ["flush_messages", "monitor_resources"]

log = logging.getLogger("rapidmq")

#: At most this often, the key ranges of dropped queues are compacted away.
COMPACT_EVERY_S = 30.0
#: A store error is retried after this wait, doubled each time up to the maximum.
STORAGE_RETRY_S = 0.1
STORAGE_RETRY_MAX_S = 5.0
#: How often memory and disk are sampled.  A publisher on loopback can send
#: 300 MB/s, so this is what bounds the overshoot past the watermark; a sample
#: costs about 20 µs.
MONITOR_S = 0.05
#: While the memory alarm is on, freed heap is handed back to the OS this often.
TRIM_S = 0.5

#: Called when the set of active alarms changed.
Tell = Callable[[], None]


async def flush_messages(persist: Persistence, alarms: ResourceAlarms, tell: Tell) -> None:
    """The group commit: commit, sync in a worker thread, report the durable batch.

    It sleeps on an event while nothing is written, so an idle broker pays nothing.
    A store error (disk full, I/O error) does not stop the broker: it sets the
    storage alarm, which blocks publishers, holds every confirm not yet synced and
    retries with backoff; a retry that writes and syncs clears the alarm.  RocksDB
    consumes a batch it refuses, so the writes of a refused batch are gone from the
    store (the messages stay in memory): publishes from that batch on are never
    confirmed by this process, and the alarm stays on until a restart.
    """
    store = persist.store
    written = anyio.Event()

    def wakeup() -> None:
        written.set()

    def tell_publishers(events: list[AlarmEvent]) -> None:
        if events:
            tell()

    persist.wakeup = wakeup
    next_compaction = 0.0
    retry_s = 0.0  # 0 while the store works; else the wait before the next retry
    lost_batch: int | None = None  # the first batch whose writes the store refused
    if persist.pending:
        written.set()
    try:
        while True:
            if retry_s:
                await anyio.sleep(retry_s)
            else:
                await written.wait()
            written = anyio.Event()  # writes from here on wake the next round
            writing = persist.batch
            try:
                persist.commit()
            except StorageError as err:
                if lost_batch is None:
                    lost_batch = writing
                    log.error("%s; publishes from now on are not confirmed", err)
                tell_publishers(alarms.storage_failed(str(err)))
                retry_s = min(max(retry_s * 2, STORAGE_RETRY_S), STORAGE_RETRY_MAX_S)
                continue
            try:
                durable = await anyio.to_thread.run_sync(store.sync)
                now = time.monotonic()
                if getattr(store, "compaction_pending", False) and now >= next_compaction:
                    # Deleted and purged queues leave key ranges that RocksDB's own
                    # background compaction reaches late; reclaim them, off the loop.
                    next_compaction = now + COMPACT_EVERY_S
                    await anyio.to_thread.run_sync(store.compact)  # type: ignore[attr-defined]
            except StorageError as err:
                if not alarms.storage:
                    log.error("%s; confirms wait for the store", err)
                tell_publishers(alarms.storage_failed(str(err)))
                retry_s = min(max(retry_s * 2, STORAGE_RETRY_S), STORAGE_RETRY_MAX_S)
                continue
            # Never confirm from a refused batch on: its writes are not in the store.
            persist.durable(durable if lost_batch is None else min(durable, lost_batch - 1))
            if lost_batch is None:
                retry_s = 0.0
                if alarms.storage:
                    log.info("storage alarm cleared: the store writes and syncs again")
                    tell_publishers(alarms.storage_recovered())
    finally:
        persist.wakeup = None


async def monitor_resources(
    broker: Broker, alarms: ResourceAlarms, settings: Settings, tell: Tell
) -> None:
    """Sample memory and disk; page out, and block or unblock publishers on a change."""
    log.info(
        "memory high watermark %s (paging from %s); disk free limit %s",
        format_size(alarms.memory_limit_bytes),
        format_size(alarms.paging_threshold_bytes),
        format_size(alarms.disk_free_limit_bytes),
    )
    paging_store = settings.storage == "rocksdb"
    trimmed_at = 0.0
    while True:
        events = alarms.update(
            memory_used_bytes=resident_bytes(),
            disk_free_bytes=disk_free_bytes(settings.data_dir),
        )
        persist = broker.persistence
        try:
            if not paging_store or persist is None:
                paged = 0
            elif alarms.paging:
                paged = persist.page_out()
            else:
                # Lazy queues page steadily; their small frees need no trim.
                persist.page_out_lazy()
                paged = 0
        except StorageError as err:
            # A full disk refuses the page writes: keep the bodies in memory, and
            # let the disk and storage alarms block the publishers.
            log.warning("paging out message bodies failed: %s", err)
            paged = 0
        now = time.monotonic()
        # glibc keeps freed heap (paged or drained bodies) until asked to return it.
        if paged or (alarms.memory and now - trimmed_at >= TRIM_S):
            return_free_memory()
            trimmed_at = now
        for event in events:
            what = "in use" if event.resource == "memory" else "free"
            limit = "watermark" if event.resource == "memory" else "limit"
            if isinstance(event, AlarmSet):
                log.warning(
                    "%s alarm set: %s %s, %s %s; publishers are blocked",
                    event.resource,
                    format_size(event.used),
                    what,
                    limit,
                    format_size(event.limit),
                )
            else:
                log.info(
                    "%s alarm cleared: %s %s, %s %s",
                    event.resource,
                    format_size(event.used),
                    what,
                    limit,
                    format_size(event.limit),
                )
        if events:
            tell()
        await anyio.sleep(MONITOR_S)
