"""A classic queue: ready messages, consumers and the rules applied to both.

Theory of operation: ready messages are small :class:`Entry` records in one
deque per priority level (one level unless ``x-max-priority``).  Each entry has
a sequence number so a requeued message goes back to its original place.  A
published message goes straight to a consumer with credit when nothing is
waiting; otherwise it is appended and the queue's invariant holds: *while
messages are ready, no consumer can take one*.  Everything that gives credit
back (ack, reject, a new consumer, a drained session) calls :meth:`Queue.dispatch`.

A durable queue of a broker with a message store also keeps its persistent
messages there (see :mod:`rapidmq.core.persistence`): an entry's ``stored`` is
its stored size, 0 when it is not stored.  Every path that takes an entry away
for good (ack, no-ack delivery, drop, expiry, dead-lettering, purge, delete)
removes it; a delivery to a consumer that must ack marks it delivered.

Two parts of the queue live in their own modules, as functions the class body
assigns as methods (so the per-message paths make no more calls than if they
were written here): length limits, TTL expiry and dead-lettering
(:mod:`rapidmq.core.queue_limits`), paging bodies out to the store and
back, with recovery at start-up (:mod:`rapidmq.core.paging`), and the time
its consumers could take a message at once (:mod:`rapidmq.core.consumer_use`),
which follows the invariant above: it is recorded only where dispatch stops
with messages waiting and where credit comes back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rapidmq.core import consumer_use, paging, queue_limits, quorum
from rapidmq.core.arguments import QueueSettings
from rapidmq.core.consumer import Consumer
from rapidmq.core.entry import Entry, insert_by_seq
from rapidmq.core.message import Message
from rapidmq.core.paging import PAGE_IN_BATCH, PagedOut, PagedTransient

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection
    from rapidmq.core.exchange import Binding
    from rapidmq.core.persistence import Persistence
    from rapidmq.core.vhost import VirtualHost

__all__ = ["PAGE_IN_BATCH", "Entry", "PagedOut", "PagedTransient", "Queue"]


class Queue:
    """One queue of a virtual host."""

    #: Whether basic.consume's ``exclusive`` is honoured (streams ignore it, as RabbitMQ's).
    exclusive_consumers = True

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
        # A quorum queue stores every message, persistent or not.
        self._quorum = settings.queue_type == "quorum"
        self._store_all = self._quorum and self._persist is not None
        if self._store_all:
            vhost.storing_all += 1  # publishes of transient messages there wait for the sync
        self.key = (vhost.name, name)  # the message store's name for this queue
        self._pager = pager = vhost.persistence
        if pager is not None and pager.pages:
            pager.queues[self.key] = self  # any queue may page its bodies
            if settings.queue_mode == "lazy":
                pager.lazy[self.key] = self  # pages its bodies out whatever the memory
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
        # Consumer capacity (see consumer_use): whether consumers can take a
        # message, since when, the last active spell while inactive, the average.
        self._use_active = True
        self._use_since = self.last_used
        self._use_active_s = 0.0
        self._use_average = 1.0
        self.deleted = False
        self.bindings_in: dict[Any, Binding] = {}
        # At-least-once dead letters no queue took yet (message, keys, reason, seq, size).
        self.held_dead_letters: list[tuple[Message, tuple[str, ...], str, int, int]] = []
        self.held_bytes = 0
        self.retry_at = 0.0
        # counters
        self.published = 0
        self.delivered = 0  # to consumers and basic.get, with or without ack
        self.delivered_no_ack = 0  # of those, to no-ack consumers
        self.got = 0  # of those, by basic.get
        self.got_no_ack = 0  # of those, by basic.get with no-ack
        self.got_empty = 0  # basic.get on an empty queue
        self.acked = 0  # acknowledgements received
        self.redelivered = 0
        self.expired = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.rejected_publishes = 0

    @property
    def paged_count(self) -> int:
        """Ready messages whose body is paged out."""
        return self._paged

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
        stored = persist is not None and (message.properties.delivery_mode == 2 or self._store_all)
        if not self.ready_count:
            if self.consumers:
                consumer = self._pick()
                if consumer is not None:
                    if stored and not consumer.no_ack:  # a no-ack delivery is gone at once
                        self._store(entry)
                    self._deliver(consumer, entry)
                    return True
            # The first message to wait: no consumer can take it.  Behind it,
            # the queue stays inactive until dispatch finds credit again.
            if self._use_active:
                self._use_stopped(self._clock())
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

    # -- limits, expiry and dead-lettering ----------------------------------

    _would_overflow = queue_limits.would_overflow
    _drop_over_limit = queue_limits.drop_over_limit
    _drop_expired = queue_limits.drop_expired
    _dead_letter = queue_limits.dead_letter
    apply_settings = queue_limits.apply_settings

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
        if not self.ready_count:
            if not self._use_active:
                self._credit_back()
            return
        if not self.consumers or self.deleted:
            if self._use_active:
                self._use_stopped(self._clock())  # requeued with no consumer to take them
            return
        timed = self._timed
        now = self._clock() if timed else 0.0
        if timed:
            self._drop_expired(now)
            if not self.ready_count:
                return
        consumer = self._pick()
        if consumer is None:
            if self._use_active:
                self._use_stopped(self._clock())
            return
        if not self._use_active:
            self._use_resumed(self._clock())
        while True:
            if self._paged:
                self._page_in(self._next_level())
            self._deliver(consumer, self._pop())
            if timed:
                self._drop_expired(now)
            if not self.ready_count:
                return
            consumer = self._pick()
            if consumer is None:
                if self._use_active:  # it is, unless a dead letter came back round
                    self._use_stopped(self._clock())
                return

    def get(self, *, no_ack: bool = False) -> Entry | None:
        """Take the head message for basic.get."""
        now = self._clock()
        self.last_used = now
        if self._timed:
            self._drop_expired(now)
        if not self.ready_count:
            self.got_empty += 1
            return None
        self.delivered += 1
        self.got += 1
        if self._paged:
            self._page_in(self._next_level())
        entry = self._pop()
        if self._quorum:
            quorum.stamp_get(entry)
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
        self.got_no_ack += 1

    def requeue(self, entries: Iterable[Entry]) -> None:
        """Put delivered messages back in their original places, marked redelivered."""
        if self._quorum:
            entries = quorum.returned(self, entries)
        count = 0
        expiring = False
        for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
            entry.redelivered = True
            count += 1
            if self.deleted:
                continue
            insert_by_seq(self._level_of(entry), entry)
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

    def reject(self, entries: list[Entry], *, requeue: bool) -> None:
        """basic.reject / basic.nack of delivered messages."""
        if requeue:
            self.requeue(entries)
        else:
            self.discard(entries, "rejected")

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

    # -- paging and recovery ------------------------------------------------

    page_out = paging.page_out
    recover = paging.recover
    _next_level = paging.next_level
    _level_of_message = paging.level_of_message
    _settle_page = paging.settle_page
    _page_in = paging.page_in

    # -- consumer capacity --------------------------------------------------

    _use_stopped = consumer_use.use_stopped
    _use_resumed = consumer_use.use_resumed
    _credit_back = consumer_use.credit_back
    consumer_capacity = consumer_use.consumer_capacity

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
        if not self._use_active:
            self._use_resumed(self._clock())  # as RabbitMQ: a new consumer can take a message
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

    next_deadline = queue_limits.next_deadline
    on_timer = queue_limits.on_timer

    def detach(self) -> list[Consumer]:
        """Mark deleted, drop ready messages and return the consumers to cancel."""
        if self._store_all and not self.deleted:
            self.vhost.storing_all -= 1
        self.held_dead_letters = []
        self.held_bytes = 0
        if self._persist is not None and self.persistent_count:
            self._persist.drop_queue(self.key)
            self.persistent_count = self.persistent_bytes = 0
        pager = self._pager
        if pager is not None and pager.queues.get(self.key) is self:
            del pager.queues[self.key]
        if pager is not None and pager.lazy.get(self.key) is self:
            del pager.lazy[self.key]
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
            "consumer_capacity": self.consumer_capacity(),
            "published": self.published,
            "delivered": self.delivered,
            "delivered_no_ack": self.delivered_no_ack,
            "got": self.got,
            "got_no_ack": self.got_no_ack,
            "got_empty": self.got_empty,
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
