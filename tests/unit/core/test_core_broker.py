from __future__ import annotations

import pytest
from core_support import Client, connect, msg

from rapidmq.core import Broker, ClientInfo, NotAllowed


def test_connect_to_unknown_vhost_is_not_allowed_at_connection_scope(broker: Broker) -> None:
    with pytest.raises(NotAllowed) as exc:
        broker.connect("nope", ClientInfo("amqp091", "127.0.0.1:1"))
    assert (exc.value.scope, exc.value.text) == ("connection", "vhost nope not found")


def test_vhosts_are_separate_namespaces(broker: Broker) -> None:
    broker.add_vhost("other")
    a = connect(broker)
    b = broker.connect("other", ClientInfo("amqp091", "127.0.0.1:2", user="guest"))
    a.session.declare_queue("q")
    session = b.open_session(a.sink)
    assert session.publish(msg("m")).routed is False
    broker.delete_vhost("other")
    assert (broker.vhost("other"), b.closed) == (None, True)


def test_broker_statistics_count_everything(broker: Broker, client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.consume("q", "c")
    for body in "abc":
        s.publish(msg(body))
    s.publish(msg("lost", "nowhere"))
    s.ack(1)
    closed, _ = client.channel()
    closed.publish(msg("x", "nowhere"))
    closed.close()
    assert broker.statistics() == {
        "vhosts": 1,
        "connections": 1,
        "sessions": 1,
        "queues": 1,
        "exchanges": 6,
        "consumers": 1,
        "messages_ready": 0,
        "messages_unacknowledged": 2,
        "published": 5,
        "unroutable": 2,
        "delivered": 3,
        "acknowledged": 1,
        "rejected": 0,
    }
    assert client.session.statistics() == {
        "consumers": 1,
        "messages_unacknowledged": 2,
        "prefetch_count": 0,
        "global_prefetch_count": 0,
        "blocked": False,
        "next_delivery_tag": 4,
        "published": 4,
        "unroutable": 1,
        "delivered": 3,
        "acknowledged": 1,
        "rejected": 0,
    }


def test_connection_close_requeues_and_removes_the_connection(broker: Broker) -> None:
    owner = connect(broker)
    owner.session.declare_queue("q")
    owner.session.consume("q", "c")
    owner.session.publish(msg("a"))
    owner.connection.close()
    queue = broker.vhost("/").queues["q"]  # type: ignore[union-attr]
    assert (queue.ready_count, queue.unacked_count, broker.statistics()["connections"]) == (
        1,
        0,
        0,
    )
    assert owner.connection.statistics()["sessions"] == 0
