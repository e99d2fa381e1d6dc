"""Durable topology written to a metadata store, and rebuilt from it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from core_support import WALL_CLOCK_S, FakeClock, RecordingSink, connect, msg

from rapidmq.auth.users import UserStore, check_password
from rapidmq.core import Broker, ClientInfo, Session, StorageFailed
from rapidmq.core.durable import args_id
from rapidmq.storage import KINDS, open_stores
from rapidmq.storage.api import MetadataStore, StorageError
from rapidmq.storage.memory import MemoryMetadataStore

Records = dict[str, list[tuple[tuple[str, ...], dict[str, Any]]]]


def records(store: MetadataStore) -> Records:
    """Every record of the store, by kind; kinds with none left out."""
    found = {kind: list(store.items(kind)) for kind in KINDS}
    return {kind: items for kind, items in found.items() if items}


def stored_broker(store: MetadataStore, clock: FakeClock) -> Broker:
    broker = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, metadata=store)
    broker.restore()
    return broker


def topology(broker: Broker, vhost: str = "/") -> dict[str, Any]:
    """Exchanges, queues and bindings of one vhost, as comparable values."""
    host = broker.vhost(vhost)
    assert host is not None
    return {
        "exchanges": {
            name: (x.type, x.durable, x.auto_delete, x.internal, x.arguments)
            for name, x in sorted(host.exchanges.items())
        },
        "queues": {
            name: (q.durable, q.auto_delete, q.arguments) for name, q in sorted(host.queues.items())
        },
        "bindings": sorted(
            (b.source.name, b.destination.name, b.routing_key, repr(b.arguments))
            for x in host.exchanges.values()
            for b in x.bindings_out.values()
        ),
    }


def drain(session: Session, queue: str) -> list[bytes]:
    bodies = []
    while (got := session.get(queue, no_ack=True)) is not None:
        bodies.append(got.message.body)
    return bodies


@pytest.fixture
def store() -> MemoryMetadataStore:
    return MemoryMetadataStore()


def test_fresh_store_gets_the_default_vhost_and_no_predeclared_exchange(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    broker = Broker(clock=clock, metadata=store)
    assert broker.restore() == {
        "vhosts": 0,
        "policies": 0,
        "exchanges": 0,
        "queues": 0,
        "bindings": 0,
    }
    assert records(store) == {
        "vhost": [(("/",), {"name": "/", "description": "Default virtual host", "tags": []})]
    }
    host = broker.vhost("/")
    assert host is not None and "amq.topic" in host.exchanges


def test_durable_exchange_is_recorded_and_forgotten_transient_never(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    s = connect(stored_broker(store, clock)).session
    s.declare_exchange("dx", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    s.declare_exchange("tx", "fanout")
    s.declare_exchange("dx", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    assert records(store)["exchange"] == [
        (
            ("/", "dx"),
            {
                "name": "dx",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {"alternate-exchange": "ae"},
            },
        )
    ]
    s.delete_exchange("dx")
    s.delete_exchange("tx")
    assert records(store) == {
        "vhost": [(("/",), {"name": "/", "description": "Default virtual host", "tags": []})]
    }


def test_durable_queue_is_recorded_with_every_argument_type(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    s = connect(stored_broker(store, clock)).session
    arguments = {
        "x-max-length": 10,
        "x-dead-letter-exchange": "dlx",
        "flag": True,
        "raw": b"\x00\xff",
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "price": Decimal("1.25"),
        "table": {"$odd": [1, "two", None, 2.5]},
    }
    s.declare_queue("dq", durable=True, auto_delete=True, arguments=arguments)
    s.declare_queue("tq")
    s.declare_queue("xq", durable=True, exclusive=True)
    assert records(store)["queue"] == [
        (
            ("/", "dq"),
            {"name": "dq", "durable": True, "auto_delete": True, "arguments": arguments},
        )
    ]
    assert s.delete_queue("dq") == 0
    assert "queue" not in records(store)


def test_bindings_are_recorded_only_between_durable_objects(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    s = connect(stored_broker(store, clock)).session
    s.declare_exchange("dx", "headers", durable=True)
    s.declare_exchange("dx2", "direct", durable=True)
    s.declare_exchange("tx", "direct")
    s.declare_queue("dq", durable=True)
    s.declare_queue("tq")
    headers = {"x-match": "any", "k": b"v"}
    s.bind_queue("dq", "dx", "", headers)
    s.bind_queue("dq", "amq.topic", "a.#")
    s.bind_queue("tq", "dx2", "t")
    s.bind_queue("dq", "tx", "t")
    s.bind_exchange("dx2", "dx", "", {"x-match": "all"})
    s.bind_exchange("tx", "dx2", "t")
    assert records(store)["binding"] == [
        (("/", "amq.topic", "queue", "dq", "a.#", args_id({})), {"arguments": {}}),
        (
            ("/", "dx", "exchange", "dx2", "", args_id({"x-match": "all"})),
            {"arguments": {"x-match": "all"}},
        ),
        (("/", "dx", "queue", "dq", "", args_id(headers)), {"arguments": headers}),
    ]
    s.unbind_queue("dq", "dx", "", headers)
    s.unbind_exchange("dx2", "dx", "", {"x-match": "all"})
    assert records(store)["binding"] == [
        (("/", "amq.topic", "queue", "dq", "a.#", args_id({})), {"arguments": {}}),
    ]


def test_args_id_is_stable_and_tells_types_apart() -> None:
    assert args_id({"a": 1, "b": [1, {"y": 2, "x": 1}]}) == args_id(
        {"b": [1, {"x": 1, "y": 2}], "a": 1}
    )
    ids = {args_id(value) for value in ({}, {"a": 1}, {"a": True}, {"a": "1"}, {"a": b"1"})}
    assert (len(ids), {len(i) for i in ids}) == (5, {32})


def test_deleting_queue_or_exchange_forgets_their_bindings(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    s = connect(stored_broker(store, clock)).session
    s.declare_exchange("a", "direct", durable=True)
    s.declare_exchange("b", "direct", durable=True)
    s.declare_queue("q", durable=True)
    s.bind_queue("q", "a", "k")
    s.bind_queue("q", "b", "k")
    s.bind_exchange("b", "a", "k")
    s.delete_queue("q")
    assert [key for key, _ in records(store)["binding"]] == [
        ("/", "a", "exchange", "b", "k", args_id({}))
    ]
    s.delete_exchange("b")
    assert [key for key, _ in records(store)["exchange"]] == [("/", "a")]
    assert "binding" not in records(store)


def test_auto_delete_and_expired_durable_queues_are_forgotten(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    broker = stored_broker(store, clock)
    s = connect(broker).session
    s.declare_queue("ad", durable=True, auto_delete=True)
    s.declare_queue("exp", durable=True, arguments={"x-expires": 1000})
    s.declare_queue("kept", durable=True)
    s.consume("ad", "c")
    s.cancel("c")
    clock.advance(1.5)
    broker.tick()
    assert [key for key, _ in records(store)["queue"]] == [("/", "kept")]


def test_auto_delete_exchange_is_forgotten_with_its_last_binding(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    s = connect(stored_broker(store, clock)).session
    s.declare_exchange("ax", "fanout", durable=True, auto_delete=True)
    s.declare_queue("q", durable=True)
    s.bind_queue("q", "ax", "")
    s.delete_queue("q")
    assert records(store) == {
        "vhost": [(("/",), {"name": "/", "description": "Default virtual host", "tags": []})]
    }


def test_vhosts_are_recorded_and_deleting_one_forgets_all_it_held(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    broker = stored_broker(store, clock)
    broker.add_vhost("other")
    connection = broker.connect("other", ClientInfo("amqp091", "127.0.0.1:2", user="guest"))
    s = connection.open_session(RecordingSink())
    s.declare_exchange("x", "topic", durable=True)
    s.declare_queue("q", durable=True)
    s.bind_queue("q", "x", "#")
    s.bind_queue("q", "amq.direct", "k")
    assert [key for key, _ in records(store)["vhost"]] == [("/",), ("other",)]
    broker.delete_vhost("other")
    assert records(store) == {
        "vhost": [(("/",), {"name": "/", "description": "Default virtual host", "tags": []})]
    }


def test_restore_rebuilds_equal_topology_without_writing(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    before = stored_broker(store, clock)
    before.add_vhost("v2")
    s = connect(before).session
    s.declare_exchange("dx", "topic", durable=True, arguments={"alternate-exchange": "ae"})
    s.declare_exchange("ae", "fanout", durable=True, internal=True)
    s.declare_exchange("hx", "headers", durable=True, auto_delete=True)
    s.declare_queue("dq", durable=True, arguments={"x-max-length": 2, "x-overflow": "drop-head"})
    s.declare_queue("dlq", durable=True, arguments={"x-expires": 60_000})
    s.declare_queue("pq", durable=True, arguments={"x-max-priority": 5})
    s.bind_queue("dq", "dx", "a.*")
    s.bind_queue("dlq", "ae", "")
    s.bind_queue("pq", "hx", "", {"x-match": "all", "n": 1})
    s.bind_exchange("ae", "dx", "b.#")
    s.bind_queue("dq", "amq.fanout", "")
    snapshot = records(store)

    after = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, metadata=store)
    assert after.restore() == {
        "vhosts": 2,
        "policies": 0,
        "exchanges": 3,
        "queues": 3,
        "bindings": 5,
    }
    assert records(store) == snapshot
    assert topology(after) == topology(before)
    assert topology(after, "v2") == topology(before, "v2")
    r = connect(after).session
    for body, key in (("1", "a.x"), ("2", "b.y"), ("3", "c")):
        r.publish(msg(body, key, "dx"))
    assert (drain(r, "dq"), drain(r, "dlq")) == ([b"1"], [b"2", b"3"])


def test_restore_skips_a_binding_whose_queue_is_gone(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    stored_broker(store, clock)
    store.put("binding", ("/", "amq.direct", "queue", "gone", "k", args_id({})), {"arguments": {}})
    broker = Broker(clock=clock, metadata=store)
    assert broker.restore() == {
        "vhosts": 1,
        "policies": 0,
        "exchanges": 0,
        "queues": 0,
        "bindings": 0,
    }
    host = broker.vhost("/")
    assert host is not None and host.exchanges["amq.direct"].bindings_out == {}


def test_restore_refuses_an_unreadable_record_with_one_line(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    stored_broker(store, clock)
    store.put("exchange", ("/", "bad"), {"name": "bad"})
    with pytest.raises(StorageError) as exc:
        Broker(clock=clock, metadata=store).restore()
    assert str(exc.value) == (
        "rapidmq: the stored exchange record ('/', 'bad') is unreadable ('type' is missing); "
        "restore a backup or move the data dir away"
    )


def test_failed_write_refuses_the_operation_and_changes_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    metadata, messages = open_stores(str(tmp_path), "rocksdb")
    broker = stored_broker(metadata, clock)
    s = connect(broker).session
    s.declare_queue("dq", durable=True)
    messages.close()
    metadata.close()
    with pytest.raises(StorageError) as cause:
        metadata.put("queue", ("/", "new"), {})
    with pytest.raises(StorageFailed) as exc:
        s.declare_queue("new", durable=True)
    detail = str(cause.value).removeprefix("rapidmq: ")
    assert (exc.value.scope, exc.value.text) == (
        "connection",
        f"cannot record queue 'new' in vhost '/': {detail}",
    )
    with pytest.raises(StorageFailed):
        s.delete_queue("dq")
    with pytest.raises(StorageFailed):
        s.declare_exchange("dx", "direct", durable=True)
    s.declare_queue("transient")
    host = broker.vhost("/")
    assert host is not None
    assert (sorted(host.queues), "dx" in host.exchanges) == (["dq", "transient"], False)


def test_users_are_recorded_and_restored(store: MemoryMetadataStore) -> None:
    users = UserStore(metadata=store)
    assert users.restore() == 0
    users.add_user("alice", "secret", tags=("monitoring",))
    users.add_user("bob", "pw")
    users.delete_user("bob")
    [(key, value)] = records(store)["user"]
    assert (key, value["name"], value["tags"]) == (("alice",), "alice", ["monitoring"])
    assert check_password("secret", value["password_hash"])
    restored = UserStore(metadata=store)
    assert restored.restore() == 1
    assert list(restored) == list(users)
    assert restored.authenticate("alice", "secret") is not None
