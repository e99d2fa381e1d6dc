"""What a queue refuses or drops: length limits, message TTL, queue expiry.

As in RabbitMQ, ``x-max-length`` and ``x-max-length-bytes`` (bytes paged out
count too) either refuse a publish (``reject-publish``, ``reject-publish-dlx``)
or drop from the head (``drop-head``).  Expired messages are removed only at
the head of each priority level; :meth:`QueueLimits.on_timer` does it when
the broker ticks, and also deletes a queue unused for ``x-expires``.  Whatever
is dropped is dead-lettered when the queue has a dead-letter exchange.

These functions are methods of :class:`~rapidmq.core.queue.Queue` (its class
body assigns them), kept apart because they follow RabbitMQ's arguments rather
than the delivery machinery.  Assigned, not wrapped, they cost the per-message
paths no extra call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidmq.core import quorum
from rapidmq.core.arguments import QueueSettings
from rapidmq.core.message import Message
from rapidmq.core.paging import PagedOut

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue

__all__ = [
    "apply_settings",
    "dead_letter",
    "drop_expired",
    "drop_over_limit",
    "next_deadline",
    "on_timer",
    "would_overflow",
]


def would_overflow(queue: Queue, message: Message) -> bool:
    if queue._quorum:
        return quorum.over_limit(queue)
    max_length = queue._max_length
    if max_length is not None and queue.ready_count + 1 > max_length:
        return True
    max_bytes = queue._max_bytes
    return (
        max_bytes is not None
        and queue.ready_bytes + queue.paged_bytes + len(message.body) > max_bytes
    )


def drop_over_limit(queue: Queue) -> None:
    if queue._overflow != "drop-head":
        return
    max_length = queue._max_length
    max_bytes = queue._max_bytes
    while queue.ready_count and (
        (max_length is not None and queue.ready_count > max_length)
        or (max_bytes is not None and queue.ready_bytes + queue.paged_bytes > max_bytes)
    ):
        if queue._paged:
            head = queue._next_level()[0]
            if isinstance(head.message, PagedOut):
                queue._settle_page(head, read=queue.settings.dead_letter_exchange is not None)
        entry = queue._pop()
        if entry.stored:
            queue._unstore(entry)
        queue._dead_letter(entry.message, entry.routing_keys, "maxlen")


def drop_expired(queue: Queue, now: float) -> None:
    for level in queue._levels:
        while level:
            expires_at = level[0].expires_at
            if expires_at is None or expires_at > now:
                break
            entry = level[0]
            if isinstance(entry.message, PagedOut):
                queue._settle_page(entry, read=queue.settings.dead_letter_exchange is not None)
            level.popleft()
            queue.ready_count -= 1
            queue.ready_bytes -= len(entry.message.body)
            queue.expired += 1
            if entry.stored:
                queue._unstore(entry)
            queue._dead_letter(entry.message, entry.routing_keys, "expired")


def dead_letter(
    queue: Queue, message: Message, routing_keys: tuple[str, ...] | None, reason: str
) -> None:
    if queue.settings.dead_letter_exchange is None:
        queue.dropped += 1
        return
    queue.dead_lettered += 1
    keys = routing_keys or (message.routing_key,)
    if not queue.vhost.dead_letter(queue, message, keys, reason) and quorum.at_least_once(
        queue.settings
    ):
        quorum.hold(queue, message, keys, reason)


# -- timers ---------------------------------------------------------------------


def next_deadline(queue: Queue) -> float | None:
    """The earliest time :meth:`on_timer` has work, or None."""
    deadline: float | None = None
    if queue._timed:
        for level in queue._levels:
            if level:
                expires_at = level[0].expires_at
                if expires_at is not None and (deadline is None or expires_at < deadline):
                    deadline = expires_at
    if queue.retry_at and (deadline is None or queue.retry_at < deadline):
        deadline = queue.retry_at
    expires_ms = queue.settings.expires_ms
    if expires_ms is not None and not queue.consumers:
        unused_until = queue.last_used + expires_ms / 1000.0
        if deadline is None or unused_until < deadline:
            deadline = unused_until
    return deadline


def on_timer(queue: Queue, now: float) -> None:
    """Expire messages at the head and delete the queue if unused too long."""
    if queue._timed:
        queue._drop_expired(now)
    if queue.retry_at and now >= queue.retry_at:
        quorum.retry_held(queue, now)
    expires_ms = queue.settings.expires_ms
    if (
        expires_ms is not None
        and not queue.consumers
        and not queue.deleted
        and now >= queue.last_used + expires_ms / 1000.0
    ):
        queue.vhost.remove_queue(queue)


# -- settings changed by a policy ----------------------------------------------------


def apply_settings(queue: Queue, settings: QueueSettings) -> None:
    """Take new effective settings at once (a policy that applies to it changed).

    As RabbitMQ's classic queues do: a lower length limit drops (and
    dead-letters) from the head at once under ``drop-head`` and only refuses
    later publishes otherwise; a new message TTL applies to messages published
    from now on, those already queued keep their expiry; a new ``expires``
    restarts the unused timer; the dead-letter exchange, overflow and queue
    mode are read from here on.
    """
    old = queue.settings
    queue.settings = settings
    queue._ttl_ms = settings.message_ttl_ms
    queue._max_length = settings.max_length
    queue._max_bytes = settings.max_length_bytes
    queue._limited = settings.max_length is not None or settings.max_length_bytes is not None
    queue._overflow = settings.overflow
    if queue.deleted:
        return
    pager = queue._pager
    if settings.queue_mode != old.queue_mode and pager is not None and pager.pages:
        if settings.queue_mode == "lazy":
            pager.lazy[queue.key] = queue
        elif pager.lazy.get(queue.key) is queue:
            del pager.lazy[queue.key]
    if settings.expires_ms != old.expires_ms:
        queue.last_used = queue._clock()
        if settings.expires_ms is not None:
            queue.vhost.watch(queue)
    if queue._limited:
        queue._drop_over_limit()
