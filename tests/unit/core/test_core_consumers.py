from __future__ import annotations

import re

import pytest
from core_support import Client, RecordingSink, connect, msg

from rapidmq.core import AccessRefused, Broker, GetResult, NotAllowed, PreconditionFailed
from rapidmq.core.errors import CoreError


def error(exc: pytest.ExceptionInfo[CoreError]) -> tuple[str, str, str]:
    return type(exc.value).__name__, exc.value.scope, exc.value.text


def publish(client: Client, *bodies: str, queue: str = "q") -> None:
    for body in bodies:
        client.session.publish(msg(body, queue))


def test_consumer_receives_backlog_then_new_messages_with_increasing_tags(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    publish(client, "a", "b")
    tag = s.consume("q", no_ack=True)
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    publish(client, "c")
    assert client.sink.events == [
        ("deliver", tag, 1, False, b"a"),
        ("deliver", tag, 2, False, b"b"),
        ("deliver", tag, 3, False, b"c"),
    ]


def test_consume_without_dispatch_waits_for_resume(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    publish(client, "a")
    s.consume("q", "c", dispatch=False)
    assert client.sink.take() == []
    s.resume()
    assert client.sink.take() == [("deliver", "c", 1, False, b"a")]


def test_per_consumer_prefetch_applies_to_consumers_created_after(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "unlimited")
    s.set_prefetch(1)
    s.consume("q", "limited")
    publish(client, "1", "2", "3", "4")
    assert client.sink.take() == [
        ("deliver", "unlimited", 1, False, b"1"),
        ("deliver", "limited", 2, False, b"2"),
        ("deliver", "unlimited", 3, False, b"3"),
        ("deliver", "unlimited", 4, False, b"4"),
    ]


def test_global_prefetch_is_shared_by_the_session_and_ack_frees_credit(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.declare_queue("r")
    s.set_prefetch(2, global_=True)
    s.consume("q", "cq")
    s.consume("r", "cr")
    publish(client, "q1", "q2", queue="q")
    publish(client, "r1", queue="r")
    assert client.sink.take() == [
        ("deliver", "cq", 1, False, b"q1"),
        ("deliver", "cq", 2, False, b"q2"),
    ]
    s.ack(1)
    assert client.sink.take() == [("deliver", "cr", 3, False, b"r1")]


def test_round_robin_among_consumers_of_equal_priority(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    for tag in ["a", "b", "c"]:
        s.consume("q", tag, no_ack=True)
    publish(client, *"123456")
    assert [e[1] for e in client.sink.take()] == ["a", "b", "c", "a", "b", "c"]


def test_higher_priority_consumers_get_messages_while_they_have_credit(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "low", no_ack=True)
    s.set_prefetch(1)
    s.consume("q", "high", arguments={"x-priority": 10})
    publish(client, "1", "2", "3")
    assert [(e[1], e[4]) for e in client.sink.take()] == [
        ("high", b"1"),
        ("low", b"2"),
        ("low", b"3"),
    ]


def test_bad_consumer_priority_is_refused(client: Client) -> None:
    client.session.declare_queue("q")
    with pytest.raises(PreconditionFailed) as exc:
        client.session.consume("q", arguments={"x-priority": "high"})
    assert error(exc) == (
        "PreconditionFailed",
        "channel",
        "invalid arg 'x-priority' for queue 'q' in vhost '/': \"expected integer, got longstr\"",
    )


def test_exclusive_consumer_excludes_others_both_ways(broker: Broker, client: Client) -> None:
    other = connect(broker)
    s = client.session
    s.declare_queue("q")
    s.consume("q", "x", exclusive=True)
    expected = ("AccessRefused", "channel", "queue 'q' in vhost '/' in exclusive use")
    with pytest.raises(AccessRefused) as exc:
        other.session.consume("q")
    assert error(exc) == expected
    s.cancel("x")
    other.session.consume("q", "plain")
    with pytest.raises(AccessRefused) as exc:
        s.consume("q", exclusive=True)
    assert error(exc) == expected


def test_reusing_a_consumer_tag_is_not_allowed(client: Client) -> None:
    client.session.declare_queue("q")
    client.session.consume("q", "t")
    with pytest.raises(NotAllowed) as exc:
        client.session.consume("q", "t")
    assert error(exc) == ("NotAllowed", "connection", "attempt to reuse consumer tag 't'")


def test_single_active_consumer_delivers_to_first_until_it_cancels(client: Client) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-single-active-consumer": True})
    s.consume("q", "first", no_ack=True)
    s.consume("q", "second", no_ack=True, arguments={"x-priority": 5})
    publish(client, "1", "2")
    s.cancel("first")
    publish(client, "3")
    assert [(e[1], e[4]) for e in client.sink.take()] == [
        ("first", b"1"),
        ("first", b"2"),
        ("second", b"3"),
    ]


def test_ack_multiple_settles_up_to_tag_and_zero_means_all(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "c")
    publish(client, *"abcd")
    s.ack(2, multiple=True)
    queue = client.connection.vhost.queues["q"]
    assert queue.unacked_count == 2
    s.ack(0, multiple=True)
    assert (queue.unacked_count, queue.acked) == (0, 4)
    s.ack(0, multiple=True)


@pytest.mark.parametrize("multiple", [False, True])
def test_unknown_delivery_tag_is_precondition_failed(client: Client, multiple: bool) -> None:
    client.session.declare_queue("q")
    publish(client, "a")
    got = client.session.get("q")
    assert got is not None
    client.session.ack(got.delivery_tag)
    with pytest.raises(PreconditionFailed) as exc:
        client.session.ack(got.delivery_tag, multiple=multiple)
    assert error(exc) == ("PreconditionFailed", "channel", "unknown delivery tag 1")
    with pytest.raises(PreconditionFailed) as exc:
        client.session.reject(7, multiple=multiple)
    assert error(exc) == ("PreconditionFailed", "channel", "unknown delivery tag 7")


def test_nack_multiple_with_requeue_redelivers_in_order(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.set_prefetch(3)
    s.consume("q", "c")
    publish(client, *"abc")
    client.sink.take()
    s.reject(3, multiple=True, requeue=True)
    assert client.sink.take() == [
        ("deliver", "c", 4, True, b"a"),
        ("deliver", "c", 5, True, b"b"),
        ("deliver", "c", 6, True, b"c"),
    ]


def test_get_is_not_limited_by_prefetch_and_counts_delivery_tags(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.set_prefetch(1, global_=True)
    publish(client, "a", "b", "c")
    first = s.get("q")
    second = s.get("q", no_ack=True)
    assert first is not None and second is not None
    assert [first, second] == [
        GetResult(1, False, first.message, 2),
        GetResult(2, False, second.message, 1),
    ]
    s.declare_queue("empty")
    assert s.get("empty") is None


def test_recover_requeues_every_unacked_delivery(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "c")
    publish(client, "a", "b")
    client.sink.take()
    s.recover()
    assert client.sink.take() == [
        ("deliver", "c", 3, True, b"a"),
        ("deliver", "c", 4, True, b"b"),
    ]


def test_session_close_requeues_unacked_for_other_consumers(broker: Broker, client: Client) -> None:
    other = connect(broker)
    s = client.session
    s.declare_queue("q")
    s.consume("q", "mine")
    publish(client, "a", "b")
    other.session.consume("q", "theirs", no_ack=True)
    s.close()
    s.close()
    assert other.sink.take() == [
        ("deliver", "theirs", 1, True, b"a"),
        ("deliver", "theirs", 2, True, b"b"),
    ]


def test_deleting_a_consumed_queue_cancels_its_consumers(broker: Broker, client: Client) -> None:
    other = connect(broker)
    client.session.declare_queue("q")
    other.session.consume("q", "t1")
    client.session.consume("q", "t2")
    client.session.delete_queue("q")
    assert (other.sink.take(), client.sink.take()) == ([("cancelled", "t1")], [("cancelled", "t2")])
    other.session.cancel("t1")


def test_unwritable_sink_pauses_deliveries_until_resume(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "c", no_ack=True)
    client.sink.is_writable = False
    publish(client, "a", "b", "c")
    assert client.sink.take() == [("deliver", "c", 1, False, b"a")]
    client.sink.is_writable = True
    s.resume()
    assert client.sink.take() == [
        ("deliver", "c", 2, False, b"b"),
        ("deliver", "c", 3, False, b"c"),
    ]


def test_blocked_session_does_not_hold_back_other_sessions(broker: Broker, client: Client) -> None:
    other = connect(broker)
    client.session.declare_queue("q")
    client.session.consume("q", "slow", no_ack=True)
    other.session.consume("q", "fast", no_ack=True)
    client.sink.is_writable = False
    publish(client, *"abc")
    assert ([e[4] for e in client.sink.take()], [e[4] for e in other.sink.take()]) == (
        [b"a"],
        [b"b", b"c"],
    )


def test_messages_of_cancelled_consumer_can_still_be_acked(client: Client) -> None:
    sink = RecordingSink()
    session = client.connection.open_session(sink)
    session.declare_queue("q")
    session.consume("q", "c")
    publish(client, "a")
    session.cancel("c")
    session.ack(1)
    assert client.connection.vhost.queues["q"].statistics()["acknowledged"] == 1
