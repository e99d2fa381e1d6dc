"""Quorum queues on one node: what each queue type accepts, and returns counted per message.

Theory of operation: a quorum queue is a :class:`~rapidmq.core.queue.Queue`
with ``settings.queue_type == "quorum"``; the differences from a classic queue
are small enough to be a few calls from the queue's cold paths into this module
(replication arrives with clustering).

- **Declaring.** :func:`check_queue_type` refuses, after the argument values
  are validated, the x-arguments the queue's type does not support (the first
  one in the client's table, as RabbitMQ 3.10 reports it), then the properties a
  quorum queue cannot have, in RabbitMQ's order: auto-delete, exclusive,
  non-durable.  :func:`effective_settings` then applies RabbitMQ's fallbacks:
  ``reject-publish-dlx`` overflow acts as ``drop-head``, and the
  ``at-least-once`` dead-letter strategy without ``reject-publish`` acts as
  ``at-most-once``; both are logged.
- **Returns.** Every time a delivered message comes back (nack or reject with
  requeue, a closed channel or connection) its count of returns grows;
  :func:`returned` dead-letters (reason ``delivery_limit``) or drops it once the
  count passes ``x-delivery-limit``, read from the settings at that moment.
  Deliveries carry the count as ``x-delivery-count`` from the first return on,
  and every ``basic.get`` carries it, 0 included, as RabbitMQ 3.10 does.  The
  count lives in an :class:`~rapidmq.core.entry.Entry` slot that a classic
  queue never sets, so classic queues pay nothing.  A stored message's count
  goes into the message store's current batch with each return (on its
  delivered marker: no I/O of its own), and recovery gives it back, so the
  count and the limit hold across restarts as in RabbitMQ's log.  A clean stop
  counts the deliveries consumers held (their connections close first); after a
  kill a held delivery keeps the count of its earlier returns, one fewer than
  RabbitMQ 3.10 shows: the store does not tell a held message from a ready one.
- **At-least-once dead-lettering.** A dead letter that no queue takes (its
  dead-letter exchange does not exist, no route, every target refused it) stays with its
  source queue (:func:`hold`), is counted in ``messages_dlx``, stays in the
  message store if the queue has one, and is routed again every
  :data:`DEAD_LETTER_RETRY_S` until some queue takes it.
- **Storage.** A durable quorum queue stores every message, persistent or not,
  so all of them survive a restart and confirms wait for the sync.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rapidmq.core.entry import Entry
from rapidmq.core.errors import PreconditionFailed
from rapidmq.core.message import Long, Message

if TYPE_CHECKING:
    from rapidmq.core.arguments import QueueSettings
    from rapidmq.core.queue import Queue

__all__ = [
    "DEAD_LETTER_RETRY_S",
    "DELIVERY_COUNT",
    "SUPPORTED_ARGUMENTS",
    "TYPE_MODULES",
    "at_least_once",
    "check_queue_type",
    "effective_settings",
    "hold",
    "over_limit",
    "queue_type_of",
    "recovered",
    "retry_held",
    "returned",
    "stamp_get",
    "unsupported",
]

log = logging.getLogger("rapidmq.core")

DELIVERY_COUNT = "x-delivery-count"
#: How often dead letters no queue took are routed again.
DEAD_LETTER_RETRY_S = 1.0

_COMMON = frozenset(
    {
        "x-expires",
        "x-message-ttl",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-max-length",
        "x-max-length-bytes",
        "x-overflow",
        "x-single-active-consumer",
        "x-queue-type",
    }
)
#: The x-arguments each queue type accepts, as RabbitMQ 3.10's queue type modules list them.
SUPPORTED_ARGUMENTS: dict[str, frozenset[str]] = {
    "classic": _COMMON
    | {"x-max-priority", "x-queue-mode", "x-queue-version", "x-queue-master-locator"},
    "quorum": _COMMON
    | {
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-quorum-initial-group-size",
        "x-delivery-limit",
        "x-dead-letter-strategy",
        "x-queue-leader-locator",
    },
    "stream": frozenset(
        {
            "x-max-length-bytes",
            "x-queue-type",
            "x-max-age",
            "x-stream-max-segment-size-bytes",
            "x-initial-cluster-size",
            "x-queue-leader-locator",
        }
    ),
}
#: Every argument some type supports; the others are the client's own and pass.
_KNOWN = frozenset().union(*SUPPORTED_ARGUMENTS.values())
#: RabbitMQ's module names, as its reply texts print them.
TYPE_MODULES = {
    "classic": "rabbit_classic_queue",
    "quorum": "rabbit_quorum_queue",
    "stream": "rabbit_stream_queue",
}


def queue_type_of(arguments: Mapping[str, Any]) -> str:
    """The type ``x-queue-type`` asks for (classic when absent or not a known type)."""
    value = arguments.get("x-queue-type")
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value in SUPPORTED_ARGUMENTS else "classic"


def unsupported(queue_type: str, key: str) -> bool:
    """True if ``key`` is an argument RabbitMQ knows but ``queue_type`` refuses."""
    return key in _KNOWN and key not in SUPPORTED_ARGUMENTS[queue_type]


def check_queue_type(
    arguments: Mapping[str, Any],
    *,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    resource: str,
) -> None:
    """Refuse what the queue's type does not support, with RabbitMQ's texts.

    Raises:
        PreconditionFailed: ``invalid arg 'x-max-priority' for queue 'q' in vhost
            '/' of queue type rabbit_quorum_queue``, or ``invalid property
            'auto-delete' for queue 'q' in vhost '/'`` (then ``exclusive-owner``,
            then ``non-durable``).
    """
    queue_type = queue_type_of(arguments)
    for key in arguments:
        if unsupported(queue_type, key):
            raise PreconditionFailed(
                f"invalid arg '{key}' for {resource} of queue type {TYPE_MODULES[queue_type]}"
            )
    if queue_type == "classic":
        return
    for refused, name in (
        (auto_delete, "auto-delete"),
        (exclusive, "exclusive-owner"),
        (not durable, "non-durable"),
    ):
        if refused:
            raise PreconditionFailed(f"invalid property '{name}' for {resource}")


def effective_settings(settings: QueueSettings, resource: str) -> QueueSettings:
    """A quorum queue's settings with RabbitMQ's fallbacks applied (others unchanged)."""
    if settings.queue_type != "quorum":
        return settings
    if settings.overflow == "reject-publish-dlx":
        log.warning("%s: overflow reject-publish-dlx acts as drop-head in a quorum queue", resource)
        settings = dataclasses.replace(settings, overflow="drop-head")
    if settings.dead_letter_strategy == "at-least-once" and settings.overflow != "reject-publish":
        log.warning(
            "%s: dead-letter strategy at-least-once needs overflow reject-publish; "
            "falling back to at-most-once",
            resource,
        )
        settings = dataclasses.replace(settings, dead_letter_strategy="at-most-once")
    return settings


def over_limit(queue: Queue) -> bool:
    """A quorum queue refuses publishes only once it is over its limit, as RabbitMQ's does."""
    max_length = queue._max_length
    if max_length is not None and queue.ready_count > max_length:
        return True
    max_bytes = queue._max_bytes
    return max_bytes is not None and queue.ready_bytes + queue.paged_bytes > max_bytes


# -- returns and x-delivery-count -------------------------------------------------------


def _with_count(message: Message, count: int) -> Message:
    headers = dict(message.properties.headers or {})
    headers[DELIVERY_COUNT] = Long(count)
    return message.evolve(headers=headers)


def _without_count(message: Message) -> Message:
    headers = message.properties.headers
    if not headers or DELIVERY_COUNT not in headers:
        return message
    return message.evolve(headers={k: v for k, v in headers.items() if k != DELIVERY_COUNT})


def recovered(message: Message, returns: int) -> Message:
    """A stored message coming back at start-up, carrying the count of returns it had."""
    return _with_count(message, returns)


def stamp_get(entry: Entry) -> None:
    """basic.get: the message carries its count of returns, 0 included."""
    entry.message = _with_count(entry.message, getattr(entry, "returns", 0))


def returned(queue: Queue, entries: Iterable[Entry]) -> list[Entry]:
    """Count one return for each entry; those past the delivery limit die here.

    Returns the entries to put back in the queue.  The others are settled:
    dead-lettered with reason ``delivery_limit`` (or dropped), without their
    ``x-delivery-count``, as RabbitMQ does.
    """
    limit = queue.settings.delivery_limit
    persist = None if queue.deleted else queue._persist
    back: list[Entry] = []
    for entry in entries:
        count = getattr(entry, "returns", 0) + 1
        entry.returns = count
        if limit is None or count <= limit or queue.deleted:
            entry.message = _with_count(entry.message, count)
            if entry.stored and persist is not None:
                persist.mark_returned(queue.key, entry.seq, count)
            back.append(entry)
            continue
        queue.unacked_count -= 1
        if entry.stored:
            queue._unstore(entry)
        queue._dead_letter(_without_count(entry.message), entry.routing_keys, "delivery_limit")
    return back


# -- at-least-once dead-lettering -------------------------------------------------------


def at_least_once(settings: QueueSettings) -> bool:
    return settings.queue_type == "quorum" and settings.dead_letter_strategy == "at-least-once"


def hold(queue: Queue, message: Message, routing_keys: tuple[str, ...], reason: str) -> None:
    """Keep a dead letter no queue took, stored if the queue stores, to route it again."""
    seq = size = 0
    persist = queue._persist
    if persist is not None:
        queue._seq += 1
        seq = queue._seq
        size = persist.add(queue.key, seq, message)
        queue.persistent_count += 1
        queue.persistent_bytes += size
    queue.held_dead_letters.append((message, routing_keys, reason, seq, size))
    queue.held_bytes += len(message.body)
    if not queue.retry_at:
        queue.retry_at = queue._clock() + DEAD_LETTER_RETRY_S
    queue.vhost.watch(queue)


def retry_held(queue: Queue, now: float) -> None:
    """Route the held dead letters again; those some queue takes leave the store."""
    held = queue.held_dead_letters
    queue.held_dead_letters = []
    queue.held_bytes = 0
    queue.retry_at = 0.0
    if queue.deleted:
        return
    persist = queue._persist
    for item in held:
        message, keys, reason, seq, size = item
        if queue.settings.dead_letter_exchange is None:  # a policy took it away: drop
            queue.dropped += 1
        elif not queue.vhost.dead_letter(queue, message, keys, reason):
            queue.held_dead_letters.append(item)
            queue.held_bytes += len(message.body)
            continue
        if seq and persist is not None:
            persist.remove(queue.key, seq)
            queue.persistent_count -= 1
            queue.persistent_bytes -= size
    if queue.held_dead_letters:
        queue.retry_at = now + DEAD_LETTER_RETRY_S
