"""A classic queue: ready messages, consumers and the rules applied to both.

Theory of operation: ready messages are small :class:`Entry` records in one
deque per priority level (one level unless ``x-max-priority``).  Each entry has
a sequence number so a requeued message goes back to its original place.  A
published message goes straight to a consumer with credit when nothing is
waiting; otherwise it is appended and the queue's invariant holds: *while
messages are ready, no consumer can take one*.  Everything that gives credit
back (ack, reject, a new consumer, a drained session) calls :meth:`Queue.dispatch`.

Expired messages are removed only at the head (of each priority level), as in
RabbitMQ; :meth:`Queue.on_timer` does it when the broker ticks.

A durable queue of a broker with a message store also keeps its persistent
messages there (see :mod:`rapidmq.core.persistence`): an entry's ``stored`` is
its stored size, 0 when it is not stored.  Every path that takes an entry away
for good (ack, no-ack delivery, drop, expiry, dead-lettering, purge, delete)
removes it; a delivery to a consumer that must ack marks it delivered.

Paging (when the server finds memory short): every queue replaces the
message of each ready entry behind the head window of each priority level
(:data:`PAGE_IN_BATCH` entries) with a :class:`PagedOut` copy without the
body.  A stored entry's body is read back from its stored record; any other
body is first written as a page of the store (:class:`PagedTransient`).
``ready_bytes`` is the sum of the bodies in memory; paged bodies are counted
in ``paged_bytes`` (length limits count both).  Delivery reads bodies back, a
batch at a time, before they leave the head of their level; an entry dropped
at the head (expired, or over a length limit) is read back only when it is
dead-lettered, otherwise its page is just deleted.  Recovery restores entries
beyond the head window already paged.  The fast paths test one counter
(``_paged``) and pay nothing else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rapidmq.core.arguments import QueueSettings, parse_expiration
from rapidmq.core.consumer import Consumer
from rapidmq.core.errors import PreconditionFailed
from rapidmq.core.message import Message

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection
    from rapidmq.core.exchange import Binding
    from rapidmq.core.persistence import Persistence
    from rapidmq.core.vhost import VirtualHost

__all__ = ["PAGE_IN_BATCH", "Entry", "PagedOut", "PagedTransient", "Queue"]

#: Entries read back at once when a paged entry reaches the head; paging leaves
#: this many at the head in memory.
PAGE_IN_BATCH = 64


class PagedOut(Message):
    """A stored message whose body was dropped from memory (the body is ``b""``)."""

    __slots__ = ("body_size",)

    body_size: int

    @classmethod
    def of(cls, message: Message, body_size: int) -> PagedOut:
        paged = cls(
            message.exchange,
            message.routing_key,
            b"",
            message.properties,
            message.encoded_properties,
            message.annotations,
        )
        paged.body_size = body_size
        return paged


class PagedTransient(PagedOut):
    """A message that is not stored, whose body is kept as a page of the store."""

    __slots__ = ()


class Entry:
    """One message in one queue (ready or delivered and unacked)."""

    __slots__ = ("expires_at", "message", "redelivered", "routing_keys", "seq", "stored")

    def __init__(
        self,
        message: Message,
        seq: int,
        expires_at: float | None,
        routing_keys: tuple[str, ...] | None,
    ) -> None:
        self.message = message
        self.seq = seq
        self.expires_at = expires_at
        self.routing_keys = routing_keys  # None: just (message.routing_key,)
        self.redelivered = False
        self.stored = 0  # the size in the message store; 0: not stored


def _insert_by_seq(level: deque[Entry], entry: Entry) -> None:
    if not level or entry.seq < level[0].seq:
        level.appendleft(entry)
    elif entry.seq > level[-1].seq:
        level.append(entry)
    else:
        lo, hi = 0, len(level)
        while lo < hi:
            mid = (lo + hi) // 2
            if level[mid].seq < entry.seq:
                lo = mid + 1
            else:
                hi = mid
        level.insert(lo, entry)


class Queue:
    """One queue of a virtual host."""

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
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.owner = owner
        self.auto_delete = auto_delete
        self.arguments = arguments
        self.settings = settings
        self._clock = clock
        self._max_priority = settings.max_priority
        self._levels: list[deque[Entry]] = [deque() for _ in range(settings.max_priority + 1)]
        self._fifo = self._levels[0]
        self._ttl_ms = settings.message_ttl_ms
        self._max_length = settings.max_length
        self._max_bytes = settings.max_length_bytes
        self._limited = self._max_length is not None or self._max_bytes is not None
        self._overflow = settings.overflow
        self._timed = self._ttl_ms is not None
        self._seq = 0
        self._persist: Persistence | None = vhost.persistence if durable else None
        self.key = (vhost.name, name)  # the message store's name for this queue
        self._pager = pager = vhost.persistence
        if pager is not None and pager.pages:
            pager.queues[self.key] = self  # any queue may page its bodies
        self.persistent_count = 0  # stored messages, ready and unacked
        self.persistent_bytes = 0
        self._paged = 0  # ready entries whose body is paged out
        self.paged_bytes = 0  # their body bytes (part of ready_bytes as reported)
        self._paged_upto = 0  # entries up to this seq were looked at by page_out
        self.ready_count = 0
        self.ready_bytes = 0
        self.unacked_count = 0
        self.consumers: list[Consumer] = []
        self.exclusive_consumer: Consumer | None = None
        self.had_consumer = False
        self.last_used = clock()
        self.deleted = False
        self.bindings_in: dict[Any, Binding] = {}
        # counters
        self.published = 0
        self.delivered = 0
        self.acked = 0
        self.redelivered = 0
        self.expired = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.rejected_publishes = 0

    @property
    def resource(self) -> str:
        return f"queue '{self.name}' in vhost '{self.vhost.name}'"

    # -- publishing ---------------------------------------------------------

    def publish(
        self, message: Message, routing_keys: tuple[str, ...] | None, ttl_ms: int | None
    ) -> bool:
        """Enqueue (or deliver at once) one routed message; False if overflow refused it."""
        if self._limited and self._overflow != "drop-head" and self._would_overflow(message):
            self.rejected_publishes += 1
            if self._overflow == "reject-publish-dlx":
                self._dead_letter(message, routing_keys, "maxlen")
            return False
        self._seq += 1
        self.published += 1
        expires_at = None
        now = 0.0
        queue_ttl = self._ttl_ms
        if queue_ttl is not None and (ttl_ms is None or queue_ttl < ttl_ms):
            ttl_ms = queue_ttl
        if ttl_ms is not None:
            now = self._clock()
            expires_at = now + ttl_ms / 1000.0
        entry = Entry(message, self._seq, expires_at, routing_keys)
        persist = self._persist
        stored = persist is not None and message.properties.delivery_mode == 2
        if not self.ready_count and self.consumers:
            consumer = self._pick()
            if consumer is not None:
                if stored and not consumer.no_ack:  # a no-ack delivery is gone at once
                    self._store(entry)
                self._deliver(consumer, entry)
                return True
        if stored:
            self._store(entry)
        self._push(entry)
        if self._limited:
            self._drop_over_limit()
        if expires_at is not None:
            self._timed = True
            self._drop_expired(now)
            self.vhost.watch(self)
        return True

    def _store(self, entry: Entry) -> None:
        persist = self._persist
        assert persist is not None
        size = persist.add(self.key, entry.seq, entry.message)
        entry.stored = size
        if not self.persistent_count:
            persist.queues[self.key] = self  # a candidate for paging
        self.persistent_count += 1
        self.persistent_bytes += size

    def _unstore(self, entry: Entry) -> None:
        """Remove a stored entry from the store (it is acked or dropped)."""
        if self.deleted or self._persist is None:
            return  # a deleted queue's messages went with drop_queue
        self._persist.remove(self.key, entry.seq)
        self.persistent_count -= 1
        self.persistent_bytes -= entry.stored
        entry.stored = 0

    def forget(self, entry: Entry) -> None:
        """A stored entry was acknowledged: remove it from the store."""
        if entry.stored:
            self._unstore(entry)

    def _push(self, entry: Entry) -> None:
        if self._max_priority:
            priority = entry.message.properties.priority or 0
            self._levels[min(priority, self._max_priority)].append(entry)
        else:
            self._fifo.append(entry)
        self.ready_count += 1
        self.ready_bytes += len(entry.message.body)

    def _level_of(self, entry: Entry) -> deque[Entry]:
        if not self._max_priority:
            return self._fifo
        priority = entry.message.properties.priority or 0
        return self._levels[min(priority, self._max_priority)]

    def _pop(self) -> Entry:
        if self._max_priority:
            for level in reversed(self._levels):
                if level:
                    entry = level.popleft()
                    break
        else:
            entry = self._fifo.popleft()
        self.ready_count -= 1
        self.ready_bytes -= len(entry.message.body)
        return entry

    def _would_overflow(self, message: Message) -> bool:
        max_length = self._max_length
        if max_length is not None and self.ready_count + 1 > max_length:
            return True
        max_bytes = self._max_bytes
        return (
            max_bytes is not None
            and self.ready_bytes + self.paged_bytes + len(message.body) > max_bytes
        )

    def _drop_over_limit(self) -> None:
        if self._overflow != "drop-head":
            return
        max_length = self._max_length
        max_bytes = self._max_bytes
        while self.ready_count and (
            (max_length is not None and self.ready_count > max_length)
            or (max_bytes is not None and self.ready_bytes + self.paged_bytes > max_bytes)
        ):
            if self._paged:
                head = self._next_level()[0]
                if isinstance(head.message, PagedOut):
                    self._settle_page(head, read=self.settings.dead_letter_exchange is not None)
            entry = self._pop()
            if entry.stored:
                self._unstore(entry)
            self._dead_letter(entry.message, entry.routing_keys, "maxlen")

    def _drop_expired(self, now: float) -> None:
        for level in self._levels:
            while level:
                expires_at = level[0].expires_at
                if expires_at is None or expires_at > now:
                    break
                entry = level[0]
                if isinstance(entry.message, PagedOut):
                    self._settle_page(entry, read=self.settings.dead_letter_exchange is not None)
                level.popleft()
                self.ready_count -= 1
                self.ready_bytes -= len(entry.message.body)
                self.expired += 1
                if entry.stored:
                    self._unstore(entry)
                self._dead_letter(entry.message, entry.routing_keys, "expired")

    def _dead_letter(
        self, message: Message, routing_keys: tuple[str, ...] | None, reason: str
    ) -> None:
        if self.settings.dead_letter_exchange is None:
            self.dropped += 1
            return
        self.dead_lettered += 1
        self.vhost.dead_letter(self, message, routing_keys or (message.routing_key,), reason)

    # -- delivering ---------------------------------------------------------

    def _pick(self) -> Consumer | None:
        """The next consumer with credit, moved to the back of its priority group."""
        consumers = self.consumers
        if len(consumers) == 1 or self.settings.single_active_consumer:
            consumer = consumers[0]
            session = consumer.session
            if session.blocked or (consumer.prefetch and consumer.unacked >= consumer.prefetch):
                return None
            if session.global_prefetch and session.global_unacked >= session.global_prefetch:
                return None
            return consumer
        for i, consumer in enumerate(consumers):
            session = consumer.session
            if session.blocked or (consumer.prefetch and consumer.unacked >= consumer.prefetch):
                continue
            if session.global_prefetch and session.global_unacked >= session.global_prefetch:
                continue
            end = i + 1
            while end < len(consumers) and consumers[end].priority == consumer.priority:
                end += 1
            if end - 1 > i:
                del consumers[i]
                consumers.insert(end - 1, consumer)
            return consumer
        return None

    def _deliver(self, consumer: Consumer, entry: Entry) -> None:
        self.delivered += 1
        if not consumer.no_ack:
            self.unacked_count += 1
            if entry.stored:
                self._persist.mark_delivered(self.key, entry.seq)  # type: ignore[union-attr]
        elif entry.stored:
            self._unstore(entry)
        consumer.session.deliver(consumer, self, entry)

    def dispatch(self) -> None:
        """Deliver ready messages while some consumer has credit."""
        if not self.ready_count or not self.consumers or self.deleted:
            return
        timed = self._timed
        now = self._clock() if timed else 0.0
        if timed:
            self._drop_expired(now)
        while self.ready_count:
            consumer = self._pick()
            if consumer is None:
                break
            if self._paged:
                self._page_in(self._next_level())
            self._deliver(consumer, self._pop())
            if timed:
                self._drop_expired(now)

    def get(self, *, no_ack: bool = False) -> Entry | None:
        """Take the head message for basic.get."""
        now = self._clock()
        self.last_used = now
        if self._timed:
            self._drop_expired(now)
        if not self.ready_count:
            return None
        self.delivered += 1
        if self._paged:
            self._page_in(self._next_level())
        entry = self._pop()
        if entry.stored:
            if no_ack:
                self._unstore(entry)
            else:
                self._persist.mark_delivered(self.key, entry.seq)  # type: ignore[union-attr]
        return entry

    # -- settling -----------------------------------------------------------

    def settle_acked(self, count: int) -> None:
        """``count`` delivered messages were acknowledged."""
        self.unacked_count -= count
        self.acked += count

    def settle_get_no_ack(self) -> None:
        """A basic.get with no-ack took a message; nothing to track."""
        self.acked += 1

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put delivered messages back in their original places, marked redelivered."""
        count = 0
        expiring = False
        for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
            entry.redelivered = True
            count += 1
            if self.deleted:
                continue
            _insert_by_seq(self._level_of(entry), entry)
            self.ready_count += 1
            self.ready_bytes += len(entry.message.body)
            expiring = expiring or entry.expires_at is not None
        self.unacked_count -= count
        self.redelivered += count
        if self.deleted or not count:
            return
        if self._limited:
            self._drop_over_limit()
        if expiring:
            self._timed = True
            self._drop_expired(self._clock())
            self.vhost.watch(self)
        self.dispatch()

    def discard(self, entries: Iterable[Entry], reason: str) -> None:
        """Delivered messages were rejected without requeue: dead-letter or drop them."""
        for entry in entries:
            self.unacked_count -= 1
            if entry.stored:
                self._unstore(entry)
            if not self.deleted:
                self._dead_letter(entry.message, entry.routing_keys, reason)

    def purge(self) -> int:
        """Drop every ready message; returns how many."""
        count = self.ready_count
        persist = self._persist
        if persist is not None and self.persistent_count and not self.deleted:
            if self.unacked_count:
                for level in self._levels:
                    for entry in level:
                        if entry.stored:
                            self._unstore(entry)
            else:
                persist.drop_queue(self.key)
                self.persistent_count = self.persistent_bytes = 0
        for level in self._levels:
            level.clear()
        self.ready_count = 0
        self.ready_bytes = 0
        if self._paged and self._pager is not None:
            self._pager.drop_pages(self.key)
        self._paged = self.paged_bytes = 0
        return count

    def recover(self, data: bytes, seq: int, *, delivered: bool) -> None:
        """Put back one stored message at start-up (in seq order), writing nothing.

        Beyond the head window of its priority level the message comes back
        without its body (paged), so a long queue does not fill memory.  Its TTL
        counts from its publish when the record holds the publish time.

        Raises:
            ValueError: ``data`` is not a stored message.
        """
        persist = self._persist
        assert persist is not None
        codec = persist.codec
        message, published_at, body_size = codec.decode_record(data, with_body=False)
        paged = body_size > 0 and len(self._level_of_message(message)) >= PAGE_IN_BATCH
        if not paged:
            message = codec.decode(data)
        self._seq = max(self._seq, seq)
        ttl_ms = self._ttl_ms
        expiration = message.properties.expiration
        if expiration is not None:
            try:
                message_ttl = parse_expiration(expiration)
            except PreconditionFailed:
                message_ttl = None
            if message_ttl is not None and (ttl_ms is None or message_ttl < ttl_ms):
                ttl_ms = message_ttl
        expires_at = None
        if ttl_ms is not None:
            expires_at = self._clock() + ttl_ms / 1000.0
            if published_at is not None:
                expires_at -= max(0.0, persist.wall_clock() - published_at)
            self._timed = True
            self.vhost.watch(self)
        if paged:
            message = PagedOut.of(message, body_size)
            self._paged += 1
            self.paged_bytes += body_size
        entry = Entry(message, seq, expires_at, None)
        entry.redelivered = delivered
        entry.stored = len(data)
        if not self.persistent_count:
            persist.queues[self.key] = self
        self.persistent_count += 1
        self.persistent_bytes += len(data)
        self._push(entry)

    # -- paging -------------------------------------------------------------

    def page_out(self) -> int:
        """Drop the bodies of ready messages behind the head windows; returns the bytes.

        Only new entries are looked at each time (those after the last call), so
        a long queue is walked once.  The caller has committed the store's batch,
        and commits the pages written here.
        """
        pager = self._pager
        if pager is None or self.deleted:
            return 0
        pages = pager.pages
        key = self.key
        upto = self._paged_upto
        self._paged_upto = self._seq
        keep = PAGE_IN_BATCH
        paged = 0
        dropped = 0
        for level in self._levels:
            length = len(level)
            count = 0
            for entry in reversed(level):
                if entry.seq <= upto or length - count <= keep:
                    break
                count += 1
                message = entry.message
                if isinstance(message, PagedOut):
                    continue
                size = len(message.body)
                if not size:
                    continue
                if entry.stored:
                    entry.message = PagedOut.of(message, size)
                elif pages:
                    pager.page(key, entry.seq, message.body)
                    entry.message = PagedTransient.of(message, size)
                else:
                    continue
                paged += 1
                dropped += size
        self.ready_bytes -= dropped
        self.paged_bytes += dropped
        self._paged += paged
        pager.paged_out += paged
        return dropped

    def _next_level(self) -> deque[Entry]:
        """The level the next :meth:`_pop` takes from (the queue has ready messages)."""
        if self._max_priority:
            for level in reversed(self._levels):
                if level:
                    return level
        return self._fifo

    def _level_of_message(self, message: Message) -> deque[Entry]:
        if not self._max_priority:
            return self._fifo
        priority = message.properties.priority or 0
        return self._levels[min(priority, self._max_priority)]

    def _settle_page(self, entry: Entry, *, read: bool) -> None:
        """Bring a paged entry's body back (``read``), or just forget its page."""
        message = entry.message
        assert isinstance(message, PagedOut)
        pager = self._pager
        assert pager is not None
        self._paged -= 1
        self.paged_bytes -= message.body_size
        transient = type(message) is PagedTransient
        if not read:
            if transient:
                pager.unpage(self.key, entry.seq)
            entry.message = Message(
                message.exchange,
                message.routing_key,
                b"",
                message.properties,
                message.encoded_properties,
                message.annotations,
            )
            return
        if transient:
            body = pager.read_page(self.key, entry.seq)
        else:
            body = pager.read_body(self.key, entry.seq)
        entry.message = Message(
            message.exchange,
            message.routing_key,
            body,
            message.properties,
            message.encoded_properties,
            message.annotations,
        )
        self.ready_bytes += len(body)

    def _page_in(self, level: deque[Entry]) -> None:
        """Once the head of ``level`` is paged, read back the next ``PAGE_IN_BATCH`` bodies."""
        if not isinstance(level[0].message, PagedOut):
            return  # still inside the window read back last time: one test per delivery
        for i, entry in enumerate(level):
            if i >= PAGE_IN_BATCH or not self._paged:
                break
            if isinstance(entry.message, PagedOut):
                self._settle_page(entry, read=True)

    # -- consumers ----------------------------------------------------------

    def add_consumer(self, consumer: Consumer, *, dispatch: bool = True) -> None:
        """Attach a consumer (highest ``x-priority`` first, then registration order)."""
        consumers = self.consumers
        index = len(consumers)
        if not self.settings.single_active_consumer:
            while index and consumers[index - 1].priority < consumer.priority:
                index -= 1
        consumers.insert(index, consumer)
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        self.had_consumer = True
        if dispatch:
            self.dispatch()

    def remove_consumer(self, consumer: Consumer, *, auto_delete: bool = True) -> None:
        """Detach a consumer; an auto-delete queue goes with its last one."""
        try:
            self.consumers.remove(consumer)
        except ValueError:
            return
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if not self.consumers:
            self.last_used = self._clock()
            if self.settings.expires_ms is not None:
                self.vhost.watch(self)
            if auto_delete:
                self.maybe_auto_delete()
        elif self.settings.single_active_consumer:
            self.dispatch()

    def maybe_auto_delete(self) -> None:
        """Delete this queue if it is auto-delete and its last consumer went."""
        if self.auto_delete and self.had_consumer and not self.consumers and not self.deleted:
            self.vhost.remove_queue(self)

    def touch(self) -> None:
        """The queue was used (declared again): restart its ``x-expires`` timer."""
        self.last_used = self._clock()

    # -- timers -------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has work, or None."""
        deadline: float | None = None
        if self._timed:
            for level in self._levels:
                if level:
                    expires_at = level[0].expires_at
                    if expires_at is not None and (deadline is None or expires_at < deadline):
                        deadline = expires_at
        expires_ms = self.settings.expires_ms
        if expires_ms is not None and not self.consumers:
            unused_until = self.last_used + expires_ms / 1000.0
            if deadline is None or unused_until < deadline:
                deadline = unused_until
        return deadline

    def on_timer(self, now: float) -> None:
        """Expire messages at the head and delete the queue if unused too long."""
        if self._timed:
            self._drop_expired(now)
        expires_ms = self.settings.expires_ms
        if (
            expires_ms is not None
            and not self.consumers
            and not self.deleted
            and now >= self.last_used + expires_ms / 1000.0
        ):
            self.vhost.remove_queue(self)

    def detach(self) -> list[Consumer]:
        """Mark deleted, drop ready messages and return the consumers to cancel."""
        if self._persist is not None and self.persistent_count:
            self._persist.drop_queue(self.key)
            self.persistent_count = self.persistent_bytes = 0
        pager = self._pager
        if pager is not None and pager.queues.get(self.key) is self:
            del pager.queues[self.key]
        self.deleted = True
        consumers = self.consumers
        self.consumers = []
        self.exclusive_consumer = None
        self.purge()
        return consumers

    def statistics(self) -> dict[str, Any]:
        """Counts and settings, as admin and metrics read them."""
        return {
            "name": self.name,
            "vhost": self.vhost.name,
            "durable": self.durable,
            "exclusive": self.owner is not None,
            "auto_delete": self.auto_delete,
            "arguments": dict(self.arguments),
            "messages": self.ready_count + self.unacked_count,
            "messages_ready": self.ready_count,
            "messages_unacknowledged": self.unacked_count,
            "message_bytes_ready": self.ready_bytes + self.paged_bytes,
            "consumers": len(self.consumers),
            "published": self.published,
            "delivered": self.delivered,
            "acknowledged": self.acked,
            "redelivered": self.redelivered,
            "expired": self.expired,
            "dead_lettered": self.dead_lettered,
            "dropped": self.dropped,
            "rejected_publishes": self.rejected_publishes,
        } | (
            {}
            if self._persist is None
            else {
                "messages_persistent": self.persistent_count,
                "message_bytes_persistent": self.persistent_bytes,
                "message_bytes_paged_out": self.paged_bytes,
            }
        )

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, ready={self.ready_count}, unacked={self.unacked_count})"
