"""Paging a queue's message bodies out to the message store and back.

Theory of operation: when the server finds memory short, every queue replaces
the message of each ready entry behind the head window of each priority level
(:data:`PAGE_IN_BATCH` entries) with a :class:`PagedOut` copy without the body.
A stored entry's body is read back from its stored record; any other body is
first written as a page of the store (:class:`PagedTransient`).
``ready_bytes`` is the sum of the bodies in memory; paged bodies are counted in
``paged_bytes`` (length limits count both).  Delivery reads bodies back, a
batch at a time, before they leave the head of their level; an entry dropped
at the head (expired, or over a length limit) is read back only when it is
dead-lettered, otherwise its page is just deleted.  Recovery restores entries
beyond the head window already paged.  The fast paths test one counter
(``_paged``) and pay nothing else.

The functions taking a queue are methods of :class:`~rapidmq.core.queue.Queue`
(its class body assigns them), kept apart because paging changes for reasons of
memory and storage, not of routing or delivery.  Assigned, not wrapped, they
cost the per-message paths no extra call.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rapidmq.core import quorum
from rapidmq.core.arguments import parse_expiration
from rapidmq.core.entry import Entry
from rapidmq.core.errors import PreconditionFailed
from rapidmq.core.message import Message

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue

__all__ = [
    "PAGE_IN_BATCH",
    "PagedOut",
    "PagedTransient",
    "level_of_message",
    "next_level",
    "page_in",
    "page_out",
    "recover",
    "settle_page",
]

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


def page_out(queue: Queue) -> int:
    """Drop the bodies of ready messages behind the head windows; returns the bytes.

    Only new entries are looked at each time (those after the last call), so
    a long queue is walked once.  The caller has committed the store's batch,
    and commits the pages written here.
    """
    pager = queue._pager
    if pager is None or queue.deleted:
        return 0
    pages = pager.pages
    key = queue.key
    upto = queue._paged_upto
    queue._paged_upto = queue._seq
    keep = PAGE_IN_BATCH
    paged = 0
    dropped = 0
    for level in queue._levels:
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
    queue.ready_bytes -= dropped
    queue.paged_bytes += dropped
    queue._paged += paged
    pager.paged_out += paged
    return dropped


def recover(queue: Queue, data: bytes, seq: int, *, delivered: bool, returns: int = 0) -> None:
    """Put back one stored message at start-up (in seq order), writing nothing.

    Beyond the head window of its priority level the message comes back
    without its body (paged), so a long queue does not fill memory.  Its TTL
    counts from its publish when the record holds the publish time.  A quorum
    queue's message comes back with its count of returns (``returns``), and
    carries it as ``x-delivery-count`` as it did before the stop.

    Raises:
        ValueError: ``data`` is not a stored message.
    """
    persist = queue._persist
    assert persist is not None
    codec = persist.codec
    message, published_at, body_size = codec.decode_record(data, with_body=False)
    paged = body_size > 0 and len(queue._level_of_message(message)) >= PAGE_IN_BATCH
    if not paged:
        message = codec.decode(data)
    queue._seq = max(queue._seq, seq)
    ttl_ms = queue._ttl_ms
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
        expires_at = queue._clock() + ttl_ms / 1000.0
        if published_at is not None:
            expires_at -= max(0.0, persist.wall_clock() - published_at)
        queue._timed = True
        queue.vhost.watch(queue)
    if returns:
        message = quorum.recovered(message, returns)
    if paged:
        message = PagedOut.of(message, body_size)
        queue._paged += 1
        queue.paged_bytes += body_size
    entry = Entry(message, seq, expires_at, None)
    entry.redelivered = delivered
    if returns:
        entry.returns = returns  # a slot only quorum queues set
    entry.stored = len(data)
    if not queue.persistent_count:
        persist.queues[queue.key] = queue
    queue.persistent_count += 1
    queue.persistent_bytes += len(data)
    queue._push(entry)


def next_level(queue: Queue) -> deque[Entry]:
    """The level the next ``Queue._pop`` takes from (the queue has ready messages)."""
    if queue._max_priority:
        for level in reversed(queue._levels):
            if level:
                return level
    return queue._fifo


def level_of_message(queue: Queue, message: Message) -> deque[Entry]:
    if not queue._max_priority:
        return queue._fifo
    priority = message.properties.priority or 0
    return queue._levels[min(priority, queue._max_priority)]


def settle_page(queue: Queue, entry: Entry, *, read: bool) -> None:
    """Bring a paged entry's body back (``read``), or just forget its page."""
    message = entry.message
    assert isinstance(message, PagedOut)
    pager = queue._pager
    assert pager is not None
    queue._paged -= 1
    queue.paged_bytes -= message.body_size
    transient = type(message) is PagedTransient
    if not read:
        if transient:
            pager.unpage(queue.key, entry.seq)
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
        body = pager.read_page(queue.key, entry.seq)
    else:
        body = pager.read_body(queue.key, entry.seq)
    entry.message = Message(
        message.exchange,
        message.routing_key,
        body,
        message.properties,
        message.encoded_properties,
        message.annotations,
    )
    queue.ready_bytes += len(body)


def page_in(queue: Queue, level: deque[Entry]) -> None:
    """Once the head of ``level`` is paged, read back the next ``PAGE_IN_BATCH`` bodies."""
    if not isinstance(level[0].message, PagedOut):
        return  # still inside the window read back last time: one test per delivery
    for i, entry in enumerate(level):
        if i >= PAGE_IN_BATCH or not queue._paged:
            break
        if isinstance(entry.message, PagedOut):
            queue._settle_page(entry, read=True)
