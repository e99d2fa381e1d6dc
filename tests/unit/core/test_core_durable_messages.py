"""Persistent messages of durable queues in a message store: what is added, marked, removed."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import WALL_CLOCK_S, Client, FakeClock, connect, msg
from pamqp import body as pamqp_body
from pamqp import commands, frame
from pamqp import header as pamqp_header
from pamqp.commands import Basic

from rapidmq.auth.users import UserStore
from rapidmq.core import Broker, Message, Properties
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.storage.memory import MemoryMessageStore

CODEC = MessageCodec(encode_properties, decode_properties)
Stored = list[tuple[str, int, bytes, bool]]


@pytest.fixture
def persist() -> Persistence:
    return Persistence(MemoryMessageStore(), CODEC)


@pytest.fixture
def broker(clock: FakeClock, persist: Persistence) -> Broker:
    return Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, persistence=persist)


def stored(persist: Persistence) -> Stored:
    """(queue, seq, body, delivered) of everything in the store, once committed."""
    persist.commit()
    return [
        (m.queue[1], m.seq, CODEC.decode(m.data).body, m.delivered) for m in persist.store.recover()
    ]


def p(body: str, routing_key: str = "q", **properties: Any) -> Message:
    return msg(body, routing_key, delivery_mode=2, **properties)


def test_persistent_message_to_durable_queue_is_stored_until_acked(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_queue("q", durable=True)
    assert s.publish(p("one")).batch == 1
    assert s.publish(msg("transient")).batch is None
    assert stored(persist) == [("q", 1, b"one", False)]
    assert s.publish(p("two")).batch == 2
    s.consume("q", "c")
    assert stored(persist) == [("q", 1, b"one", True), ("q", 3, b"two", True)]
    s.ack(1)
    assert stored(persist) == [("q", 3, b"two", True)]
    s.ack(3, multiple=True)
    assert stored(persist) == []


def test_transient_messages_and_non_durable_queues_never_touch_the_store(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_queue("q")
    s.declare_queue("d", durable=True)
    assert s.publish(p("to a transient queue")).batch is None
    assert s.publish(msg("transient", "d")).batch is None
    assert (persist.pending, stored(persist)) == (False, [])


def test_fanout_stores_once_per_durable_queue_in_one_batch(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_exchange("fan", "fanout")
    for name, durable in (("a", True), ("b", True), ("t", False)):
        s.declare_queue(name, durable=durable)
        s.bind_queue(name, "fan", "")
    result = s.publish(p("x", exchange="fan", routing_key=""))
    assert (result.routed, result.rejected, result.batch) == (True, False, 1)
    assert stored(persist) == [("a", 1, b"x", False), ("b", 1, b"x", False)]


def test_no_ack_deliveries_and_gets_remove_and_gets_with_ack_mark(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_queue("q", durable=True)
    for body in ("a", "b", "c"):
        s.publish(p(body))
    got = s.get("q")
    assert got is not None and got.message.body == b"a"
    assert s.get("q", no_ack=True) is not None
    assert stored(persist) == [("q", 1, b"a", True), ("q", 3, b"c", False)]
    s.consume("q", "c", no_ack=True)
    s.publish(p("straight through"))
    assert stored(persist) == [("q", 1, b"a", True)]


def test_requeue_keeps_reject_removes_and_dead_lettering_adds_to_the_durable_target(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_exchange("dlx", "fanout")
    s.declare_queue("dead", durable=True)
    s.bind_queue("dead", "dlx", "")
    s.declare_queue("q", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    s.publish(p("a"))
    s.publish(p("b"))
    first, second = s.get("q"), s.get("q")
    assert first is not None and second is not None
    s.reject(first.delivery_tag, requeue=True)
    assert stored(persist) == [("q", 1, b"a", True), ("q", 2, b"b", True)]
    s.reject(second.delivery_tag, requeue=False)
    assert stored(persist) == [("dead", 1, b"b", False), ("q", 1, b"a", True)]
    again = s.get("q")
    assert again is not None and again.redelivered
    s.reject(again.delivery_tag, requeue=False)
    assert [(q, seq, body) for q, seq, body, _ in stored(persist)] == [
        ("dead", 1, b"b"),
        ("dead", 2, b"a"),
    ]


def test_expiry_and_max_length_remove_from_the_store(
    client: Client, broker: Broker, clock: FakeClock, persist: Persistence
) -> None:
    s = client.session
    s.declare_queue("ttl", durable=True, arguments={"x-message-ttl": 1000})
    s.declare_queue("short", durable=True, arguments={"x-max-length": 2})
    s.publish(p("expires", "ttl"))
    for body in ("1", "2", "3"):
        s.publish(p(body, "short"))
    assert stored(persist) == [
        ("short", 2, b"2", False),
        ("short", 3, b"3", False),
        ("ttl", 1, b"expires", False),
    ]
    clock.advance(1.5)
    broker.tick()
    assert stored(persist) == [("short", 2, b"2", False), ("short", 3, b"3", False)]


def test_purge_keeps_unacked_and_delete_drops_everything(
    client: Client, persist: Persistence
) -> None:
    s = client.session
    s.declare_queue("q", durable=True)
    for body in ("a", "b", "c"):
        s.publish(p(body))
    unacked = s.get("q")
    assert unacked is not None
    assert s.purge_queue("q") == 2
    assert stored(persist) == [("q", 1, b"a", True)]
    s.ack(unacked.delivery_tag)
    s.publish(p("d"))
    assert s.purge_queue("q") == 1
    assert stored(persist) == []
    s.publish(p("e"))
    held = s.get("q")
    assert held is not None
    s.delete_queue("q")
    s.declare_queue("q", durable=True)
    s.publish(p("new"))
    s.ack(held.delivery_tag)  # the old queue's ack must not touch the new queue's seq 1
    assert stored(persist) == [("q", 1, b"new", False)]
    stats = s.vhost.queues["q"].statistics()
    assert (stats["messages_persistent"], stats["message_bytes_persistent"]) == (
        1,
        len(CODEC.encode(p("new"))),
    )


def test_recovery_rebuilds_queues_in_order_with_redelivered_flags(
    clock: FakeClock, persist: Persistence
) -> None:
    first = Broker(clock=clock, persistence=persist)
    s = connect(first).session
    s.declare_queue("q", durable=True, arguments={"x-max-priority": 3})
    s.declare_queue("gone", durable=True)
    s.publish(p("gone", "gone"))
    for body, priority in (("a", 1), ("b", 3), ("c", 1), ("d", 0)):
        s.publish(p(body, priority=priority, headers={"n": body}))
    assert s.get("q") is not None  # b, delivered and never acked
    persist.commit()

    second = Broker(clock=clock, persistence=persist)
    s2 = connect(second).session
    s2.declare_queue("q", durable=True, arguments={"x-max-priority": 3})
    assert second.recover_messages() == {"messages": 4, "queues": 1, "dropped": 1}
    got = []
    while (result := s2.get("q", no_ack=True)) is not None:
        got.append((result.message.body, result.redelivered, result.message.properties.headers))
    assert got == [
        (b"b", True, {"n": "b"}),
        (b"a", False, {"n": "a"}),
        (b"c", False, {"n": "c"}),
        (b"d", False, {"n": "d"}),
    ]
    assert stored(persist) == []  # the no-ack gets removed them, "gone" was dropped
    s2.publish(p("after"))
    assert stored(persist) == [("q", 5, b"after", False)]  # seqs go on after the recovered


def test_codec_round_trips_properties_and_json_able_annotations() -> None:
    props = Properties(content_type="text/plain", delivery_mode=2, headers={"k": [1, "v"]})
    annotations = {"qos": 1, "user_properties": (("a", "1"),), "published_at": 5.0}
    message = Message("amq.topic", "a.b", b"\x00body", props, None, annotations)
    back = CODEC.decode(CODEC.encode(message))
    assert (back.exchange, back.routing_key, back.body, back.properties, back.annotations) == (
        "amq.topic",
        "a.b",
        b"\x00body",
        props,
        {"qos": 1, "user_properties": (("a", "1"),)},
    )
    with pytest.raises(ValueError):
        CODEC.decode(CODEC.encode(message)[:-1])


# -- publisher confirms wait for the sync -----------------------------------------------------


def _frames(data: bytes) -> list[tuple[int, Any]]:
    out = []
    while data:
        consumed, channel, value = frame.unmarshal(data)
        out.append((channel, value))
        data = data[consumed:]
    return out


def _publish(routing_key: str, body: bytes, delivery_mode: int | None, channel: int = 1) -> bytes:
    props = commands.Basic.Properties(delivery_mode=delivery_mode)
    return (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel)
        + frame.marshal(pamqp_header.ContentHeader(0, len(body), props), channel)
        + frame.marshal(pamqp_body.ContentBody(body), channel)
    )


def _open_confirm_channel(broker: Broker) -> AMQPConnection:
    users = UserStore()
    users.add_user("guest", "guest")
    conn = AMQPConnection(broker, users, AMQPSettings(), ("127.0.0.1", 1), lambda: None)
    conn.data_received(b"AMQP\x00\x00\x09\x01")
    conn.data_received(
        frame.marshal(
            commands.Connection.StartOk(
                client_properties={}, mechanism="PLAIN", response="\0guest\0guest"
            ),
            0,
        )
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
        + frame.marshal(commands.Queue.Declare(queue="dq", durable=True), 1)
        + frame.marshal(commands.Confirm.Select(), 1)
    )
    conn.data_to_send()
    return conn


def _confirms(conn: AMQPConnection) -> list[tuple[str, int, bool]]:
    return [
        (type(m).__name__, m.delivery_tag, m.multiple)
        for _, m in _frames(conn.data_to_send())
        if isinstance(m, Basic.Ack | Basic.Nack)
    ]


def test_confirms_of_stored_publishes_wait_for_their_batch_and_stay_in_order(
    broker: Broker, persist: Persistence
) -> None:
    conn = _open_confirm_channel(broker)
    conn.data_received(_publish("dq", b"t1", None) + _publish("dq", b"t2", None))
    assert _confirms(conn) == [("Ack", 2, True)]
    conn.data_received(
        _publish("dq", b"p3", 2) + _publish("dq", b"t4", None) + _publish("dq", b"p5", 2)
    )
    assert _confirms(conn) == []  # seq 3 waits for its batch, and so does everything after it
    batch = persist.commit()
    conn.data_received(_publish("dq", b"p6", 2))  # goes into the next batch
    assert _confirms(conn) == []
    persist.durable(batch)
    assert _confirms(conn) == [("Ack", 5, True)]
    persist.durable(persist.commit())
    assert _confirms(conn) == [("Ack", 6, False)]
    assert persist.statistics()["waiters"] == 0


def test_tx_commit_of_a_persistent_publish_answers_after_the_sync(
    broker: Broker, persist: Persistence
) -> None:
    conn = _open_confirm_channel(broker)
    conn.data_received(frame.marshal(commands.Channel.Open(), 2))
    conn.data_received(frame.marshal(commands.Tx.Select(), 2) + _publish("dq", b"p", 2, channel=2))
    conn.data_to_send()
    conn.data_received(frame.marshal(commands.Tx.Commit(), 2))
    assert [type(m) for _, m in _frames(conn.data_to_send())] == []
    persist.durable(persist.commit())
    assert [(ch, type(m)) for ch, m in _frames(conn.data_to_send())] == [(2, commands.Tx.CommitOk)]
