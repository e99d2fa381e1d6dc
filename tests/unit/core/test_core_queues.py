from __future__ import annotations

import re

import pytest
from core_support import Client, FakeClock, connect, msg

from rapidmq.core import (
    AccessRefused,
    Broker,
    NotFound,
    PreconditionFailed,
    PublishResult,
    QueueDeclareResult,
    ResourceLocked,
)
from rapidmq.core.errors import CoreError

LOCKED = (
    "cannot obtain exclusive access to locked queue 'q' in vhost '/'. It could be originally "
    "declared on another connection or the exclusive property value does not match that of "
    "the original declaration."
)


def error(exc: pytest.ExceptionInfo[CoreError]) -> tuple[str, str, str]:
    return type(exc.value).__name__, exc.value.scope, exc.value.text


def bodies(client: Client, queue: str) -> list[bytes]:
    out = []
    while (got := client.session.get(queue, no_ack=True)) is not None:
        out.append(got.message.body)
    return out


def test_declare_returns_counts_and_server_names_queues(client: Client) -> None:
    s = client.session
    assert s.declare_queue("q") == QueueDeclareResult("q", 0, 0)
    s.publish(msg("a"))
    s.consume("q", "c", dispatch=False)
    assert s.declare_queue("q") == QueueDeclareResult("q", 1, 1)
    generated = s.declare_queue("").name
    assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", generated)


def test_queue_is_fifo(client: Client) -> None:
    for body in ["1", "2", "3"]:
        client.session.declare_queue("q")
        client.session.publish(msg(body))
    assert bodies(client, "q") == [b"1", b"2", b"3"]


def test_reserved_queue_prefix_is_refused(client: Client) -> None:
    with pytest.raises(AccessRefused) as exc:
        client.session.declare_queue("amq.foo")
    assert error(exc) == (
        "AccessRefused",
        "channel",
        "queue name 'amq.foo' contains reserved prefix 'amq.*'",
    )


def test_server_named_quorum_queue_is_refused(client: Client) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        client.session.declare_queue("", arguments={"x-queue-type": "quorum"})
    assert error(exc) == (
        "PreconditionFailed",
        "channel",
        "Cannot declare a server-named queue for type rabbit_quorum_queue",
    )


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (
            {},
            {"durable": True},
            "inequivalent arg 'durable' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {},
            {"auto_delete": True},
            "inequivalent arg 'auto_delete' for queue 'q' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received '2000' but current is '1000'",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {},
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
            "received none but current is the value '1000' of type 'signedint'",
        ),
        (
            {},
            {"arguments": {"x-max-length": 2**40}},
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': "
            "received the value '1099511627776' of type 'long' but current is none",
        ),
    ],
)
def test_inequivalent_queue_redeclare_is_precondition_failed(
    client: Client, first: dict[str, object], second: dict[str, object], expected: str
) -> None:
    client.session.declare_queue("q", **first)  # type: ignore[arg-type]
    with pytest.raises(PreconditionFailed) as exc:
        client.session.declare_queue("q", **second)  # type: ignore[arg-type]
    assert error(exc) == ("PreconditionFailed", "channel", expected)


def test_unknown_arguments_are_not_compared_on_redeclare(client: Client) -> None:
    client.session.declare_queue("q", arguments={"x-custom": 1})
    client.session.declare_queue("q", arguments={"x-custom": 2})


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"x-max-length": -1}, "invalid arg 'x-max-length' for queue 'q' in vhost '/': "
         "{value_negative,-1}"),
        ({"x-max-length": "a"}, "invalid arg 'x-max-length' for queue 'q' in vhost '/': "
         '"expected integer, got longstr"'),
        ({"x-expires": 0}, "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"),
        ({"x-message-ttl": 2**40}, "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': "
         "{value_too_large,1099511627776}"),
        ({"x-max-priority": 256}, "invalid arg 'x-max-priority' for queue 'q' in vhost '/': "
         "{max_value_exceeded,256}"),
        ({"x-overflow": "foo"}, "invalid arg 'x-overflow' for queue 'q' in vhost '/': "
         "invalid_overflow"),
        ({"x-overflow": 1}, "invalid arg 'x-overflow' for queue 'q' in vhost '/': "
         "{unacceptable_type,signedint}"),
        ({"x-dead-letter-routing-key": "k"}, "invalid arg 'x-dead-letter-routing-key' for "
         "queue 'q' in vhost '/': routing_key_but_no_dlx_defined"),
        ({"x-single-active-consumer": 1}, "invalid arg 'x-single-active-consumer' for queue "
         "'q' in vhost '/': {unacceptable_type,signedint}"),
        ({"x-queue-mode": "x"}, "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': "
         "\"unsupported queue mode 'x'\""),
        ({"x-dead-letter-exchange": 5}, "invalid type 'signedint' for arg "
         "'x-dead-letter-exchange' in queue 'q' in vhost '/'"),
        ({"x-max-length": True}, "invalid arg 'x-max-length' for queue 'q' in vhost '/': "
         '"expected integer, got bool"'),
    ],
)  # fmt: skip
def test_invalid_queue_arguments_are_refused_with_rabbitmq_text(
    client: Client, arguments: dict[str, object], reason: str
) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        client.session.declare_queue("q", arguments=arguments)
    assert error(exc) == ("PreconditionFailed", "channel", reason)


def test_exclusive_queue_is_locked_to_its_connection_and_deleted_on_close(
    broker: Broker, client: Client
) -> None:
    other = connect(broker)
    client.session.declare_queue("q", exclusive=True)
    calls = [
        lambda: other.session.declare_queue("q", exclusive=True),
        lambda: other.session.declare_queue("q"),
        lambda: other.session.declare_queue("q", passive=True),
        lambda: other.session.consume("q"),
        lambda: other.session.get("q"),
        lambda: other.session.purge_queue("q"),
        lambda: other.session.delete_queue("q"),
        lambda: other.session.bind_queue("q", "amq.direct", "k"),
    ]
    results = []
    for call in calls:
        with pytest.raises(ResourceLocked) as exc:
            call()
        results.append(error(exc))
    assert results == [("ResourceLocked", "channel", LOCKED)] * len(calls)
    with pytest.raises(ResourceLocked):
        client.session.declare_queue("q")  # own queue, but not declared exclusive
    assert other.session.publish(msg("m")) == PublishResult(True)
    client.connection.close()
    assert "q" not in broker.vhost("/").queues  # type: ignore[union-attr]


def test_auto_delete_queue_goes_with_its_last_consumer_only(client: Client) -> None:
    s = client.session
    s.declare_queue("q", auto_delete=True)
    vhost = client.connection.vhost
    assert "q" in vhost.queues
    s.consume("q", "a")
    s.consume("q", "b")
    s.cancel("a")
    assert "q" in vhost.queues
    s.cancel("b")
    assert "q" not in vhost.queues
    s.cancel("unknown-tag")


def test_auto_delete_queue_goes_when_its_consumer_session_closes(client: Client) -> None:
    session, _ = client.channel()
    session.declare_queue("q", auto_delete=True)
    session.consume("q")
    session.close()
    assert "q" not in client.connection.vhost.queues


def test_x_expires_deletes_unused_queue_after_timeout(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    s = client.session
    s.declare_queue("q", arguments={"x-expires": 1000})
    assert broker.next_deadline() == clock.now + 1.0
    clock.advance(0.9)
    s.declare_queue("q", passive=True)  # use restarts the timer
    clock.advance(0.9)
    broker.tick()
    assert "q" in client.connection.vhost.queues
    s.consume("q", "c")
    assert broker.next_deadline() is None
    clock.advance(10)
    broker.tick()
    assert "q" in client.connection.vhost.queues
    s.cancel("c")
    clock.advance(0.5)
    s.get("q")
    clock.advance(0.99)
    broker.tick()
    assert "q" in client.connection.vhost.queues
    clock.advance(0.01)
    broker.tick()
    assert "q" not in client.connection.vhost.queues
    assert broker.next_deadline() is None


def test_delete_queue_if_unused_and_if_empty_and_missing(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.publish(msg("a"))
    s.consume("q", "c", dispatch=False)
    with pytest.raises(PreconditionFailed) as exc:
        s.delete_queue("q", if_unused=True)
    assert error(exc) == ("PreconditionFailed", "channel", "queue 'q' in vhost '/' in use")
    with pytest.raises(PreconditionFailed) as exc:
        s.delete_queue("q", if_empty=True)
    assert error(exc) == ("PreconditionFailed", "channel", "queue 'q' in vhost '/' not empty")
    assert s.delete_queue("q") == 1
    assert s.delete_queue("q") == 0
    assert client.sink.events == [("cancelled", "c")]


def test_purge_counts_ready_messages_and_missing_queue_is_not_found(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    for body in "abc":
        s.publish(msg(body))
    assert s.get("q") is not None
    assert s.purge_queue("q") == 2
    with pytest.raises(NotFound) as exc:
        s.purge_queue("nope")
    assert error(exc) == ("NotFound", "channel", "no queue 'nope' in vhost '/'")


def test_empty_queue_name_means_last_declared_queue(client: Client) -> None:
    s = client.session
    with pytest.raises(NotFound) as exc:
        s.get("")
    assert error(exc) == ("NotFound", "channel", "no previously declared queue")
    name = s.declare_queue("").name
    s.bind_queue("", "amq.direct", "")  # routing key too defaults to the queue name
    s.publish(msg("m", name, "amq.direct"))
    got = s.get("", no_ack=True)
    assert got is not None and got.message.body == b"m"


def test_queue_statistics(client: Client) -> None:
    s = client.session
    s.declare_queue("q", durable=True)
    for body in ["ab", "cde"]:
        s.publish(msg(body))
    s.get("q")
    assert client.connection.vhost.queues["q"].statistics() == {
        "name": "q",
        "vhost": "/",
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "arguments": {},
        "messages": 2,
        "messages_ready": 1,
        "messages_unacknowledged": 1,
        "message_bytes_ready": 3,
        "consumers": 0,
        "consumer_capacity": 0.0,
        "published": 2,
        "delivered": 1,
        "delivered_no_ack": 0,
        "got": 1,
        "got_no_ack": 0,
        "got_empty": 0,
        "acknowledged": 0,
        "redelivered": 0,
        "expired": 0,
        "dead_lettered": 0,
        "dropped": 0,
        "rejected_publishes": 0,
    }
