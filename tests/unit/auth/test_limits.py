"""LimitStore: limits kept in the metadata store and pushed into the core."""

from __future__ import annotations

import pytest

from rapidmq.auth.limits import LimitStore, UnknownLimit
from rapidmq.core.api import ClientInfo, NoDeliveries
from rapidmq.core.broker import Broker
from rapidmq.core.errors import NotAllowed, PreconditionFailed
from rapidmq.storage.memory import MemoryMetadataStore


def client(user: str = "u") -> ClientInfo:
    return ClientInfo(protocol="amqp091", peer="127.0.0.1:1", user=user)


def test_limits_reach_the_core_and_negative_is_none() -> None:
    broker = Broker()
    limits = LimitStore(broker)
    limits.set_vhost_limit("/", "max-queues", 1)
    limits.set_user_limit("u", "max-channels", -1)
    vhost = broker.vhost("/")
    assert vhost is not None and vhost.max_queues == 1
    assert broker.user_max_channels == {}
    assert limits.user_limits("u") == {"max-channels": -1}
    with pytest.raises(UnknownLimit):
        limits.set_vhost_limit("/", "max-channels", 1)
    with pytest.raises(UnknownLimit):
        limits.set_user_limit("u", "max-queues", 1)


def test_queue_and_connection_limits_in_the_core() -> None:
    broker = Broker()
    limits = LimitStore(broker)
    limits.set_vhost_limit("/", "max-queues", 1)
    limits.set_user_limit("u", "max-connections", 1)
    conn = broker.connect("/", client())
    session = conn.open_session(NoDeliveries())
    session.declare_queue("a")
    with pytest.raises(PreconditionFailed) as info:
        session.declare_queue("b")
    assert info.value.text == "cannot declare queue 'b': queue limit in vhost '/' (1) is reached"
    with pytest.raises(NotAllowed) as refused:
        broker.connect("/", client())
    assert refused.value.scope == "connection"
    # the broker's own connections never count, and others' users are not limited
    broker.connect("/", ClientInfo(protocol="http", peer="management", user="u")).close()
    broker.connect("/", client("other")).close()
    conn.close()
    broker.connect("/", client()).close()


def test_limits_survive_in_the_store_and_go_with_their_owner() -> None:
    store = MemoryMetadataStore()
    broker = Broker(metadata=store)
    broker.restore()
    limits = LimitStore(broker, metadata=store)
    limits.set_vhost_limit("/", "max-connections", 3)
    limits.set_user_limit("u", "max-channels", 2)
    limits.set_user_limit("gone", "max-channels", 2)
    limits.user_deleted("gone")
    assert limits.clear_vhost_limit("/", "max-connections")
    assert not limits.clear_vhost_limit("/", "max-connections")
    limits.set_vhost_limit("/", "max-queues", 5)

    again = Broker(metadata=store)
    again.restore()
    restored = LimitStore(again, metadata=store)
    assert restored.restore() == 2
    assert restored.all_vhost_limits() == [("/", {"max-queues": 5})]
    assert restored.all_user_limits() == [("u", {"max-channels": 2})]
    vhost = again.vhost("/")
    assert vhost is not None and (vhost.max_queues, vhost.max_connections) == (5, None)
    assert again.user_max_channels == {"u": 2}
    restored.vhost_deleted("/")
    assert list(store.items("vhost_limits")) == []
