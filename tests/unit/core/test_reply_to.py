"""Direct reply-to in the core: the pseudo-queue, reply names, delivery and refusals."""

from __future__ import annotations

import re

import pytest
from core_support import WALL_CLOCK_S, Client, FakeClock, connect, msg

from rapidmq.auth.permissions import Permission, PermissionStore
from rapidmq.core import Broker, ClientInfo
from rapidmq.core.api import PublishResult, QueueDeclareResult
from rapidmq.core.errors import AccessRefused, CoreError, NotAllowed, NotFound, PreconditionFailed
from rapidmq.core.reply_to import REPLY_PREFIX, REPLY_QUEUE, registry_for

NAME = re.compile(re.escape(REPLY_PREFIX) + r"[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{24}")


def error(exc: pytest.ExceptionInfo[CoreError]) -> tuple[str, str, str]:
    return type(exc.value).__name__, exc.value.scope, exc.value.text


def reply_name(client: Client) -> str:
    """The reply_to a request of ``client``'s session carries once published."""
    s = client.session
    s.declare_queue("requests")
    s.publish(msg("request", "requests", reply_to=REPLY_QUEUE, correlation_id="c1"))
    got = s.get("requests", no_ack=True)
    assert got is not None
    assert got.message.properties.correlation_id == "c1"
    name = got.message.properties.reply_to
    assert name is not None
    return name


def test_request_reply_to_names_the_consumer_and_replies_reach_it(broker: Broker) -> None:
    client, server = connect(broker), connect(broker)
    assert client.session.consume(REPLY_QUEUE, "replies", no_ack=True) == "replies"
    name = reply_name(client)
    assert NAME.fullmatch(name)
    result = server.session.publish(msg("answer", name, correlation_id="c1"))
    # No queue took it: a mandatory publish is returned, as RabbitMQ does.
    assert result == PublishResult(routed=False)
    assert client.sink.take() == [("deliver", "replies", 2, False, b"answer")]
    (delivered,) = client.sink.messages
    assert (delivered.exchange, delivered.routing_key) == ("", name)
    assert delivered.properties.correlation_id == "c1"


def test_replies_take_the_next_delivery_tag_without_using_it_up(client: Client) -> None:
    s = client.session
    s.consume(REPLY_QUEUE, "r", no_ack=True)
    name = reply_name(client)  # basic.get used tag 1
    s.publish(msg("a", name))
    s.publish(msg("b", name))
    s.declare_queue("q")
    s.publish(msg("c", "q"))
    got = s.get("q")
    assert got is not None and got.delivery_tag == 2
    assert client.sink.take() == [
        ("deliver", "r", 2, False, b"a"),
        ("deliver", "r", 2, False, b"b"),
    ]


def test_names_are_random_and_differ_per_session(broker: Broker) -> None:
    names = set()
    for _ in range(20):
        client = connect(broker)
        client.session.consume(REPLY_QUEUE, no_ack=True)
        names.add(reply_name(client))
    assert len(names) == 20
    assert len({n.split(".")[-1] for n in names}) == 20


def test_consume_refusals_copy_rabbitmq(client: Client) -> None:
    s = client.session
    with pytest.raises(PreconditionFailed) as exc:
        s.consume(REPLY_QUEUE, "r")
    assert error(exc) == ("PreconditionFailed", "channel", "reply consumer cannot acknowledge")
    tag = s.consume(REPLY_QUEUE, no_ack=True)
    assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag)
    with pytest.raises(PreconditionFailed) as exc:
        s.consume(REPLY_QUEUE, "other", no_ack=True)
    assert error(exc) == ("PreconditionFailed", "channel", "reply consumer already set")


def test_consumer_tag_reuse_is_checked_first(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "t")
    with pytest.raises(NotAllowed) as exc:
        s.consume(REPLY_QUEUE, "t", no_ack=True)
    assert error(exc) == ("NotAllowed", "connection", "attempt to reuse consumer tag 't'")


def test_request_without_reply_consumer_is_refused(client: Client) -> None:
    client.session.declare_queue("requests")
    with pytest.raises(PreconditionFailed) as exc:
        client.session.publish(msg("x", "requests", reply_to=REPLY_QUEUE))
    assert error(exc) == ("PreconditionFailed", "channel", "fast reply consumer does not exist")
    assert client.session.declare_queue("requests").message_count == 0


def test_other_reply_to_values_are_left_alone(client: Client) -> None:
    s = client.session
    s.declare_queue("requests")
    for reply_to in (REPLY_PREFIX + "made-up", "my-replies"):
        s.publish(msg("x", "requests", reply_to=reply_to))
        got = s.get("requests", no_ack=True)
        assert got is not None and got.message.properties.reply_to == reply_to


def test_declare_answers_for_the_pseudo_queue_and_live_names_only(broker: Broker) -> None:
    client, other = connect(broker), connect(broker)
    pseudo = QueueDeclareResult(REPLY_QUEUE, 0, 1)
    assert other.session.declare_queue(REPLY_QUEUE, passive=True) == pseudo
    assert other.session.declare_queue(REPLY_QUEUE) == pseudo
    assert other.session.declare_queue(REPLY_QUEUE, durable=True, exclusive=True) == pseudo
    client.session.consume(REPLY_QUEUE, "r", no_ack=True)
    name = reply_name(client)
    assert other.session.declare_queue(name, passive=True) == QueueDeclareResult(name, 0, 1)
    for missing in (name + "x", REPLY_PREFIX + "made-up", REPLY_QUEUE + "x"):
        with pytest.raises(NotFound) as exc:
            other.session.declare_queue(missing)
        assert error(exc) == ("NotFound", "channel", f"no queue '{missing}' in vhost '/'")
    assert REPLY_QUEUE not in client.session.vhost.queues


def test_cancel_and_close_drop_later_replies(broker: Broker) -> None:
    client, server = connect(broker), connect(broker)
    client.session.consume(REPLY_QUEUE, "r", no_ack=True)
    name = reply_name(client)
    client.session.cancel("r")
    assert server.session.publish(msg("late", name)) == PublishResult(routed=False)
    assert client.sink.take() == []
    with pytest.raises(NotFound):
        server.session.declare_queue(name, passive=True)
    with pytest.raises(PreconditionFailed):
        client.session.publish(msg("x", "requests", reply_to=REPLY_QUEUE))

    again = connect(broker)
    again.session.consume(REPLY_QUEUE, "r", no_ack=True)
    second = reply_name(again)
    assert second != name
    registry = registry_for(server.session.vhost)
    assert registry.statistics()["consumers"] == 1
    again.session.close()
    assert server.session.publish(msg("late", second)) == PublishResult(routed=False)
    assert again.sink.take() == []
    assert registry.statistics() == {"consumers": 0, "delivered": 0, "dropped": 2}


def test_cc_header_reaches_a_reply_consumer_through_the_default_exchange(broker: Broker) -> None:
    client, server = connect(broker), connect(broker)
    client.session.consume(REPLY_QUEUE, "r", no_ack=True)
    name = reply_name(client)
    server.session.declare_queue("audit")
    server.session.publish(msg("answer", "audit", headers={"CC": [name]}))
    assert client.sink.take() == [("deliver", "r", 2, False, b"answer")]
    assert server.session.get("audit", no_ack=True) is not None


def test_replies_do_not_cross_virtual_hosts(broker: Broker) -> None:
    broker.add_vhost("other")
    client = connect(broker)
    client.session.consume(REPLY_QUEUE, "r", no_ack=True)
    name = reply_name(client)
    elsewhere = broker.connect("other", ClientInfo("amqp091", "127.0.0.1:2", user="guest"))
    elsewhere.open_session(client.sink).publish(msg("answer", name))
    assert client.sink.take() == []


def test_session_statistics_count_the_reply_consumer(client: Client) -> None:
    client.session.consume(REPLY_QUEUE, "r", no_ack=True)
    assert client.session.statistics()["consumers"] == 1


def test_permissions_as_rabbitmq_consume_and_declare_free_publish_needs_write() -> None:
    store = PermissionStore()
    broker = Broker(clock=FakeClock(), wall_clock=lambda: WALL_CLOCK_S)
    broker.permissions = store
    store.set(Permission("bob", "/", configure="", write="", read=""))
    bob = connect(broker, user="bob")
    bob.session.consume(REPLY_QUEUE, "r", no_ack=True)
    assert bob.session.declare_queue(REPLY_QUEUE) == QueueDeclareResult(REPLY_QUEUE, 0, 1)
    with pytest.raises(AccessRefused) as exc:
        bob.session.publish(msg("x", "none", reply_to=REPLY_QUEUE))
    assert error(exc) == (
        "AccessRefused",
        "channel",
        "access to exchange 'amq.default' in vhost '/' refused for user 'bob'",
    )
