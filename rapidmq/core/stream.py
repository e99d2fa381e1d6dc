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

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rapidmq.core.arguments import QueueSettings
from rapidmq.core.consumer import Consumer
from rapidmq.core.entry import Entry
from rapidmq.core.errors import NotImplementedFeature, PreconditionFailed
from rapidmq.core.message import Message
from rapidmq.core.queue import Queue
from rapidmq.core.stream_args import StartAt, parse_stream_offset
from rapidmq.core.stream_delivery import OffsetStamp
from rapidmq.storage.stream_log import CHUNK_START

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection
    from rapidmq.core.vhost import VirtualHost

__all__ = ["StreamQueue"]

#: Body bytes of the newest messages kept in memory when the log is in a store.
CACHE_BYTES = 16 << 20
#: Messages a reader behind the cache reads from the store at once.
READ_AHEAD = 512


class _Segment:
    __slots__ = ("bytes", "count", "first", "last_ts")

    def __init__(self, first: int, now_s: float) -> None:
        self.first = first
        self.bytes = 0
        self.count = 0
        self.last_ts = now_s


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
        self.first = 0  # the oldest retained offset
        self.next = 0  # the offset the next message gets
        self.count = 0
        self.total_bytes = 0
        self._cache: list[Message] = []  # _cache[0] is at offset _cache_first
        self._cache_first = 0
        self._cache_bytes = 0
        self._chunk_first = array("q")
        self._chunk_ts = array("d")
        self._chunk_base = 0
        self._last_batch = -1
        self._segments: list[_Segment] = []
        self._readers: dict[Consumer, _Reader] = {}
        self.apply_settings(settings)
        if persist is not None:
            persist.streams += 1
            self._recover()

    def apply_settings(self, settings: QueueSettings) -> None:
        """Take new retention settings (a policy changed); they apply from now on."""
        self.settings = settings
        self._max_bytes = settings.max_length_bytes
        self._max_age_s = settings.max_age_s
        self._segment_bytes = max(1, settings.stream_max_segment_size_bytes)
        if self._segments:
            self._retain(self._wall())
            self._watch()

    # -- the log ------------------------------------------------------------

    def publish(
        self, message: Message, routing_keys: tuple[str, ...] | None, ttl_ms: int | None
    ) -> bool:
        """Append one message (TTLs do not apply to streams)."""
        offset = self.next
        now = self._wall()
        store = self._persistence
        if store is None:
            chunk_start = True
        else:
            batch = store.batch
            chunk_start = batch != self._last_batch
            self._last_batch = batch
            store.stream_append(self.key, offset, message, now, CHUNK_START if chunk_start else 0)
        self._append(offset, len(message.body), now, chunk_start)
        self.published += 1
        self._cache.append(message)
        if store is not None:
            self._cache_bytes += len(message.body)
            if self._cache_bytes > CACHE_BYTES:
                self._evict()
        if self.consumers:
            self.dispatch()
        return True

    def _append(self, offset: int, size: int, now: float, chunk: bool) -> None:
        self.next = offset + 1
        self.count += 1
        self.total_bytes += size
        segments = self._segments
        closed = False
        if chunk:
            self._chunk_first.append(offset)
            self._chunk_ts.append(now)
            if not segments or segments[-1].bytes >= self._segment_bytes:
                closed = bool(segments)
                segments.append(_Segment(offset, now))
        segment = segments[-1]
        segment.bytes += size
        segment.count += 1
        segment.last_ts = now
        if closed:
            self._retain(now)
            self._watch()

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
        """Remove the oldest closed segments while over a limit."""
        segments = self._segments
        max_bytes, max_age = self._max_bytes, self._max_age_s
        removed = 0
        while len(segments) - removed > 1:
            oldest = segments[removed]
            if not (
                (max_bytes is not None and self.total_bytes > max_bytes)
                or (max_age is not None and oldest.last_ts < now - max_age)
            ):
                break
            removed += 1
            self.total_bytes -= oldest.bytes
            self.count -= oldest.count
        if not removed:
            return
        del segments[:removed]
        first = self.first = segments[0].first
        chunks = self._chunk_first
        cut = bisect_left(chunks, first, self._chunk_base)
        self._chunk_base = cut
        if cut > len(chunks) // 2:
            del chunks[:cut], self._chunk_ts[:cut]
            self._chunk_base = 0
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
        first = None
        for offset, record in store.store.streams.scan(self.key):
            if first is None:
                first = self.first = offset
            published_at, size = facts(record, 1)
            chunk = bool(record[0] & CHUNK_START) or offset == first
            self._append(offset, size, published_at or 0.0, chunk)
        self._cache_first = self.next

    # -- readers --------------------------------------------------------------

    def _start(self, start: StartAt) -> int:
        kind = start.kind
        if kind == "first":
            return self.first
        if kind == "next":
            return self.next
        chunks = self._chunk_first
        base = self._chunk_base
        if kind == "last":
            return chunks[-1] if len(chunks) > base else self.next
        if kind == "offset":
            return max(start.offset, self.first)
        index = bisect_left(self._chunk_ts, start.time_s, base)
        return chunks[index] if index < len(chunks) else self.next

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
        if offset < self.first:
            offset = self.first  # retention passed it
        stamp, message_at, deliver = self._stamp, self._message_at, session.deliver
        cache, cache_first = self._cache, self._cache_first
        while offset < self.next:
            if session.blocked or consumer.unacked >= prefetch:
                break
            if global_prefetch and session.global_unacked >= global_prefetch:
                break
            index = offset - reader.ahead_first
            if offset >= cache_first:
                message = cache[offset - cache_first]
            elif 0 <= index < len(reader.ahead):
                message = reader.ahead[index]
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
        self._readers[consumer] = _Reader(self._start(start))
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
        if self._max_age_s is not None and len(self._segments) > 1:
            self.vhost.watch(self)

    def next_deadline(self) -> float | None:
        """When the oldest closed segment passes ``x-max-age`` (monotonic clock)."""
        if self._max_age_s is None or len(self._segments) < 2:
            return None
        expires = self._segments[0].last_ts + self._max_age_s
        return self._clock() + max(0.0, expires - self._wall())

    def on_timer(self, now: float) -> None:
        self._retain(self._wall())

    def detach(self) -> list[Consumer]:
        """Mark deleted and drop the log; returns the consumers to cancel."""
        if self._persistence is not None and not self.deleted:
            self._persistence.stream_drop(self.key)
            self._persistence.streams -= 1
        self.deleted = True
        consumers, self.consumers = self.consumers, []
        self.exclusive_consumer = None
        self._readers.clear()
        self._cache = []
        self._segments = []
        return consumers

    def statistics(self) -> dict[str, Any]:
        """As RabbitMQ's API shows a stream: its messages are the log's length."""
        return super().statistics() | {
            "type": "stream",
            "messages": self.count,
            "messages_ready": self.count,
            "messages_unacknowledged": 0,
            "message_bytes_ready": self.total_bytes,
            "first_offset": self.first,
            "next_offset": self.next,
            "segments": len(self._segments),
        }

    def __repr__(self) -> str:
        return f"StreamQueue({self.name!r}, first={self.first}, next={self.next})"
