"""Session.ack_each: batch settlement of single deliveries."""

from __future__ import annotations

from core_support import Client

from rapidmq.core import Message


def test_ack_each_settles_the_given_tags_and_refills_credit_once(client: Client) -> None:
    session, sink = client.session, client.sink
    session.declare_queue("q")
    session.set_prefetch(2)
    session.consume("q", "c")
    for body in (b"a", b"b", b"c", b"d"):
        session.publish(Message("", "q", body))
    assert [e[2] for e in sink.take()] == [1, 2]
    session.ack_each([2, 1])
    assert sink.take() == [("deliver", "c", 3, False, b"c"), ("deliver", "c", 4, False, b"d")]
    assert session.declare_queue("q", passive=True).message_count == 0


def test_ack_each_skips_tags_that_are_not_outstanding(client: Client) -> None:
    session, sink = client.session, client.sink
    session.declare_queue("q")
    session.consume("q", "c")
    session.publish(Message("", "q", b"a"))
    sink.take()
    session.ack_each([1, 1, 99])
    stats = session.statistics()
    assert (stats["messages_unacknowledged"], stats["acknowledged"]) == (0, 1)
    session.close()
    other, _sink = client.channel()
    assert other.declare_queue("q", passive=True).message_count == 0
