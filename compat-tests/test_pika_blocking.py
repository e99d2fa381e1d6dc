"""pika's BlockingConnection against the broker under test.

Each test is one behaviour a RabbitMQ application relies on, checked through
the real client library with whole results: bodies in order, flags, counts and
reply codes.
"""

from __future__ import annotations

import datetime
import decimal
import os
import time
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import Scratch, pika_parameters

POLL_TIMEOUT_S = 5.0


def get_all(ch: Any, queue: str) -> list[tuple[bytes, bool]]:
    """Drain a queue with basic.get (auto-ack) into (body, redelivered) pairs."""
    got = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


def wait_get(ch: Any, queue: str, timeout_s: float = POLL_TIMEOUT_S) -> tuple[Any, Any, bytes]:
    """basic.get until a message arrives (for work the broker does in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            raise AssertionError(f"no message arrived on {queue!r} within {timeout_s}s")
        ch.connection.sleep(0.02)


def wait_gone(scratch: Scratch, queue: str, timeout_s: float = POLL_TIMEOUT_S) -> None:
    """Wait until a passive declare of ``queue`` fails with 404."""
    conn = scratch.connect()
    deadline = time.monotonic() + timeout_s
    while True:
        ch = conn.channel()
        try:
            ch.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            assert exc.reply_code == 404
            return
        ch.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"queue {queue!r} still exists after {timeout_s}s")
        conn.sleep(0.05)


def ready_count(ch: Any, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def collect(conn: Any, sink: list[Any], n: int, timeout_s: float = POLL_TIMEOUT_S) -> None:
    """Process events until ``sink`` holds ``n`` items."""
    deadline = time.monotonic() + timeout_s
    while len(sink) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} deliveries, got {len(sink)}: {sink!r}")
        conn.process_data_events(time_limit=0.05)


# --- declare, bind, publish, get, consume ----------------------------------------------------


def test_direct_publish_get_and_consume_in_order(scratch: Scratch) -> None:
    ch = scratch.channel()
    x, q = scratch.exchange(), scratch.queue()
    ch.exchange_declare(x, "direct")
    ok = ch.queue_declare(q)
    assert (ok.method.queue, ok.method.message_count, ok.method.consumer_count) == (q, 0, 0)
    ch.queue_bind(q, x, routing_key="k")
    for i in range(5):
        ch.basic_publish(x, "k", f"m{i}".encode())
    ch.basic_publish(x, "other", b"unrouted")
    for expected in (b"m0", b"m1"):
        method, _props, body = ch.basic_get(q, auto_ack=True)
        assert (body, method.redelivered) == (expected, False)
    bodies = []
    for method, _props, body in ch.consume(q, inactivity_timeout=1.0):
        if method is None:
            break
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(bodies) == 3:
            break
    ch.cancel()
    assert bodies == [b"m2", b"m3", b"m4"]
    assert ready_count(ch, q) == 0


def test_default_exchange_routes_by_queue_name_and_counts(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.message_count == 3
    assert ch.queue_purge(q).method.message_count == 3
    ch.basic_publish("", q, b"x")
    assert ch.queue_delete(q).method.message_count == 1


def test_ack_nack_reject_and_requeue_mark_redelivered(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    for body in (b"a", b"b", b"c"):
        ch.basic_publish("", q, body)
    m1, _, b1 = ch.basic_get(q)
    m2, _, b2 = ch.basic_get(q)
    assert (b1, m1.redelivered, b2, m2.redelivered) == (b"a", False, b"b", False)
    ch.basic_nack(m2.delivery_tag, multiple=True, requeue=True)
    m3, _, b3 = ch.basic_get(q)
    assert (b3, m3.redelivered) == (b"a", True)
    ch.basic_reject(m3.delivery_tag, requeue=True)
    m4, _, b4 = ch.basic_get(q)
    assert (b4, m4.redelivered) == (b"a", True)
    ch.basic_ack(m4.delivery_tag)
    m5, _, b5 = ch.basic_get(q)
    assert (b5, m5.redelivered) == (b"b", True)
    ch.basic_reject(m5.delivery_tag, requeue=False)
    assert get_all(ch, q) == [(b"c", False)]


def test_basic_get_empty_and_message_count(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    assert ch.basic_get(q) == (None, None, None)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.message_count) == (b"1", 1)


def test_closing_channel_requeues_unacked(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"kept")
    method, _, _ = ch.basic_get(q)
    assert method is not None
    ch.close()
    ch2 = conn.channel()
    assert get_all(ch2, q) == [(b"kept", True)]


# --- exchanges ----------------------------------------------------------------------------


def test_topic_exchange_patterns(scratch: Scratch) -> None:
    ch = scratch.channel()
    x = scratch.exchange()
    ch.exchange_declare(x, "topic")
    patterns = {"star": "a.*", "hash": "a.#", "all": "#", "mid": "*.b.*", "exact": "a.b"}
    queues = {}
    for label, pattern in patterns.items():
        q = queues[label] = scratch.queue(label)
        ch.queue_declare(q)
        ch.queue_bind(q, x, routing_key=pattern)
    for key in ("a", "a.b", "a.b.c", "x.b.y", "b", ""):
        ch.basic_publish(x, key, key.encode())
    got = {label: [b for b, _ in get_all(ch, q)] for label, q in queues.items()}
    assert got == {
        "star": [b"a.b"],
        "hash": [b"a", b"a.b", b"a.b.c"],
        "all": [b"a", b"a.b", b"a.b.c", b"x.b.y", b"b", b""],
        "mid": [b"a.b.c", b"x.b.y"],
        "exact": [b"a.b"],
    }


def test_headers_exchange_all_and_any(scratch: Scratch) -> None:
    ch = scratch.channel()
    x = scratch.exchange()
    ch.exchange_declare(x, "headers")
    q_all, q_any = scratch.queue("all"), scratch.queue("any")
    for q, match in ((q_all, "all"), (q_any, "any")):
        ch.queue_declare(q)
        ch.queue_bind(q, x, arguments={"x-match": match, "color": "red", "size": 1})
    for name, headers in (
        ("both", {"color": "red", "size": 1}),
        ("color", {"color": "red"}),
        ("wrong", {"color": "blue", "size": 2}),
        ("none", None),
    ):
        ch.basic_publish(x, "", name.encode(), pika.BasicProperties(headers=headers))
    assert [b for b, _ in get_all(ch, q_all)] == [b"both"]
    assert [b for b, _ in get_all(ch, q_any)] == [b"both", b"color"]


def test_fanout_and_exchange_to_exchange_bindings(scratch: Scratch) -> None:
    ch = scratch.channel()
    src, dst = scratch.exchange("src"), scratch.exchange("dst")
    ch.exchange_declare(src, "direct")
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(destination=dst, source=src, routing_key="k")
    q1, q2 = scratch.queue("one"), scratch.queue("two")
    for q in (q1, q2):
        ch.queue_declare(q)
        ch.queue_bind(q, dst)
    ch.basic_publish(src, "k", b"routed")
    ch.basic_publish(src, "nope", b"dropped")
    ch.exchange_unbind(destination=dst, source=src, routing_key="k")
    ch.basic_publish(src, "k", b"after-unbind")
    assert get_all(ch, q1) == [(b"routed", False)]
    assert get_all(ch, q2) == [(b"routed", False)]


def test_alternate_exchange_receives_unroutable(scratch: Scratch) -> None:
    ch = scratch.channel()
    x, ae = scratch.exchange("main"), scratch.exchange("ae")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(x, "direct", arguments={"alternate-exchange": ae})
    q_main, q_ae = scratch.queue("main"), scratch.queue("ae")
    ch.queue_declare(q_main)
    ch.queue_declare(q_ae)
    ch.queue_bind(q_main, x, "k")
    ch.queue_bind(q_ae, ae)
    returned: list[Any] = []
    ch.add_on_return_callback(lambda *args: returned.append(args))
    ch.basic_publish(x, "k", b"routed")
    ch.basic_publish(x, "other", b"unroutable", mandatory=True)
    ch.connection.process_data_events(time_limit=0.1)
    assert get_all(ch, q_main) == [(b"routed", False)]
    assert get_all(ch, q_ae) == [(b"unroutable", False)]
    assert returned == []


def test_mandatory_unroutable_is_returned_with_312(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    x = scratch.exchange()
    ch.exchange_declare(x, "direct")
    returned: list[tuple[Any, Any, bytes]] = []
    ch.add_on_return_callback(
        lambda _ch, method, props, body: returned.append((method, props, body))
    )
    ch.basic_publish(x, "nobody", b"back", pika.BasicProperties(message_id="m1"), mandatory=True)
    collect(conn, returned, 1)
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312,
        "NO_ROUTE",
        x,
        "nobody",
    )
    assert (props.message_id, body) == ("m1", b"back")


# --- publisher confirms -------------------------------------------------------------------


def test_publisher_confirms_ack_and_unroutable(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    for i in range(10):
        ch.basic_publish("", q, str(i).encode())
    with pytest.raises(pika.exceptions.UnroutableError) as exc:
        ch.basic_publish("", scratch.queue("missing"), b"lost", mandatory=True)
    assert [m.method.reply_code for m in exc.value.messages] == [312]
    assert ready_count(ch, q) == 10


def test_publisher_confirm_multiple_covers_all_tags(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    acked: set[int] = set()
    frames: list[Any] = []

    def on_confirm(frame: Any) -> None:
        frames.append(frame.method)
        tag = frame.method.delivery_tag
        if frame.method.multiple:
            acked.update(t for t in range(1, tag + 1))
        else:
            assert tag not in acked, f"tag {tag} confirmed twice"
            acked.add(tag)

    impl = ch._impl  # the callback-level channel, to see every ack frame as sent
    done: list[bool] = []
    impl.confirm_delivery(on_confirm, callback=lambda _f: done.append(True))
    collect(conn, done, 1)
    n = 200
    for i in range(n):
        impl.basic_publish("", q, str(i).encode())
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while len(acked) < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert acked == set(range(1, n + 1))
    assert all(type(f).__name__ == "Ack" for f in frames)
    assert ready_count(ch, q) == n


# --- qos, consumers -----------------------------------------------------------------------


def test_prefetch_limits_unacked_deliveries(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=2)
    got: list[Any] = []
    ch.basic_consume(q, lambda _c, m, _p, b: got.append((m.delivery_tag, b)))
    collect(conn, got, 2)
    check = conn.channel()
    assert check.queue_declare(q, passive=True).method.message_count == 3
    conn.process_data_events(time_limit=0.2)
    assert [b for _, b in got] == [b"0", b"1"]
    ch.basic_ack(got[0][0])
    collect(conn, got, 3)
    assert [b for _, b in got] == [b"0", b"1", b"2"]
    ch.basic_ack(got[2][0], multiple=True)
    collect(conn, got, 5)
    assert [b for _, b in got] == [b"0", b"1", b"2", b"3", b"4"]


def test_single_active_consumer_gets_everything_until_cancelled(scratch: Scratch) -> None:
    conn = scratch.connect()
    q = scratch.queue()
    ch_a, ch_b = conn.channel(), conn.channel()
    ch_a.queue_declare(q, arguments={"x-single-active-consumer": True})
    got: list[tuple[str, bytes]] = []
    tag_a = ch_a.basic_consume(q, lambda _c, m, _p, b: got.append(("a", b)), auto_ack=True)
    ch_b.basic_consume(q, lambda _c, m, _p, b: got.append(("b", b)), auto_ack=True)
    pub = conn.channel()
    for i in range(4):
        pub.basic_publish("", q, str(i).encode())
    collect(conn, got, 4)
    ch_a.basic_cancel(tag_a)
    for i in range(4, 6):
        pub.basic_publish("", q, str(i).encode())
    collect(conn, got, 6)
    assert got == [("a", b"0"), ("a", b"1"), ("a", b"2"), ("a", b"3"), ("b", b"4"), ("b", b"5")]


def test_consumer_priorities_prefer_higher_priority_with_credit(scratch: Scratch) -> None:
    conn = scratch.connect()
    q = scratch.queue()
    ch_lo, ch_hi = conn.channel(), conn.channel()
    ch_lo.queue_declare(q)
    ch_hi.basic_qos(prefetch_count=2)
    got: list[tuple[str, bytes]] = []
    ch_lo.basic_consume(
        q, lambda _c, m, _p, b: got.append(("lo", b)), auto_ack=True, arguments={"x-priority": 1}
    )
    ch_hi.basic_consume(q, lambda _c, m, _p, b: got.append(("hi", b)), arguments={"x-priority": 10})
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(5):
        pub.basic_publish("", q, str(i).encode())
    collect(conn, got, 5)
    assert sorted(got) == [("hi", b"0"), ("hi", b"1"), ("lo", b"2"), ("lo", b"3"), ("lo", b"4")]


def test_basic_recover_requeues_unacked_as_redelivered(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"again")
    method, _, _ = ch.basic_get(q)
    assert method.redelivered is False
    ch.basic_recover(requeue=True)
    method, _, body = ch.basic_get(q, auto_ack=True)
    assert (body, method.redelivered) == (b"again", True)


def test_cancel_and_consumer_count(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    tag = ch.basic_consume(q, lambda *a: None, consumer_tag="compat-ctag")
    assert tag == "compat-ctag"
    assert ch.queue_declare(q, passive=True).method.consumer_count == 1
    ch.basic_cancel(tag)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 0


# --- queue kinds --------------------------------------------------------------------------


def test_server_named_exclusive_queue(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    name = scratch.own_queue(ch.queue_declare("", exclusive=True).method.queue)
    assert name.startswith("amq.gen-") and len(name) > len("amq.gen-")
    ch.basic_publish("", name, b"to-me")
    assert get_all(ch, name) == [(b"to-me", False)]
    other = scratch.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        other.queue_declare(name, passive=True)
    assert exc.value.reply_code == 405
    assert exc.value.reply_text.startswith("RESOURCE_LOCKED - ")
    conn.close()
    wait_gone(scratch, name)


def test_auto_delete_queue_goes_when_last_consumer_cancels(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, auto_delete=True)
    ch.queue_declare(q, passive=True)
    tag = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(tag)
    wait_gone(scratch, q)


def test_priority_queue_delivers_highest_first(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    for body, prio in ((b"p1", 1), (b"p5", 5), (b"none", None), (b"p9", 9), (b"p5b", 5)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    assert [b for b, _ in get_all(ch, q)] == [b"p9", b"p5", b"p5b", b"p1", b"none"]


def test_max_length_drop_head(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, arguments={"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    assert [b for b, _ in get_all(ch, q)] == [b"3", b"4"]


def test_max_length_reject_publish_nacks(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    outcomes = []
    for i in range(4):
        try:
            ch.basic_publish("", q, str(i).encode())
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    assert outcomes == ["ack", "ack", "nack", "nack"]
    assert [b for b, _ in get_all(ch, q)] == [b"0", b"1"]


def test_max_length_bytes_and_reject_publish_dlx_dead_letters(scratch: Scratch) -> None:
    ch = scratch.channel()
    q, dlq = scratch.queue("main"), scratch.queue("dlq")
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-max-length-bytes": 6,
            "x-overflow": "reject-publish-dlx",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    outcomes = []
    for body in (b"abc", b"def", b"ghi"):
        try:
            ch.basic_publish("", q, body)
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    assert outcomes == ["ack", "ack", "nack"]
    assert [b for b, _ in get_all(ch, q)] == [b"abc", b"def"]
    _, props, body = wait_get(ch, dlq)
    assert body == b"ghi"
    assert props.headers["x-death"][0]["reason"] == "maxlen"


# --- dead-lettering and TTL ---------------------------------------------------------------


def _death(props: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "time"} for d in props.headers["x-death"]]


def test_reject_without_requeue_dead_letters_with_x_death(scratch: Scratch) -> None:
    ch = scratch.channel()
    dlx = scratch.exchange("dlx")
    q, dlq = scratch.queue("work"), scratch.queue("dead")
    ch.exchange_declare(dlx, "fanout")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"bad", pika.BasicProperties(message_id="m-1"))
    method, _, _ = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    _, props, body = wait_get(ch, dlq)
    assert (body, props.message_id) == (b"bad", "m-1")
    assert _death(props) == [
        {"count": 1, "reason": "rejected", "queue": q, "exchange": "", "routing-keys": [q]}
    ]
    assert isinstance(props.headers["x-death"][0]["time"], datetime.datetime)
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == q
    assert props.headers["x-first-death-exchange"] == ""


def test_nack_dead_letters_with_routing_key_override_and_count_increments(
    scratch: Scratch,
) -> None:
    ch = scratch.channel()
    q, dlq = scratch.queue("work"), scratch.queue("dead")
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"twice")
    method, _, _ = ch.basic_get(q)
    ch.basic_nack(method.delivery_tag, requeue=False)
    _, props, _ = wait_get(ch, dlq)
    ch.basic_publish("", q, b"twice", pika.BasicProperties(headers=props.headers))
    method, _, _ = ch.basic_get(q)
    ch.basic_nack(method.delivery_tag, requeue=False)
    _, props, _ = wait_get(ch, dlq)
    assert _death(props) == [
        {"count": 2, "reason": "rejected", "queue": q, "exchange": "", "routing-keys": [q]}
    ]


def test_queue_message_ttl_expires_into_dead_letter_queue(scratch: Scratch) -> None:
    ch = scratch.channel()
    q, dlq = scratch.queue("ttl"), scratch.queue("dead")
    ch.queue_declare(dlq)
    ch.queue_declare(
        q,
        arguments={
            "x-message-ttl": 50,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq,
        },
    )
    ch.basic_publish("", q, b"old")
    _, props, body = wait_get(ch, dlq)
    assert body == b"old"
    assert _death(props) == [
        {"count": 1, "reason": "expired", "queue": q, "exchange": "", "routing-keys": [q]}
    ]
    assert ready_count(ch, q) == 0


def test_per_message_expiration_is_recorded_in_x_death(scratch: Scratch) -> None:
    ch = scratch.channel()
    q, dlq = scratch.queue("ttl"), scratch.queue("dead")
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="30"))
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="600000"))
    _, props, body = wait_get(ch, dlq)
    assert body == b"short"
    assert props.expiration is None
    assert _death(props) == [
        {
            "count": 1,
            "reason": "expired",
            "queue": q,
            "exchange": "",
            "routing-keys": [q],
            "original-expiration": "30",
        }
    ]
    assert get_all(ch, q) == [(b"long", False)]


def test_zero_ttl_message_is_dropped_without_consumer(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, arguments={"x-message-ttl": 0})
    ch.basic_publish("", q, b"gone")
    assert ch.basic_get(q) == (None, None, None)


# --- transactions -------------------------------------------------------------------------


def test_tx_commit_and_rollback(scratch: Scratch) -> None:
    ch = scratch.channel(confirm=False)
    q = scratch.queue()
    ch.queue_declare(q)
    ch.tx_select()
    ch.basic_publish("", q, b"rolled-back")
    assert ready_count(ch, q) == 0
    ch.tx_rollback()
    assert ready_count(ch, q) == 0
    ch.basic_publish("", q, b"committed")
    ch.tx_commit()
    assert ready_count(ch, q) == 1
    method, _, _ = ch.basic_get(q)
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    ch.basic_recover(requeue=True)
    method, _, body = ch.basic_get(q)
    assert (body, method.redelivered) == (b"committed", True)
    ch.basic_ack(method.delivery_tag)
    ch.tx_commit()
    assert ready_count(ch, q) == 0


# --- content ------------------------------------------------------------------------------


def test_one_megabyte_message_across_many_body_frames(scratch: Scratch) -> None:
    conn = scratch.connect(frame_max=4096)
    assert conn._impl.params.frame_max == 4096
    ch = conn.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    body = os.urandom(1024 * 1024)
    ch.basic_publish("", q, body)
    ch.basic_publish("", q, b"")
    method, _, got = ch.basic_get(q, auto_ack=True)
    assert got == body
    for method, _props, got in ch.consume(q, auto_ack=True, inactivity_timeout=2.0):
        assert method is not None
        assert got == b""
        break
    ch.cancel()


def test_all_basic_properties_round_trip(scratch: Scratch) -> None:
    ch = scratch.channel()
    q = scratch.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 9})
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    headers = {
        "str": "text",
        "int": 42,
        "neg": -7,
        "big": 2**40,
        "bool": True,
        "decimal": decimal.Decimal("3.14"),
        "stamp": stamp,
        "bytes": b"\x00\x01raw",
        "none": None,
        "list": [1, "two", [3], {"four": 4}],
        "table": {"nested": {"deep": "yes"}},
        "unicode": "h\u00e9llo \u2603",
    }
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers=headers,
        delivery_mode=2,
        priority=7,
        correlation_id="corr-1",
        reply_to="reply-q",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="order.created",
        user_id="guest",
        app_id="compat",
    )
    ch.basic_publish("", q, b"{}", props)
    _, got, body = ch.basic_get(q, auto_ack=True)
    assert body == b"{}"
    assert {k: v for k, v in vars(got).items() if k != "headers"} == {
        k: v for k, v in vars(props).items() if k != "headers"
    }
    assert got.headers == headers


def test_wrong_user_id_is_rejected_with_406(scratch: Scratch) -> None:
    conn = scratch.connect()
    ch = conn.channel()
    q = scratch.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="mallory"))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, passive=True)
    assert exc.value.reply_code == 406
    assert exc.value.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'"
    )


# --- errors -------------------------------------------------------------------------------


def _assert_channel_closed(conn: Any, exc: Any, code: int, prefix: str) -> None:
    assert exc.value.reply_code == code
    assert exc.value.reply_text.startswith(prefix), exc.value.reply_text
    assert conn.is_open
    ch = conn.channel()
    assert ch.queue_declare("", exclusive=True).method.queue.startswith("amq.gen-")


def test_channel_error_404_not_found_closes_only_the_channel(scratch: Scratch) -> None:
    conn = scratch.connect()
    missing = scratch.queue("missing")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        conn.channel().queue_declare(missing, passive=True)
    _assert_channel_closed(conn, exc, 404, "NOT_FOUND - ")
    assert exc.value.reply_text == f"NOT_FOUND - no queue '{missing}' in vhost '/'"
    ch = conn.channel()
    ch.basic_publish(scratch.exchange("missing"), "k", b"x")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare("", exclusive=True)
    _assert_channel_closed(conn, exc, 404, "NOT_FOUND - no exchange ")


def test_channel_error_406_inequivalent_declare(scratch: Scratch) -> None:
    conn = scratch.connect()
    q = scratch.queue()
    conn.channel().queue_declare(q, durable=False)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        conn.channel().queue_declare(q, durable=True)
    _assert_channel_closed(conn, exc, 406, "PRECONDITION_FAILED - inequivalent arg 'durable'")
    ch = conn.channel()
    ch.basic_ack(99)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        ch.queue_declare(q, passive=True)
    _assert_channel_closed(conn, exc, 406, "PRECONDITION_FAILED - unknown delivery tag 99")


def test_channel_error_405_exclusive_queue_of_other_connection(scratch: Scratch) -> None:
    owner = scratch.connect()
    q = scratch.queue()
    owner.channel().queue_declare(q, exclusive=True)
    conn = scratch.connect()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        conn.channel().basic_consume(q, lambda *a: None)
    _assert_channel_closed(conn, exc, 405, "RESOURCE_LOCKED - ")
    assert owner.is_open


def test_channel_error_403_reserved_exchange_name(scratch: Scratch) -> None:
    conn = scratch.connect()
    name = "amq.compat-" + scratch.token
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        conn.channel().exchange_declare(name, "direct")
    _assert_channel_closed(conn, exc, 403, "ACCESS_REFUSED - ")
    assert exc.value.reply_text == (
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
    )


def test_connection_error_bad_password(rapidmq: Any) -> None:
    url = rapidmq.amqp_url.replace("guest:guest@", "guest:wrong@")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as exc:
        pika.BlockingConnection(pika_parameters(url))
    assert "(403) 'ACCESS_REFUSED - " in str(exc.value)


def test_connection_error_unknown_vhost(rapidmq: Any) -> None:
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as exc:
        pika.BlockingConnection(pika_parameters(rapidmq.amqp_url + "no-such-vhost"))
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(exc.value)


# --- connection tuning --------------------------------------------------------------------


def test_heartbeat_negotiated_and_sent(scratch: Scratch) -> None:
    proposed: list[int] = []

    def choose(_conn: Any, server_value: int) -> int:
        proposed.append(server_value)
        return 1

    conn = scratch.connect(heartbeat=choose)
    assert proposed and proposed[0] > 0
    assert conn._impl.params.heartbeat == 1
    checker = conn._impl._heartbeat_checker
    deadline = time.monotonic() + 4.0
    while checker._heartbeat_frames_received == 0 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert checker._heartbeat_frames_received >= 1
    assert conn.is_open


def test_channel_max_and_frame_max_are_negotiated(scratch: Scratch) -> None:
    conn = scratch.connect(channel_max=3, frame_max=8192)
    assert (conn._impl.params.channel_max, conn._impl.params.frame_max) == (3, 8192)
    channels = [conn.channel() for _ in range(3)]
    assert [c.channel_number for c in channels] == [1, 2, 3]
    with pytest.raises(pika.exceptions.NoFreeChannels):
        conn.channel()
