"""Consumer capacity (``consumer_utilisation``): the time-weighted share of time a queue
could deliver at once, driven by a fake clock.

Expected figures are worked out with RabbitMQ's moving average written out below:
a half-life of one second, folded in each time an inactive spell ends.
"""

from __future__ import annotations

import pytest
from core_support import Client, FakeClock, msg

from rapidmq.core import Session
from rapidmq.core.queue import Queue


def decayed(active_s: float, inactive_s: float, average: float) -> float:
    """``average`` with an active and an inactive spell folded in (half-life 1 s)."""
    total = active_s + inactive_s
    weight = 0.5**total
    return active_s / total * (1 - weight) + average * weight


def queue_of(client: Client, name: str = "q") -> Queue:
    return client.connection.vhost.queues[name]


def declare_and_consume(client: Client, *, prefetch: int) -> tuple[Session, Queue]:
    s = client.session
    s.declare_queue("q")
    s.set_prefetch(prefetch)
    s.consume("q", "c")
    return s, queue_of(client)


def test_a_consumer_that_keeps_up_reads_one(client: Client, clock: FakeClock) -> None:
    s, queue = declare_and_consume(client, prefetch=10)
    readings = []
    for i in range(1, 6):
        s.publish(msg(f"m{i}"))
        clock.advance(0.7)
        s.ack(i)
        clock.advance(0.3)
        readings.append(queue.consumer_capacity())
    assert (readings, queue.statistics()["consumer_capacity"]) == ([1.0] * 5, 1.0)


def test_a_queue_without_consumers_reads_zero(client: Client, clock: FakeClock) -> None:
    s = client.session
    s.declare_queue("q")
    queue = queue_of(client)
    empty = queue.consumer_capacity()
    s.publish(msg("waits"))
    clock.advance(5)
    assert (empty, queue.consumer_capacity(), queue.statistics()["consumer_capacity"]) == (
        0.0,
        0.0,
        0.0,
    )


def test_a_full_consumer_with_nothing_waiting_keeps_the_queue_active(
    client: Client, clock: FakeClock
) -> None:
    s, queue = declare_and_consume(client, prefetch=1)
    s.publish(msg("held"))  # the consumer's one credit is used, but nothing waits
    clock.advance(10)
    assert queue.consumer_capacity() == 1.0


def test_blocked_half_the_time_settles_at_one_half(client: Client, clock: FakeClock) -> None:
    s, queue = declare_and_consume(client, prefetch=1)
    s.publish(msg("m0"))
    readings = []
    for tag in range(1, 9):
        clock.advance(1)
        s.publish(msg(f"m{tag}"))  # waits one second for the consumer's credit
        clock.advance(1)
        s.ack(tag)  # credit back: the waiting message goes at once
        readings.append(queue.consumer_capacity())
    expected = []
    average = 1.0
    for _ in range(8):
        average = decayed(1, 1, average)
        expected.append(average)
    # Closed form: 0.5 + 0.5 * 0.25**n; 0.625, 0.53125, 0.5078125, 0.501953125, ...
    assert readings == pytest.approx(expected, abs=1e-12)
    assert readings == pytest.approx([0.5 + 0.5 * 0.25**n for n in range(1, 9)], abs=1e-12)


def test_a_consumer_that_never_acks_falls_towards_zero(client: Client, clock: FakeClock) -> None:
    s, queue = declare_and_consume(client, prefetch=1)
    s.publish(msg("taken"))
    clock.advance(2)
    s.publish(msg("waits"))  # active for 2 s, inactive from here on
    readings = []
    for step_s in (0, 1, 1, 3, 5, 10):
        clock.advance(step_s)
        readings.append(queue.consumer_capacity())
    waited = [0, 1, 2, 5, 10, 20]
    assert readings == pytest.approx([1.0] + [decayed(2, w, 1.0) for w in waited[1:]], abs=1e-12)
    assert readings == sorted(readings, reverse=True) and readings[-1] < 0.1


def test_a_consumer_that_leaves_and_returns_counts_the_wait_between(
    client: Client, clock: FakeClock
) -> None:
    s, queue = declare_and_consume(client, prefetch=5)
    s.publish(msg("unacked"))
    clock.advance(3)
    s.cancel("c")
    s.recover()  # requeued with no consumer to take it: inactive from here
    gone = queue.consumer_capacity()
    clock.advance(2)
    s.consume("q", "c2")  # a consumer again: active, the message goes at once
    back = queue.consumer_capacity()
    clock.advance(1)
    later = queue.consumer_capacity()
    returned = decayed(3, 2, 1.0)
    assert (gone, back, later) == pytest.approx((0.0, returned, decayed(1, 0, returned)), abs=1e-12)


def test_time_without_consumers_or_waiting_messages_counts_as_active(
    client: Client, clock: FakeClock
) -> None:
    s, queue = declare_and_consume(client, prefetch=5)
    clock.advance(2)
    s.cancel("c")
    clock.advance(30)
    s.consume("q", "c2")
    clock.advance(1)
    assert queue.consumer_capacity() == 1.0


def test_back_pressure_counts_as_inactive_until_the_session_resumes(
    client: Client, clock: FakeClock
) -> None:
    s, queue = declare_and_consume(client, prefetch=0)
    clock.advance(1)
    client.sink.is_writable = False
    s.publish(msg("fills the buffer"))  # delivered; the session is blocked after it
    s.publish(msg("waits"))
    clock.advance(3)
    blocked = queue.consumer_capacity()
    client.sink.is_writable = True
    s.resume()
    resumed = queue.consumer_capacity()
    assert (blocked, resumed, [e[4] for e in client.sink.take()]) == (
        pytest.approx(decayed(1, 3, 1.0), abs=1e-12),
        pytest.approx(decayed(1, 3, 1.0), abs=1e-12),
        [b"fills the buffer", b"waits"],
    )


def test_credit_coming_back_after_the_waiting_messages_went_elsewhere_turns_active(
    client: Client, clock: FakeClock
) -> None:
    s, queue = declare_and_consume(client, prefetch=1)
    s.publish(msg("held"))
    clock.advance(1)
    s.publish(msg("waits"))
    clock.advance(1)
    other, _ = client.channel()
    got = other.get("q", no_ack=True)  # the queue is empty, the consumer still full
    clock.advance(1)
    s.ack(1)
    clock.advance(2)
    after = decayed(1, 2, 1.0)
    assert (got is not None, queue.consumer_capacity()) == (
        True,
        pytest.approx(decayed(2, 0, after), abs=1e-12),
    )


def test_a_quorum_queue_reads_one_with_any_consumer_as_rabbitmq_3_10_shows_it(
    client: Client, clock: FakeClock
) -> None:
    s = client.session
    s.declare_queue("q", durable=True, arguments={"x-queue-type": "quorum"})
    queue = queue_of(client)
    s.set_prefetch(1)
    s.consume("q", "c")
    for body in ("taken", "waits"):
        s.publish(msg(body))
    clock.advance(10)
    full = queue.consumer_capacity()
    s.cancel("c")
    assert (full, queue.ready_count, queue.consumer_capacity()) == (1.0, 1, 0.0)
