"""Permissions enforced on real pika and paho clients: what the patterns allow, and refusals."""

from __future__ import annotations

import logging
import queue
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import paho.mqtt.client as paho
import pika
import pika.adapters.blocking_connection
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.auth.permissions import Permission, TopicPermission
from rapidmq.core.api import ClientInfo, NoDeliveries
from rapidmq.core.errors import AccessRefused
from rapidmq.protocols.mqtt.packets import MQTT_3_1_1, MQTT_5, Will
from rapidmq.protocols.mqtt.properties import MQTTProperties
from rapidmq.server import Server
from tests.integration.conftest import serving
from tests.integration.mqtt_fixtures import mqtt_connect

pytestmark = pytest.mark.anyio

TIMEOUT_S = 5.0
PASSWORD = "secret"

Channel = pika.adapters.blocking_connection.BlockingChannel


@pytest.fixture
async def server(anyio_backend: str) -> AsyncIterator[Server]:
    async with serving(mqtt_port=0) as srv:
        srv.users.add_user("alice", PASSWORD)
        yield srv


def port_of(server: Server, name: str) -> int:
    port = server.ports[name]
    assert port is not None
    return port


def refused(kind: str, name: str, user: str = "alice", vhost: str = "/") -> str:
    return (
        f"403 ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' "
        f"refused for user '{user}'"
    )


def amqp(port: int, op: Callable[[Channel], Any], *, user: str = "alice", vhost: str = "/") -> str:
    """Run ``op`` on a fresh channel: "ok", or the channel error as "code text"."""
    params = pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, PASSWORD), connection_attempts=1
    )
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        try:
            op(channel)
            channel.basic_qos(prefetch_count=1)  # a round trip: an async refusal shows here
        except pika.exceptions.ChannelClosedByBroker as err:
            return f"{err.reply_code} {err.reply_text}"
        return "ok"
    finally:
        if connection.is_open:
            connection.close()


async def run_amqp(server: Server, op: Callable[[Channel], Any], **kwargs: Any) -> str:
    port = port_of(server, "amqp")
    return await anyio.to_thread.run_sync(lambda: amqp(port, op, **kwargs))


def prepare(server: Server) -> None:
    """Resources of two tenants: alice's (``user-``) and someone else's (``other-``)."""
    # As the broker itself: a connection without a user is not checked.
    connection = server.broker.connect("/", ClientInfo("amqp091", "test", user=""))
    session = connection.open_session(NoDeliveries())
    for name in ("user-x", "other-x"):
        session.declare_exchange(name, "direct")
    for name in ("user-q", "other-q"):
        session.declare_queue(name)
    connection.close()


async def test_a_restricted_user_can_do_exactly_what_the_patterns_allow(server: Server) -> None:
    prepare(server)
    server.permissions.set(Permission("alice", "/", "^user-", "^user-", "^user-"))

    def declare_q(name: str) -> Callable[[Channel], Any]:
        return lambda ch: ch.queue_declare(name)

    got: list[bytes] = []
    cases: list[tuple[Callable[[Channel], Any], str]] = [
        (declare_q("user-new"), "ok"),
        (declare_q("other-new"), refused("queue", "other-new")),
        (lambda ch: ch.queue_declare("other-q", passive=True), "ok"),
        (lambda ch: ch.exchange_declare("user-nx", "fanout"), "ok"),
        (lambda ch: ch.exchange_declare("other-nx", "fanout"), refused("exchange", "other-nx")),
        (lambda ch: ch.queue_bind("user-q", "user-x", "k"), "ok"),
        (lambda ch: ch.queue_bind("other-q", "user-x", "k"), refused("queue", "other-q")),
        (lambda ch: ch.queue_bind("user-q", "other-x", "k"), refused("exchange", "other-x")),
        (lambda ch: ch.basic_publish("user-x", "k", b"m"), "ok"),
        (lambda ch: ch.basic_publish("", "user-q", b"m"), refused("exchange", "amq.default")),
        (lambda ch: ch.basic_publish("other-x", "k", b"m"), refused("exchange", "other-x")),
        (lambda ch: got.append(ch.basic_get("user-q", auto_ack=True)[2]), "ok"),
        (lambda ch: ch.basic_get("other-q"), refused("queue", "other-q")),
        (lambda ch: ch.basic_consume("user-q", lambda *a: None), "ok"),
        (lambda ch: ch.basic_consume("other-q", lambda *a: None), refused("queue", "other-q")),
        (lambda ch: ch.queue_purge("other-q"), refused("queue", "other-q")),
        (lambda ch: ch.queue_delete("other-q"), refused("queue", "other-q")),
        (lambda ch: ch.exchange_delete("other-x"), refused("exchange", "other-x")),
        (lambda ch: ch.queue_delete("user-new"), "ok"),
    ]
    outcomes = [await run_amqp(server, op) for op, _ in cases]
    assert outcomes == [expected for _, expected in cases]
    vhost = server.broker.vhost("/")
    assert vhost is not None
    assert "other-new" not in vhost.queues and "other-nx" not in vhost.exchanges
    assert "other-q" in vhost.queues  # the refused delete deleted nothing
    assert got == [b"m"]  # the one allowed publish


async def test_no_permission_in_the_vhost_refuses_the_connection_with_530(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rapidmq.audit")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        await run_amqp(server, lambda ch: None)
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'alice'\"" in str(info.value)
    events = [r for r in caplog.records if getattr(r, "event", "") == "access.refused"]
    assert events and events[0].user == "alice"  # type: ignore[attr-defined]


async def test_changes_apply_to_an_open_connection_at_its_next_operation(server: Server) -> None:
    prepare(server)
    server.permissions.set(Permission("alice", "/"))
    port = port_of(server, "amqp")
    results: list[str] = []

    def scenario() -> None:
        params = pika.ConnectionParameters(
            "127.0.0.1", port, "/", pika.PlainCredentials("alice", PASSWORD)
        )
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            channel.queue_declare("user-q", passive=True)
            results.append("declared")
            server.permissions.set(Permission("alice", "/", ".*", ".*", "^$"))
            try:
                channel.basic_get("user-q")
            except pika.exceptions.ChannelClosedByBroker as err:
                results.append(f"{err.reply_code} {err.reply_text}")
            server.permissions.clear("alice", "/")
            channel = connection.channel()  # the connection stays open
            try:
                channel.queue_declare("user-q2")
            except pika.exceptions.ChannelClosedByBroker as err:
                results.append(f"{err.reply_code} {err.reply_text}")
            results.append("open" if connection.is_open else "closed")
        finally:
            if connection.is_open:
                connection.close()

    await anyio.to_thread.run_sync(scenario)
    assert results == [
        "declared",
        refused("queue", "user-q"),
        refused("queue", "user-q2"),
        "open",
    ]


async def test_topic_permissions_on_amq_topic_for_amqp(server: Server) -> None:
    prepare(server)
    server.permissions.set(Permission("alice", "/"))
    server.permissions.set_topic(
        TopicPermission("alice", "/", "amq.topic", "^{username}\\.", "^news\\.")
    )

    def topic(key: str) -> str:
        return (
            f"403 ACCESS_REFUSED - access to topic '{key}' in exchange "
            f"'amq.topic' in vhost '/' refused for user 'alice'"
        )

    cases: list[tuple[Callable[[Channel], Any], str]] = [
        (lambda ch: ch.basic_publish("amq.topic", "alice.x", b"m"), "ok"),
        (lambda ch: ch.basic_publish("amq.topic", "bob.x", b"m"), topic("bob.x")),
        (lambda ch: ch.queue_bind("user-q", "amq.topic", "news.#"), "ok"),
        (lambda ch: ch.queue_bind("user-q", "amq.topic", "alice.#"), topic("alice.#")),
        # Other exchanges, even of another type, are not narrowed.
        (lambda ch: ch.basic_publish("amq.direct", "bob.x", b"m"), "ok"),
    ]
    outcomes = [await run_amqp(server, op) for op, _ in cases]
    assert outcomes == [expected for _, expected in cases]


# -- MQTT ----------------------------------------------------------------------------


class Paho:
    """A paho client on its own network thread; what the server sends lands in ``events``."""

    def __init__(self, client_id: str, *, v5: bool, user: str = "alice") -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        self.client.username_pw_set(user, PASSWORD)
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.backlog: list[tuple[Any, ...]] = []
        c = self.client
        c.on_connect = lambda cl, ud, flags, rc, props: self.events.put(("connack", rc.value))
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self.events.put(
            ("suback", [r.value for r in rcs])
        )
        c.on_publish = lambda cl, ud, mid, rc, props: self.events.put(("puback", rc.value))
        c.on_disconnect = lambda cl, ud, flags, rc, props: self.events.put(("disconnect", rc.value))
        c.on_message = lambda cl, ud, m: self.events.put(("message", m.topic, m.payload, m.retain))

    def next(self, kind: str, timeout_s: float = TIMEOUT_S) -> tuple[Any, ...]:
        """The first event of ``kind``; events of other kinds wait for their turn."""
        for i, event in enumerate(self.backlog):
            if event[0] == kind:
                return self.backlog.pop(i)
        while True:
            event = self.events.get(timeout=timeout_s)
            if event[0] == kind:
                return event
            self.backlog.append(event)

    def connect(self, port: int) -> int:
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        return int(self.next("connack")[1])

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        self.client.subscribe([(f, qos) for f in filters])
        return list(self.next("suback")[1])

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_grants(server: Server) -> None:
    """Alice may use her own session queue and amq.topic, and only her own topics."""
    server.permissions.set(
        Permission(
            "alice",
            "/",
            "^mqtt-session-",
            "^(mqtt-session-.*|amq\\.topic)$",
            "^(mqtt-session-.*|amq\\.topic)$",
        )
    )
    server.permissions.set_topic(
        TopicPermission("alice", "/", "amq.topic", "^{username}\\.", "^{username}\\.")
    )


async def test_mqtt5_refusals_suback_puback_and_disconnect(server: Server) -> None:
    mqtt_grants(server)
    port = port_of(server, "mqtt")

    def scenario() -> list[Any]:
        seen: list[Any] = []
        client = Paho("alice-5", v5=True)
        try:
            seen.append(client.connect(port))
            seen.append(client.subscribe("alice/#", "bob/#"))
            client.client.publish("alice/ok", b"mine", qos=1)
            seen.append(client.next("puback")[1])
            seen.append(client.next("message")[1:3])
            client.client.publish("bob/x", b"not mine", qos=1)
            seen.append(client.next("puback")[1])
            client.client.publish("bob/x", b"not mine", qos=0)
            seen.append(client.next("disconnect")[1])
        finally:
            client.stop()
        return seen

    seen = await anyio.to_thread.run_sync(scenario)
    assert seen == [0, [1, 0x87], 0, ("alice/ok", b"mine"), 0x87, 0x87]


async def test_mqtt311_refusals_suback_0x80_and_a_refused_publish_disconnects(
    server: Server,
) -> None:
    mqtt_grants(server)
    port = port_of(server, "mqtt")

    def scenario(qos: int) -> list[Any]:
        seen: list[Any] = []
        client = Paho(f"alice-311-{qos}", v5=False)
        try:
            seen.append(client.connect(port))
            seen.append(client.subscribe("alice/#", "bob/#"))
            client.client.publish("bob/x", b"not mine", qos=qos)
            seen.append(client.next("disconnect")[0])
        finally:
            client.stop()
        return seen

    assert await anyio.to_thread.run_sync(scenario, 0) == [0, [1, 0x80], "disconnect"]
    assert await anyio.to_thread.run_sync(scenario, 1) == [0, [1, 0x80], "disconnect"]


async def test_mqtt_vhost_refusal_is_connack_5_and_0x87(server: Server) -> None:
    # alice has no permission in "/" at all.
    client, ack = await mqtt_connect(
        server, "c311", level=MQTT_3_1_1, username="alice", password=PASSWORD.encode()
    )
    await client.aclose()
    assert ack.reason_code == 5
    client, ack = await mqtt_connect(
        server, "c5", level=MQTT_5, username="alice", password=PASSWORD.encode()
    )
    await client.aclose()
    assert ack.reason_code == 0x87


async def test_retained_messages_reach_only_allowed_subscriptions(server: Server) -> None:
    mqtt_grants(server)
    port = port_of(server, "mqtt")
    server.permissions.set(Permission("guest", "/"))

    def scenario() -> list[Any]:
        publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="guest-pub")
        publisher.username_pw_set("guest", "guest")
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        try:
            for topic in ("alice/r", "bob/r"):
                publisher.publish(topic, topic.encode(), qos=1, retain=True).wait_for_publish(
                    TIMEOUT_S
                )
        finally:
            publisher.disconnect()
            publisher.loop_stop()
        seen: list[Any] = []
        client = Paho("alice-r", v5=True)
        try:
            client.connect(port)
            seen.append(client.subscribe("bob/#", "alice/#"))
            seen.append(client.next("message")[1:])
            try:
                seen.append(client.next("message", 0.5))
            except queue.Empty:
                seen.append("nothing more")
        finally:
            client.stop()
        return seen

    seen = await anyio.to_thread.run_sync(scenario)
    assert seen == [[0x87, 1], ("alice/r", b"alice/r", True), "nothing more"]


async def test_a_will_the_user_may_not_publish_is_refused_at_connect(server: Server) -> None:
    mqtt_grants(server)
    for level, code in ((MQTT_3_1_1, 5), (MQTT_5, 0x87)):
        client, ack = await mqtt_connect(
            server,
            f"alice-will-{level}",
            level=level,
            username="alice",
            password=PASSWORD.encode(),
            will=Will("bob/gone", b"bye"),
        )
        await client.aclose()
        assert ack.reason_code == code
        client, ack = await mqtt_connect(
            server,
            f"alice-own-will-{level}",
            level=level,
            username="alice",
            password=PASSWORD.encode(),
            will=Will("alice/gone", b"bye"),
        )
        await client.aclose()
        assert ack.reason_code == 0
    assert ("/", "alice-will-5") not in server.mqtt_state.sessions


async def test_a_resumed_session_acts_with_the_new_logins_permissions(server: Server) -> None:
    mqtt_grants(server)
    server.permissions.set(Permission("guest", "/"))
    # guest opens a persistent session, then alice resumes it under the same client id.
    client, ack = await mqtt_connect(
        server,
        "shared-id",
        level=MQTT_5,
        clean_start=False,
        username="guest",
        password=b"guest",
        properties=MQTTProperties(session_expiry_interval=300),
    )
    assert ack.reason_code == 0
    await client.aclose()
    client, ack = await mqtt_connect(
        server,
        "shared-id",
        level=MQTT_5,
        clean_start=False,
        username="alice",
        password=PASSWORD.encode(),
        properties=MQTTProperties(session_expiry_interval=300),
    )
    assert ack.reason_code == 0 and ack.session_present
    session = server.mqtt_state.sessions[("/", "shared-id")]
    assert session.core.access is not None
    with pytest.raises(AccessRefused):
        session.core_session.authorize_publish("amq.topic", "bob.x")
    session.core_session.authorize_publish("amq.topic", "alice.x")
    await client.aclose()
