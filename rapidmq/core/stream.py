"""A stream queue: an append-only log that consumers read at their own offsets.

Theory of operation: every message routed to a stream gets the next offset
(0, 1, 2, ...) and stays until retention removes it; consuming removes
nothing.  Each consumer has a reader, the offset it delivers next, and reads
while it has credit: a stream consumer must acknowledge, and its prefetch is
its credit.  An ack gives credit back; it does not touch the log.

Appends are grouped into *chunks* and chunks into *segments*, as RabbitMQ's
log does.  A chunk is what one group commit writes (every message without a
message store): ``x-stream-offset: last`` starts at the last chunk, and a
timestamp starts at the first chunk written at or after it.  A segment is
closed by the first chunk that finds it at ``x-stream-max-segment-size-bytes``
(counted in body bytes); retention removes whole closed segments, oldest first,
while the stream is over ``x-max-length-bytes`` or the segment's newest
message is older than ``x-max-age``.  It runs when a segment closes and on a
timer, never per read.

With a message store the log lives there (:mod:`rapidmq.storage.stream_log`),
in the same batches as persistent messages, so a confirm for a stream message
waits for the group commit's sync, whatever its delivery mode.  Memory then
holds only the chunk index (two numbers per chunk), a tail cache of the newest
messages, and a bounded read-ahead per reader that has fallen behind it.
Without a store the cache is the log.

A stream presents the face of a classic :class:`~rapidmq.core.queue.Queue` to
sessions and the vhost (it is one, for typing), overriding every path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rapidmq.core.arguments import QueueSettings
from rapidmq.core.consumer import Consumer
from rapidmq.core.entry import Entry
from rapidmq.core.errors import NotImplementedFeature, PreconditionFailed
from rapidmq.core.message import Message
from rapidmq.core.queue import Queue
from rapidmq.core.stream_args import parse_stream_offset
from rapidmq.core.stream_delivery import OffsetStamp
from rapidmq.core.stream_index import StreamIndex
from rapidmq.storage.stream_log import CHUNK_START

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection
    from rapidmq.core.vhost import VirtualHost

__all__ = ["StreamQueue"]

#: Body bytes of the newest messages kept in memory when the log is in a store.
CACHE_BYTES = 16 << 20
#: Messages a reader behind the cache reads from the store at once.
READ_AHEAD = 512


class _Reader:
    """A consumer's place in the stream, and what it read ahead from the store."""

    __slots__ = ("ahead", "ahead_first", "offset")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.ahead: list[Message] = []
        self.ahead_first = 0


class StreamQueue(Queue):
    """One stream of a virtual host."""

    exclusive_consumers = False

    def __init__(
        self,
        vhost: VirtualHost,
        name: str,
        *,
        durable: bool,
        owner: CoreConnection | None,
        auto_delete: bool,
        arguments: dict[str, Any],
        settings: QueueSettings,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(
            vhost,
            name,
            durable=durable,
            owner=owner,
            auto_delete=auto_delete,
            arguments=arguments,
            settings=settings,
            clock=clock,
        )
        self._wall = vhost.wall_clock
        persist = vhost.persistence
        if persist is not None and persist.queues.get(self.key) is self:
            del persist.queues[self.key]  # a stream never pages
        self._persistence = persist
        self._stamp = OffsetStamp(None if persist is None else persist.codec.long_header_writer)
        self._index = StreamIndex(settings)
        self._cache: list[Message] = []  # _cache[0] is at offset _cache_first
        self._cache_first = 0
        self._cache_bytes = 0
        self._last_batch = -1
        self._readers: dict[Consumer, _Reader] = {}
        self.apply_settings(settings)
        if persist is not None:
            vhost.storing_all += 1  # transient publishes here are stored and wait for the sync
            self._recover()

    def apply_settings(self, settings: QueueSettings) -> None:
        """Take new retention settings (a policy changed); they apply from now on."""
        self.settings = settings
        self._index.configure(settings)
        self._retain(self._wall())
        self._watch()

    # -- the log ------------------------------------------------------------

    def publish(
        self, message: Message, routing_keys: tuple[str, ...] | None, ttl_ms: int | None
    ) -> bool:
        """Append one message (TTLs do not apply to streams)."""
        index = self._index
        offset = index.next
        now = self._wall()
        size = len(message.body)
        store = self._persistence
        if store is None:
            chunk_start = True
        else:
            batch = store.batch
            chunk_start = batch != self._last_batch
            self._last_batch = batch
            store.stream_append(self.key, offset, message, now, CHUNK_START if chunk_start else 0)
        if index.append(offset, size, now, chunk_start):
            self._retain(now)
            self._watch()
        self.published += 1
        self._cache.append(message)
        if store is not None:
            self._cache_bytes += size
            if self._cache_bytes > CACHE_BYTES:
                self._evict()
        if self.consumers:
            self.dispatch()
        return True

    def _evict(self) -> None:
        """Drop the oldest cached messages while the cache is over its size."""
        cache = self._cache
        drop = 0
        size = self._cache_bytes
        while size > CACHE_BYTES // 2 and drop < len(cache):
            size -= len(cache[drop].body)
            drop += 1
        self._cache_first += drop
        self._cache_bytes = size
        del cache[:drop]

    def _retain(self, now: float) -> None:
        """Apply retention; trim the cache and the stored log to the new first offset."""
        if not self._index.retain(now):
            return
        first = self._index.first
        if self._cache_first < first:
            drop = min(first - self._cache_first, len(self._cache))
            for message in self._cache[:drop]:
                self._cache_bytes -= len(message.body)
            del self._cache[:drop]
            self._cache_first += drop
        if self._persistence is not None:
            self._persistence.stream_trim(self.key, first)

    def _recover(self) -> None:
        """Rebuild the chunk and segment index from the stored log (at start-up)."""
        store = self._persistence
        assert store is not None
        facts = store.codec.record_facts
        append = self._index.append
        for offset, record in store.store.streams.scan(self.key):
            published_at, size = facts(record, 1)
            append(offset, size, published_at or 0.0, bool(record[0] & CHUNK_START))
        self._cache_first = self._index.next
        self._watch()

    # -- readers --------------------------------------------------------------

    def _message_at(self, reader: _Reader, offset: int) -> Message:
        index = offset - self._cache_first
        if index >= 0:
            return self._cache[index]
        index = offset - reader.ahead_first
        if 0 <= index < len(reader.ahead):
            return reader.ahead[index]
        store = self._persistence
        assert store is not None
        reader.ahead = store.stream_read(
            self.key, offset, min(READ_AHEAD, self._cache_first - offset)
        )
        reader.ahead_first = offset
        return reader.ahead[0]

    def dispatch(self) -> None:
        """Deliver to every consumer with credit that is behind the head."""
        if self.deleted:
            return
        for consumer in self.consumers:
            self._feed(consumer)

    def _feed(self, consumer: Consumer) -> None:
        reader = self._readers[consumer]
        session = consumer.session
        prefetch = consumer.prefetch
        global_prefetch = session.global_prefetch
        offset = reader.offset
        index = self._index
        if offset < index.first:
            offset = index.first  # retention passed it
        stamp, message_at, deliver = self._stamp, self._message_at, session.deliver
        cache, cache_first = self._cache, self._cache_first
        while offset < index.next:
            if session.blocked or consumer.unacked >= prefetch:
                break
            if global_prefetch and session.global_unacked >= global_prefetch:
                break
            ahead = offset - reader.ahead_first
            if offset >= cache_first:
                message = cache[offset - cache_first]
            elif 0 <= ahead < len(reader.ahead):
                message = reader.ahead[ahead]
            else:
                message = message_at(reader, offset)
            entry = Entry(stamp(message, offset), offset, None, None)
            offset += 1
            reader.offset = offset
            self.delivered += 1
            self.unacked_count += 1
            deliver(consumer, self, entry)
        reader.offset = offset
        if reader.ahead and offset >= self._cache_first:
            reader.ahead = []

    # -- consumers ----------------------------------------------------------

    def add_consumer(self, consumer: Consumer, *, dispatch: bool = True) -> None:
        """Attach a reader at the consumer's ``x-stream-offset``.

        Raises:
            PreconditionFailed: a bad offset, no prefetch, or ``x-priority``.
            NotImplementedFeature: a consumer that does not acknowledge.
        """
        arguments = consumer.arguments
        start = parse_stream_offset(arguments.get("x-stream-offset"), self.resource, self._wall())
        if not consumer.prefetch:
            raise PreconditionFailed(f"consumer prefetch count is not set for '{self.resource}'")
        if consumer.no_ack:
            raise NotImplementedFeature(
                f"automatic acknowledgement not supported by stream queues {self.resource}"
            )
        if "x-priority" in arguments:
            raise PreconditionFailed(
                f"invalid arg 'x-priority' for {self.resource} of queue type rabbit_stream_queue"
            )
        self._readers[consumer] = _Reader(self._index.start(start))
        self.consumers.append(consumer)
        self.had_consumer = True
        if dispatch:
            self._feed(consumer)

    def remove_consumer(self, consumer: Consumer, *, auto_delete: bool = True) -> None:
        """Detach a consumer and forget its reader."""
        if self._readers.pop(consumer, None) is None:
            return
        self.consumers.remove(consumer)
        if not self.consumers:
            self.last_used = self._clock()

    # -- settling: acks and rejects give credit only ---------------------------

    def settle_acked(self, count: int) -> None:
        self.unacked_count -= count
        self.acked += count

    def forget(self, entry: Entry) -> None:
        return None

    def requeue(self, entries: Iterable[Entry]) -> None:
        """A closed session's deliveries: nothing goes back (the log keeps them)."""
        self.unacked_count -= sum(1 for _ in entries)

    def discard(self, entries: Iterable[Entry], reason: str) -> None:
        self.unacked_count -= sum(1 for _ in entries)

    def reject(self, entries: Iterable[Entry], *, requeue: bool) -> None:
        """basic.reject and basic.nack: refused, as RabbitMQ refuses them on streams."""
        self.unacked_count -= sum(1 for _ in entries)
        raise NotImplementedFeature(
            f"basic.nack and basic.reject not supported by stream queues {self.resource}"
        )

    def get(self, *, no_ack: bool = False) -> Entry | None:
        raise NotImplementedFeature(f"basic.get not supported by stream queues {self.resource}")

    def purge(self) -> int:
        raise NotImplementedFeature(f"queue.purge not supported by stream queues {self.resource}")

    def page_out(self) -> int:
        return 0  # the log is in the store already; the cache is bounded

    # -- timers and lifecycle -----------------------------------------------

    def _watch(self) -> None:
        if self._index.age_deadline() is not None:
            self.vhost.watch(self)

    def next_deadline(self) -> float | None:
        """When the oldest closed segment passes ``x-max-age`` (monotonic clock)."""
        expires = self._index.age_deadline()
        if expires is None:
            return None
        return self._clock() + max(0.0, expires - self._wall())

    def on_timer(self, now: float) -> None:
        self._retain(self._wall())

    def detach(self) -> list[Consumer]:
        """Mark deleted and drop the log; returns the consumers to cancel."""
        if self._persistence is not None and not self.deleted:
            self._persistence.stream_drop(self.key)
            self.vhost.storing_all -= 1
        self.deleted = True
        consumers, self.consumers = self.consumers, []
        self.exclusive_consumer = None
        self._readers.clear()
        self._cache = []
        self._index = StreamIndex(self.settings)
        return consumers

    def statistics(self) -> dict[str, Any]:
        """As RabbitMQ's API shows a stream: its messages are the log's length."""
        index = self._index
        return super().statistics() | {
            "type": "stream",
            "messages": index.count,
            "messages_ready": index.count,
            "messages_unacknowledged": 0,
            "message_bytes_ready": index.total_bytes,
            "first_offset": index.first,
            "next_offset": index.next,
            "segments": len(index.segments),
        }

    @property
    def first(self) -> int:
        """The oldest retained offset."""
        return self._index.first

    @property
    def next(self) -> int:
        """The offset the next message gets."""
        return self._index.next

    @property
    def count(self) -> int:
        """Messages retained."""
        return self._index.count

    def __repr__(self) -> str:
        return f"StreamQueue({self.name!r}, first={self.first}, next={self.next})"
