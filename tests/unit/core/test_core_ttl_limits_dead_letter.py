from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core_support import WALL_CLOCK_S, Client, FakeClock, msg

from rapidmq.core import Broker, PublishResult

DEATH_TIME = datetime.fromtimestamp(int(WALL_CLOCK_S), UTC)


def bodies(client: Client, queue: str) -> list[bytes]:
    out = []
    while (got := client.session.get(queue, no_ack=True)) is not None:
        out.append(got.message.body)
    return out


def dead_letters(client: Client, queue: str) -> list[tuple[str, str, bytes, dict[str, Any] | None]]:
    out = []
    while (got := client.session.get(queue, no_ack=True)) is not None:
        m = got.message
        out.append((m.exchange, m.routing_key, m.body, m.properties.headers))
    return out


def setup_dlx(client: Client, **arguments: Any) -> None:
    s = client.session
    s.declare_queue("dead")
    s.bind_queue("dead", "amq.fanout", "")
    s.declare_queue("q", arguments={"x-dead-letter-exchange": "amq.fanout", **arguments})


def test_queue_ttl_expires_messages_by_tick(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-message-ttl": 1000})
    s.publish(msg("a"))
    clock.advance(0.5)
    s.publish(msg("b"))
    assert broker.next_deadline() == clock.now + 0.5
    clock.advance(0.5)
    broker.tick()
    assert bodies(client, "q") == [b"b"]


def test_per_message_expiration_uses_lower_of_message_and_queue_ttl(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-message-ttl": 5000})
    s.publish(msg("short", expiration="100"))
    s.publish(msg("queue-ttl"))
    clock.advance(0.1)
    broker.tick()
    assert bodies(client, "q") == [b"queue-ttl"]


def test_message_expires_only_at_the_head(broker: Broker, client: Client, clock: FakeClock) -> None:
    s = client.session
    s.declare_queue("q")
    s.publish(msg("long", expiration="10000"))
    s.publish(msg("short", expiration="10"))
    clock.advance(1)
    broker.tick()
    assert client.connection.vhost.queues["q"].ready_count == 2
    assert bodies(client, "q") == [b"long"]  # the expired second one is dropped on the way


def test_ttl_zero_is_delivered_only_when_a_consumer_can_take_it_at_once(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    assert s.publish(msg("gone", expiration="0")) == PublishResult(True)
    assert client.connection.vhost.queues["q"].ready_count == 0
    s.consume("q", "c", no_ack=True)
    s.publish(msg("taken", expiration="0"))
    assert client.sink.events == [("deliver", "c", 1, False, b"taken")]


def test_expired_message_is_dead_lettered_with_x_death(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    setup_dlx(client)
    client.session.publish(msg("m", expiration="5", headers={"h": 1, "CC": ["zz"]}))
    clock.advance(0.005)
    broker.tick()
    assert dead_letters(client, "dead") == [
        (
            "amq.fanout",
            "q",
            b"m",
            {
                "CC": ["zz"],
                "h": 1,
                "x-death": [
                    {
                        "count": 1,
                        "reason": "expired",
                        "queue": "q",
                        "time": DEATH_TIME,
                        "exchange": "",
                        "routing-keys": ["q", "zz"],
                        "original-expiration": "5",
                    }
                ],
                "x-first-death-exchange": "",
                "x-first-death-queue": "q",
                "x-first-death-reason": "expired",
            },
        )
    ]


def test_reject_without_requeue_dead_letters_with_x_death(client: Client) -> None:
    setup_dlx(client, **{"x-dead-letter-routing-key": "dlk"})
    s = client.session
    s.publish(msg("m", headers={"CC": ["zz"]}))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)
    ((exchange, key, body, headers),) = dead_letters(client, "dead")
    assert (exchange, key, body) == ("amq.fanout", "dlk", b"m")
    assert headers == {
        "x-death": [
            {
                "count": 1,
                "reason": "rejected",
                "queue": "q",
                "time": DEATH_TIME,
                "exchange": "",
                "routing-keys": ["q", "zz"],
            }
        ],
        "x-first-death-exchange": "",
        "x-first-death-queue": "q",
        "x-first-death-reason": "rejected",
    }
    # Dead-lettered again from the same queue for the same reason: count 2, moved to front.
    s.publish(msg("m", headers=headers))
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)
    ((_, _, _, headers),) = dead_letters(client, "dead")
    assert headers is not None
    assert headers["x-death"] == [
        {
            "count": 2,
            "exchange": "",
            "queue": "q",
            "reason": "rejected",
            "routing-keys": ["q", "zz"],
            "time": DEATH_TIME,
        }
    ]
    assert list(headers["x-death"][0]) == sorted(headers["x-death"][0])


def test_dead_letter_without_routing_key_uses_original_keys_including_bcc(client: Client) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-dead-letter-exchange": ""})
    s.declare_queue("bcc-target")
    s.bind_queue("q", "amq.direct", "q")
    s.publish(msg("m", "a", "amq.direct", headers={"CC": ["q"], "BCC": ["bcc-target"]}))
    assert client.connection.vhost.queues["bcc-target"].ready_count == 0  # not bound
    got = s.get("q")
    assert got is not None
    s.reject(got.delivery_tag, requeue=False)
    assert [(e, k, b) for e, k, b, _ in dead_letters(client, "bcc-target")] == [("", "a", b"m")]
    assert [
        (e, k, h["x-death"][0]["routing-keys"]) for e, k, _, h in dead_letters(client, "q")
    ] == [  # type: ignore[index]
        ("", "a", ["a", "q"])
    ]


def test_fully_automatic_dead_letter_cycle_drops_the_message(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    s = client.session
    s.declare_queue(
        "a",
        arguments={
            "x-message-ttl": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "b",
        },
    )
    s.declare_queue(
        "b",
        arguments={
            "x-message-ttl": 10,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "a",
        },
    )
    s.publish(msg("m", "a"))
    clock.advance(0.01)
    broker.tick()
    assert client.connection.vhost.queues["b"].ready_count == 1
    clock.advance(0.01)
    broker.tick()
    vhost = client.connection.vhost
    assert (vhost.queues["a"].ready_count, vhost.queues["b"].ready_count) == (0, 0)
    assert vhost.dead_letter_cycles_dropped == 1


def test_rejected_messages_may_cycle_back_to_their_queue(client: Client) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-dead-letter-exchange": ""})
    s.publish(msg("m"))
    counts = []
    for _ in range(2):
        got = s.get("q")
        assert got is not None
        s.reject(got.delivery_tag, requeue=False)
        again = client.connection.vhost.queues["q"]
        assert again.ready_count == 1
    got = s.get("q")
    assert got is not None and got.message.properties.headers is not None
    counts.append(got.message.properties.headers["x-death"][0]["count"])
    assert counts == [2]


def test_max_length_drop_head_dead_letters_with_maxlen(client: Client) -> None:
    setup_dlx(client, **{"x-max-length": 2})
    for body in "abc":
        assert client.session.publish(msg(body)) == PublishResult(True)
    assert bodies(client, "q") == [b"b", b"c"]
    ((_, _, body, headers),) = dead_letters(client, "dead")
    assert (body, headers["x-death"][0]["reason"]) == (b"a", "maxlen")  # type: ignore[index]


def test_max_length_bytes_counts_body_bytes(client: Client) -> None:
    client.session.declare_queue("q", arguments={"x-max-length-bytes": 5})
    for body in ["12", "34", "56"]:
        client.session.publish(msg(body))
    assert bodies(client, "q") == [b"34", b"56"]


def test_reject_publish_refuses_new_messages(client: Client) -> None:
    setup_dlx(client, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    assert [client.session.publish(msg(b)) for b in "ab"] == [
        PublishResult(True),
        PublishResult(True, rejected=True),
    ]
    assert (bodies(client, "q"), bodies(client, "dead")) == ([b"a"], [])


def test_reject_publish_dlx_also_dead_letters_the_refused_message(client: Client) -> None:
    setup_dlx(client, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    assert [client.session.publish(msg(b)) for b in "ab"] == [
        PublishResult(True),
        PublishResult(True, rejected=True),
    ]
    assert (bodies(client, "q"), bodies(client, "dead")) == ([b"a"], [b"b"])


def test_priority_queue_delivers_higher_priority_first_and_fifo_within(client: Client) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-max-priority": 5})
    for body, priority in [("low1", 0), ("high", 9), ("mid", 3), ("low2", None), ("top", 5)]:
        s.publish(msg(body, priority=priority))
    assert bodies(client, "q") == [b"high", b"top", b"mid", b"low1", b"low2"]


def test_requeued_messages_return_to_their_original_position_marked_redelivered(
    client: Client,
) -> None:
    s = client.session
    s.declare_queue("q")
    for body in "abcd":
        s.publish(msg(body))
    first = s.get("q")
    second = s.get("q")
    assert first is not None and second is not None
    s.reject(second.delivery_tag)
    s.reject(first.delivery_tag)
    results = []
    while (got := s.get("q", no_ack=True)) is not None:
        results.append((got.message.body, got.redelivered))
    assert results == [(b"a", True), (b"b", True), (b"c", False), (b"d", False)]
