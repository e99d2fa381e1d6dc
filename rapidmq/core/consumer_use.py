"""Consumer capacity: the share of time a queue could hand a message to a consumer at once.

Theory of operation: as in RabbitMQ's classic queues, a queue is *active*
while its consumers can take a message and turns *inactive* when a message
has to wait because no consumer can take it (every prefetch full, every
session blocked by back-pressure, or no consumer at all).  It turns active
again when a consumer is added or one gets credit back.  Only these
transitions are recorded, each at the queue's clock; a publish that goes
straight to a consumer with credit, the common case, never looks at this
state, and an idle queue with a consumer stays active.

Each time an inactive spell ends, it and the active spell before it are folded
into an exponentially decaying average, RabbitMQ's moving average with a
half-life of one second::

    total = active_s + inactive_s
    weight = exp(total * log(0.5) / HALF_LIFE_S)
    average = (active_s / total) * (1 - weight) + average * weight

(the average is left alone when both spells are empty).  A reading folds the
spell in progress the same way without recording it: ``(elapsed, 0)`` while
active, ``(active spell, elapsed)`` while inactive.  A queue starts active with
an average of 1.0, and one without consumers reads 0.0, as RabbitMQ 3.10
shows it.  RabbitMQ 3.10's quorum queues keep the same figure but nothing ever
moves it from its start, so they show 1.0 whenever they have a consumer; a
quorum queue here reads the same.

These functions are methods of :class:`~rapidmq.core.queue.Queue` (its class
body assigns them), as :mod:`rapidmq.core.queue_limits` is.
"""

from __future__ import annotations

from math import exp, log
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rapidmq.core.consumer import Consumer
    from rapidmq.core.queue import Queue

__all__ = [
    "HALF_LIFE_S",
    "consumer_capacity",
    "credit_back",
    "use_average",
    "use_resumed",
    "use_stopped",
]

#: Half-life of the average: a spell one second old counts half as much as one just past.
HALF_LIFE_S = 1.0
_DECAY_PER_S = log(0.5) / HALF_LIFE_S


def use_average(active_s: float, inactive_s: float, average: float) -> float:
    """``average`` with one active and one inactive spell folded in."""
    total = active_s + inactive_s
    if not total:
        return average
    weight = exp(total * _DECAY_PER_S)
    return active_s / total * (1 - weight) + average * weight


def use_stopped(queue: Queue, now: float) -> None:
    """A message waits and no consumer can take it: the queue turns inactive.

    Callers check that the queue is active; the active spell's length is kept
    until the inactive one ends, when both are folded in.
    """
    queue._use_active_s = now - queue._use_since
    queue._use_since = now
    queue._use_active = False


def use_resumed(queue: Queue, now: float) -> None:
    """A consumer was added or got credit back: the queue turns active.

    Callers check that the queue is inactive.
    """
    inactive_s = now - queue._use_since
    queue._use_average = use_average(queue._use_active_s, inactive_s, queue._use_average)
    queue._use_since = now
    queue._use_active = True


def credit_back(queue: Queue) -> None:
    """An inactive queue with nothing ready was asked to dispatch: has credit come back?

    Its messages went another way (basic.get, purge, expiry) while every
    consumer was full, so no delivery will notice the credit an ack returns;
    RabbitMQ turns such a queue active when a blocked consumer is unblocked,
    and this does the same at the ack's dispatch.
    """
    consumers = queue.consumers
    if queue.settings.single_active_consumer:
        consumers = consumers[:1]
    if any(_can_take(consumer) for consumer in consumers):
        use_resumed(queue, queue._clock())


def _can_take(consumer: Consumer) -> bool:
    """The credit test of the queue's ``_pick``, without moving the consumer."""
    session = consumer.session
    if session.blocked or (consumer.prefetch and consumer.unacked >= consumer.prefetch):
        return False
    return not (session.global_prefetch and session.global_unacked >= session.global_prefetch)


def consumer_capacity(queue: Queue) -> float:
    """The time-weighted share, 0.0 to 1.0, of the time the queue could deliver at once."""
    if not queue.consumers:
        return 0.0
    if queue._quorum:
        return 1.0
    elapsed_s = queue._clock() - queue._use_since
    if queue._use_active:
        return use_average(elapsed_s, 0.0, queue._use_average)
    return use_average(queue._use_active_s, elapsed_s, queue._use_average)
