"""The MQTT front end driven with bytes and no sockets: connections, sessions, delivery."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rapidmq.auth.backends import Authenticator, LoginRequest, LoginResult
from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.core.message import Message, Properties
from rapidmq.protocols.mqtt.codec import MQTTParser, encode
from rapidmq.protocols.mqtt.connection import MAX_HELD_PACKETS, MQTTConnection, MQTTSettings
from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    MQTTProperties,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from rapidmq.protocols.mqtt.state import MQTTState

#: What RapidMQ's CONNACK says by default: aliases are welcome, all else is the default.
V5_PROPS = MQTTProperties(topic_alias_maximum=65535)


@dataclass
class World:
    """One broker, user store and MQTT state, on a clock the test moves."""

    now: list[float] = field(default_factory=lambda: [100.0])
    settings: MQTTSettings = field(default_factory=MQTTSettings)

    def __post_init__(self) -> None:
        self.broker = Broker(clock=self.clock)
        self.users = UserStore.with_default_user()
        self.users.add_user("alice", "secret")
        self.state = MQTTState(self.broker, clock=self.clock)

    def clock(self) -> float:
        return self.now[0]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds
        self.state.tick(self.now[0])

    def client(self, level: int = MQTT_5, host: str = "127.0.0.1") -> Client:
        return Client(self, level, host)


class Client:
    """A client speaking bytes to one ``MQTTConnection``."""

    def __init__(self, world: World, level: int, host: str) -> None:
        self.world = world
        self.level = level
        self.conn = MQTTConnection(
            world.broker,
            world.users,
            world.state,
            world.settings,
            (host, 50000),
            lambda: None,
            clock=world.clock,
        )
        self.parser = MQTTParser(protocol_level=level)

    def send(self, *packets: Packet) -> list[Packet]:
        for packet in packets:
            self.conn.data_received(encode(packet, self.level))
        return self.received()

    def received(self) -> list[Packet]:
        return self.parser.receive_data(self.conn.data_to_send())

    def connect(self, client_id: str = "c1", **kwargs: object) -> list[Packet]:
        return self.send(Connect(self.level, client_id, **kwargs))  # type: ignore[arg-type]


def connected(world: World, client_id: str, level: int = MQTT_5, **kwargs: object) -> Client:
    client = world.client(level)
    assert client.connect(client_id, **kwargs) == [
        ConnAck(False, 0, V5_PROPS if level == MQTT_5 else None)
    ]
    return client


def sub(filter: str, qos: int = 0, **options: object) -> Subscription:
    return Subscription(filter, qos, **options)  # type: ignore[arg-type]


# -- CONNECT -----------------------------------------------------------------------------


def test_connect_v5_anonymous_gets_plain_connack() -> None:
    world = World()
    client = world.client()
    assert client.connect("c1") == [ConnAck(False, 0, V5_PROPS)]
    assert client.conn.user == "guest"
    assert client.conn.vhost == "/"


def test_connect_v5_empty_client_id_is_assigned_like_mosquitto() -> None:
    world = World()
    client = world.client()
    [ack] = client.connect("")
    assert isinstance(ack, ConnAck) and ack.reason_code == 0 and ack.properties is not None
    assigned = ack.properties.assigned_client_identifier
    assert assigned is not None and assigned.startswith("auto-") and len(assigned) == 41
    assert client.conn.client_id == assigned


@pytest.mark.parametrize(
    ("level", "clean", "code"),
    [(MQTT_3_1_1, True, 0), (MQTT_3_1_1, False, 2), (MQTT_3_1, True, 2), (MQTT_3_1, False, 2)],
)
def test_connect_empty_client_id_before_v5_as_mosquitto(level: int, clean: bool, code: int) -> None:
    world = World()
    client = world.client(level)
    name = "MQIsdp" if level == MQTT_3_1 else "MQTT"
    replies = client.send(Connect(level, "", clean_start=clean, protocol_name=name))
    assert replies == [ConnAck(False, code)]
    assert client.conn.closed == (code != 0)


def test_connect_v31_accepts_client_ids_over_23_characters_as_mosquitto() -> None:
    world = World()
    client = world.client(MQTT_3_1)
    assert client.send(Connect(MQTT_3_1, "x" * 40, protocol_name="MQIsdp")) == [ConnAck(False, 0)]


@pytest.mark.parametrize(
    ("level", "username", "password", "host", "code"),
    [
        (MQTT_5, "alice", b"wrong", "127.0.0.1", 0x87),
        (MQTT_3_1_1, "alice", b"wrong", "127.0.0.1", 5),
        (MQTT_5, "alice", None, "127.0.0.1", 0x87),
        (MQTT_5, "guest", b"guest", "203.0.113.5", 0x87),
        (MQTT_3_1_1, "guest", b"guest", "203.0.113.5", 5),
        (MQTT_5, "nohost:alice", b"secret", "127.0.0.1", 0x87),
        (MQTT_3_1_1, "nohost:alice", b"secret", "127.0.0.1", 5),
        (MQTT_5, "alice", b"secret", "203.0.113.5", 0),
        (MQTT_5, "/:alice", b"secret", "127.0.0.1", 0),
    ],
)
def test_connect_login(
    level: int, username: str, password: bytes | None, host: str, code: int
) -> None:
    world = World()
    client = world.client(level, host)
    [ack] = client.send(Connect(level, "c1", username=username, password=password))
    assert isinstance(ack, ConnAck)
    assert ack.reason_code == code
    assert client.conn.closed == (code != 0)
    if code == 0:
        assert (client.conn.user, client.conn.vhost) == ("alice", "/")


def test_connect_anonymous_refused_when_disabled() -> None:
    world = World(settings=MQTTSettings(allow_anonymous=False))
    client = world.client()
    [ack] = client.connect("c1")
    assert isinstance(ack, ConnAck) and ack.reason_code == 0x87
    assert client.conn.closed


def test_connect_with_authentication_method_is_bad_authentication_method() -> None:
    world = World()
    client = world.client()
    [ack] = client.connect("c1", properties=MQTTProperties(authentication_method="SCRAM-SHA-1"))
    assert isinstance(ack, ConnAck) and ack.reason_code == 0x8C
    assert client.conn.closed


def test_connack_v5_properties_follow_settings() -> None:
    world = World(
        settings=MQTTSettings(
            receive_maximum=20, topic_alias_maximum=10, max_keep_alive_s=60, max_packet_size=1000
        )
    )
    client = world.client()
    assert client.connect("c1", keep_alive=120) == [
        ConnAck(
            False,
            0,
            MQTTProperties(
                receive_maximum=20,
                topic_alias_maximum=10,
                server_keep_alive=60,
                maximum_packet_size=1000,
            ),
        )
    ]
    assert client.conn.keep_alive_s == 60


def test_first_packet_not_connect_closes() -> None:
    world = World()
    client = world.client()
    client.conn.data_received(encode(PingReq(), MQTT_5))
    assert client.received() == []
    assert client.conn.closed


def test_second_connect_closes_with_protocol_error() -> None:
    world = World()
    client = connected(world, "c1")
    assert client.send(Connect(MQTT_5, "c1")) == [
        Disconnect(0x82, MQTTProperties(reason_string="second CONNECT on the connection"))
    ]
    assert client.conn.closed


def test_connect_timeout_closes() -> None:
    world = World()
    client = world.client()
    assert client.conn.handle_timer(world.now[0]) == pytest.approx(10.0)
    assert client.conn.handle_timer(world.now[0] + 10.0) == 3600.0
    assert client.conn.closed


def test_connect_asks_the_transport_to_retime_for_keep_alive() -> None:
    world = World()
    client = world.client()
    retimed: list[None] = []
    client.conn.retime = lambda: retimed.append(None)
    assert client.conn.handle_timer(world.now[0]) == pytest.approx(10.0)
    client.send(Connect(MQTT_5, "c1", keep_alive=4))
    assert retimed == [None]
    assert client.conn.handle_timer(world.now[0]) == pytest.approx(6.0)


def test_ping() -> None:
    world = World()
    client = connected(world, "c1")
    assert client.send(PingReq()) == [PingResp()]


def test_keep_alive_timeout_v5_sends_disconnect_0x8d_and_publishes_will() -> None:
    world = World()
    watcher = connected(world, "w")
    watcher.send(Subscribe(1, (sub("will/#"),)))
    client = connected(world, "c1", keep_alive=10, will=Will("will/c1", b"gone"))
    assert client.conn.handle_timer(world.now[0] + 14.9) == pytest.approx(0.1)
    assert client.received() == []
    client.conn.handle_timer(world.now[0] + 15.0)
    assert client.received() == [Disconnect(0x8D)]
    assert client.conn.closed
    assert watcher.received() == [Publish("will/c1", b"gone")]


def test_keep_alive_timeout_v311_closes_without_disconnect() -> None:
    world = World()
    client = connected(world, "c1", MQTT_3_1_1, keep_alive=4)
    client.conn.handle_timer(world.now[0] + 6.0)
    assert client.received() == []
    assert client.conn.closed


# -- publish and subscribe ---------------------------------------------------------------


def test_qos0_publish_reaches_subscriber() -> None:
    world = World()
    subscriber = connected(world, "s")
    assert subscriber.send(Subscribe(1, (sub("a/+"),))) == [SubAck(1, (0,))]
    publisher = connected(world, "p")
    assert publisher.send(Publish("a/b", b"hi")) == []
    assert subscriber.received() == [Publish("a/b", b"hi")]


def test_qos1_both_ways_with_puback_and_no_matching_subscribers() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a/#", 1),)))
    publisher = connected(world, "p")
    assert publisher.send(Publish("a/b", b"1", qos=1, packet_id=7)) == [PubAck(7)]
    assert publisher.send(Publish("x/y", b"2", qos=1, packet_id=8)) == [PubAck(8, 0x10)]
    assert subscriber.received() == [Publish("a/b", b"1", qos=1, packet_id=1)]
    queue = world.broker.vhost("/").queues["mqtt-session-s"]  # type: ignore[union-attr]
    assert (queue.ready_count, queue.unacked_count) == (0, 1)
    assert subscriber.send(PubAck(1)) == []
    assert (queue.ready_count, queue.unacked_count) == (0, 0)


def test_effective_qos_is_min_of_publish_and_subscription() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a", 1),)))
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"q2", qos=2, packet_id=1), PubRel(1))
    publisher.send(Publish("a", b"q0"))
    assert subscriber.received() == [
        Publish("a", b"q2", qos=1, packet_id=1),
        Publish("a", b"q0"),
    ]


def test_qos2_inbound_exactly_once() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a"),)))
    publisher = connected(world, "p")
    assert publisher.send(Publish("a", b"x", qos=2, packet_id=5)) == [PubRec(5)]
    assert publisher.send(Publish("a", b"x", qos=2, dup=True, packet_id=5)) == [PubRec(5)]
    # Held until PUBREL (as Mosquitto), then routed exactly once.
    assert subscriber.received() == []
    assert publisher.send(PubRel(5)) == [PubComp(5)]
    assert subscriber.received() == [Publish("a", b"x")]
    assert publisher.send(PubRel(5)) == [PubComp(5, 0x92)]
    assert subscriber.received() == []


def test_qos2_outbound_flow_acks_core_delivery_on_pubcomp() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a", 2),)))
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"x", qos=2, packet_id=9), PubRel(9))
    assert subscriber.received() == [Publish("a", b"x", qos=2, packet_id=1)]
    assert subscriber.send(PubRec(1)) == [PubRel(1)]
    queue = world.broker.vhost("/").queues["mqtt-session-s"]  # type: ignore[union-attr]
    assert queue.unacked_count == 1
    assert subscriber.send(PubComp(1)) == []
    assert queue.unacked_count == 0
    assert subscriber.send(PubRec(42)) == [PubRel(42, 0x92)]


def test_receive_maximum_limits_qos1_in_flight_to_client() -> None:
    world = World()
    subscriber = connected(world, "s", properties=MQTTProperties(receive_maximum=2))
    subscriber.send(Subscribe(1, (sub("a", 1),)))
    publisher = connected(world, "p")
    for i in range(4):
        publisher.send(Publish("a", bytes([i]), qos=1, packet_id=i + 1))
    assert subscriber.received() == [
        Publish("a", b"\x00", qos=1, packet_id=1),
        Publish("a", b"\x01", qos=1, packet_id=2),
    ]
    assert subscriber.send(PubAck(1)) == [Publish("a", b"\x02", qos=1, packet_id=3)]


def test_client_exceeding_our_receive_maximum_is_disconnected_0x93() -> None:
    world = World(settings=MQTTSettings(receive_maximum=1))
    publisher = world.client()
    publisher.connect("p")
    assert publisher.send(Publish("a", b"1", qos=2, packet_id=1)) == [PubRec(1)]
    assert publisher.send(Publish("a", b"2", qos=2, packet_id=2)) == [
        Disconnect(0x93, MQTTProperties(reason_string="receive maximum exceeded"))
    ]


def test_many_qos0_messages_are_delivered_without_recursion() -> None:
    world = World()
    publisher = connected(world, "p")
    subscriber = connected(world, "s", properties=MQTTProperties(receive_maximum=5))
    subscriber.send(Subscribe(1, (sub("a"),)))
    subscriber.conn.session.detach()  # let messages pile up in the queue
    for i in range(3000):
        publisher.send(Publish("a", str(i).encode()))
    subscriber.conn.session.attach(subscriber.conn, MQTT_5, 5)
    received = subscriber.received()
    assert [p.payload for p in received] == [str(i).encode() for i in range(3000)]  # type: ignore[union-attr]


def test_overlapping_subscriptions_each_get_a_copy_as_mosquitto_sends_them() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(
        Subscribe(1, (sub("a/+", 0),), MQTTProperties(subscription_identifiers=[3])),
        Subscribe(2, (sub("a/#", 1),), MQTTProperties(subscription_identifiers=[5])),
    )
    subscriber.received()
    publisher = connected(world, "p")
    publisher.send(Publish("a/b", b"x", qos=1, packet_id=1))
    assert subscriber.received() == [
        Publish("a/b", b"x", qos=0, properties=MQTTProperties(subscription_identifiers=[3])),
        Publish(
            "a/b",
            b"x",
            qos=1,
            packet_id=1,
            properties=MQTTProperties(subscription_identifiers=[5]),
        ),
    ]


def test_no_local_drops_own_messages() -> None:
    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("a", no_local=True),)))
    client.send(Publish("a", b"mine"))
    other = connected(world, "o")
    other.send(Publish("a", b"theirs"))
    assert client.received() == [Publish("a", b"theirs")]


def test_dollar_topics_are_not_matched_by_leading_wildcards() -> None:
    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("#"), sub("+/x"), sub("$SYS/#"))))
    publisher = connected(world, "p")
    publisher.send(Publish("$SYS/x", b"sys"), Publish("a/x", b"a"))
    # "a/x" matches both "#" and "+/x": one copy each.
    assert client.received() == [
        Publish("$SYS/x", b"sys"),
        Publish("a/x", b"a"),
        Publish("a/x", b"a"),
    ]


def test_malformed_filter_closes_the_connection_as_mosquitto_does() -> None:
    world = World()
    v5 = connected(world, "c5")
    assert v5.send(Subscribe(1, (sub("a/#/b"), sub("ok", 2)))) == [
        Disconnect(0x81, MQTTProperties(reason_string="'#' is not the last level of 'a/#/b'"))
    ]
    assert v5.conn.closed
    v4 = connected(world, "c4", MQTT_3_1_1)
    assert v4.send(Subscribe(1, (sub("a+"),))) == []
    assert v4.conn.closed


def test_bad_topic_name_in_publish_disconnects_0x90() -> None:
    world = World()
    client = connected(world, "c")
    assert client.send(Publish("a/+", b"x")) == [
        Disconnect(0x90, MQTTProperties(reason_string="topic name 'a/+' contains a wildcard"))
    ]
    assert client.conn.closed


def test_unsubscribe_v5_reports_missing_subscriptions() -> None:
    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("a"),)))
    assert client.send(Unsubscribe(2, ("a", "b"))) == [UnsubAck(2, (0, 0x11))]
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"x"))
    assert client.received() == []


def test_payload_format_invalid_is_refused_in_puback() -> None:
    world = World()
    client = connected(world, "c")
    props = MQTTProperties(payload_format_indicator=1)
    assert client.send(Publish("a", b"\xff", qos=1, packet_id=3, properties=props)) == [
        PubAck(3, 0x99)
    ]


def test_max_packet_size_of_client_drops_large_messages() -> None:
    world = World()
    client = connected(world, "c", properties=MQTTProperties(maximum_packet_size=64))
    client.send(Subscribe(1, (sub("a", 1),)))
    publisher = connected(world, "p")
    publisher.send(
        Publish("a", b"x" * 100, qos=1, packet_id=1), Publish("a", b"small", qos=1, packet_id=2)
    )
    assert client.received() == [Publish("a", b"small", qos=1, packet_id=2)]
    queue = world.broker.vhost("/").queues["mqtt-session-c"]  # type: ignore[union-attr]
    assert (queue.ready_count, queue.unacked_count) == (0, 1)


# -- topic aliases -----------------------------------------------------------------------


def test_inbound_topic_alias() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a/b"),)))
    publisher = connected(world, "p")
    publisher.send(
        Publish("a/b", b"1", properties=MQTTProperties(topic_alias=3)),
        Publish("", b"2", properties=MQTTProperties(topic_alias=3)),
    )
    assert subscriber.received() == [Publish("a/b", b"1"), Publish("a/b", b"2")]


def test_inbound_topic_alias_misuse() -> None:
    world = World(settings=MQTTSettings(topic_alias_maximum=2))
    publisher = world.client()
    publisher.connect("p")
    assert publisher.send(Publish("a", b"1", properties=MQTTProperties(topic_alias=3))) == [
        Disconnect(0x94, MQTTProperties(reason_string="topic alias 3 out of range"))
    ]
    other = world.client()
    other.connect("q")
    assert other.send(Publish("", b"1", properties=MQTTProperties(topic_alias=1))) == [
        Disconnect(0x82, MQTTProperties(reason_string="unknown topic alias 1"))
    ]


def test_outbound_topic_aliases_up_to_client_maximum() -> None:
    world = World()
    subscriber = connected(world, "s", properties=MQTTProperties(topic_alias_maximum=1))
    subscriber.send(Subscribe(1, (sub("#"),)))
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"1"), Publish("a", b"2"), Publish("b", b"3"))
    alias = MQTTProperties(topic_alias=1)
    assert subscriber.received() == [
        Publish("a", b"1", properties=alias),
        Publish("", b"2", properties=alias),
        Publish("b", b"3"),
    ]


# -- sessions ----------------------------------------------------------------------------


def test_persistent_session_redelivers_with_dup_and_same_packet_ids() -> None:
    world = World()
    props = MQTTProperties(session_expiry_interval=60)
    client = connected(world, "s", properties=props)
    client.send(Subscribe(1, (sub("a", 2),)))
    publisher = connected(world, "p")
    publisher.send(
        Publish("a", b"1", qos=1, packet_id=1),
        Publish("a", b"2", qos=2, packet_id=2),
        PubRel(2),
        Publish("a", b"3", qos=2, packet_id=3),
        PubRel(3),
    )
    assert client.received() == [
        Publish("a", b"1", qos=1, packet_id=1),
        Publish("a", b"2", qos=2, packet_id=2),
        Publish("a", b"3", qos=2, packet_id=3),
    ]
    assert client.send(PubRec(3)) == [PubRel(3)]
    client.conn.connection_lost()
    publisher.send(Publish("a", b"4", qos=1, packet_id=4))
    again = world.client()
    assert again.connect("s", clean_start=False, properties=props) == [
        ConnAck(True, 0, V5_PROPS),
        Publish("a", b"1", qos=1, dup=True, packet_id=1),
        Publish("a", b"2", qos=2, dup=True, packet_id=2),
        PubRel(3),
        Publish("a", b"4", qos=1, packet_id=4),
    ]


def test_v311_persistent_session_queues_while_offline() -> None:
    world = World()
    client = connected(world, "s", MQTT_3_1_1, clean_start=False)
    client.send(Subscribe(1, (sub("a", 1),)))
    client.send(Disconnect())
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"while away", qos=1, packet_id=1))
    world.advance(10_000)
    again = world.client(MQTT_3_1_1)
    assert again.connect("s", clean_start=False) == [
        ConnAck(True, 0),
        Publish("a", b"while away", qos=1, packet_id=1),
    ]


def test_clean_session_discards_state_and_queue() -> None:
    world = World()
    client = connected(world, "s", MQTT_3_1_1, clean_start=False)
    client.send(Subscribe(1, (sub("a", 1),)))
    client.send(Disconnect())
    vhost = world.broker.vhost("/")
    assert vhost is not None and "mqtt-session-s" in vhost.queues
    again = world.client(MQTT_3_1_1)
    assert again.connect("s", clean_start=True) == [ConnAck(False, 0)]
    assert "mqtt-session-s" not in vhost.queues


def test_session_expiry_deletes_queue() -> None:
    world = World()
    client = connected(world, "s", properties=MQTTProperties(session_expiry_interval=30))
    client.send(Subscribe(1, (sub("a", 1),)))
    client.send(Disconnect())
    vhost = world.broker.vhost("/")
    assert vhost is not None
    world.advance(29)
    assert "mqtt-session-s" in vhost.queues
    world.advance(1)
    assert "mqtt-session-s" not in vhost.queues
    assert world.state.statistics()["sessions"] == 0


def test_takeover_v5_sends_0x8e_and_keeps_session() -> None:
    world = World()
    props = MQTTProperties(session_expiry_interval=60)
    first = connected(world, "c", properties=props)
    first.send(Subscribe(1, (sub("a", 1),)))
    second = world.client()
    assert second.connect("c", clean_start=False, properties=props) == [ConnAck(True, 0, V5_PROPS)]
    assert first.received() == [Disconnect(0x8E)]
    assert first.conn.closed
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"x", qos=1, packet_id=1))
    assert second.received() == [Publish("a", b"x", qos=1, packet_id=1)]


# -- retained ----------------------------------------------------------------------------


def test_retained_message_sent_on_subscribe_and_cleared_by_empty_payload() -> None:
    world = World()
    publisher = connected(world, "p")
    publisher.send(Publish("r/1", b"kept", retain=True), Publish("r/2", b"two", retain=True))
    client = connected(world, "c")
    assert client.send(Subscribe(1, (sub("r/1"),))) == [
        SubAck(1, (0,)),
        Publish("r/1", b"kept", retain=True),
    ]
    publisher.send(Publish("r/1", b"", retain=True))
    assert client.received() == [Publish("r/1", b"")]
    late = connected(world, "late")
    assert late.send(Subscribe(1, (sub("r/#"),))) == [
        SubAck(1, (0,)),
        Publish("r/2", b"two", retain=True),
    ]


def test_retain_handling_and_retain_as_published() -> None:
    world = World()
    publisher = connected(world, "p")
    publisher.send(Publish("r", b"v", retain=True))
    client = connected(world, "c")
    assert client.send(Subscribe(1, (sub("r", retain_handling=1),))) == [
        SubAck(1, (0,)),
        Publish("r", b"v", retain=True),
    ]
    assert client.send(Subscribe(2, (sub("r", retain_handling=1),))) == [SubAck(2, (0,))]
    assert client.send(Subscribe(3, (sub("r", retain_handling=2),))) == [SubAck(3, (0,))]
    assert client.send(Subscribe(4, (sub("r", retain_as_published=True),))) == [
        SubAck(4, (0,)),
        Publish("r", b"v", retain=True),
    ]
    publisher.send(Publish("r", b"w", retain=True))
    assert client.received() == [Publish("r", b"w", retain=True)]
    client.send(Subscribe(5, (sub("r"),)))
    client.received()
    publisher.send(Publish("r", b"z", retain=True))
    assert client.received() == [Publish("r", b"z")]


def test_retained_message_expires() -> None:
    world = World()
    publisher = connected(world, "p")
    props = MQTTProperties(message_expiry_interval=10)
    publisher.send(Publish("r", b"v", retain=True, properties=props))
    world.advance(4)
    client = connected(world, "c")
    assert client.send(Subscribe(1, (sub("r"),))) == [
        SubAck(1, (0,)),
        Publish("r", b"v", retain=True, properties=MQTTProperties(message_expiry_interval=6)),
    ]
    world.advance(6)
    late = connected(world, "late")
    assert late.send(Subscribe(1, (sub("r"),))) == [SubAck(1, (0,))]


# -- wills -------------------------------------------------------------------------------


def _watch(world: World) -> Client:
    watcher = connected(world, "watcher")
    watcher.send(Subscribe(1, (sub("will/#", 1),)))
    return watcher


def test_will_published_on_socket_drop_not_on_normal_disconnect() -> None:
    world = World()
    watcher = _watch(world)
    dropped = connected(world, "a", will=Will("will/a", b"a gone", qos=1))
    dropped.conn.connection_lost()
    polite = connected(world, "b", will=Will("will/b", b"b gone"))
    polite.send(Disconnect())
    assert watcher.received() == [Publish("will/a", b"a gone", qos=1, packet_id=1)]


def test_will_published_on_disconnect_0x04_and_retained() -> None:
    world = World()
    client = connected(world, "a", will=Will("will/a", b"bye", retain=True))
    client.send(Disconnect(0x04))
    watcher = connected(world, "watcher")
    assert watcher.send(Subscribe(1, (sub("will/#", 1),))) == [
        SubAck(1, (1,)),
        Publish("will/a", b"bye", retain=True),
    ]


def test_will_delay_is_cancelled_by_reconnect_and_fires_otherwise() -> None:
    world = World()
    watcher = _watch(world)
    props = MQTTProperties(session_expiry_interval=100)
    will = Will("will/a", b"late", properties=MQTTProperties(will_delay_interval=5))
    client = connected(world, "a", properties=props, will=will)
    client.conn.connection_lost()
    world.advance(4)
    again = world.client()
    again.connect("a", clean_start=False, properties=props, will=will)
    world.advance(10)
    assert watcher.received() == []
    again.conn.connection_lost()
    world.advance(4.9)
    assert watcher.received() == []
    world.advance(0.1)
    assert watcher.received() == [Publish("will/a", b"late")]


def test_will_delay_is_capped_by_session_expiry() -> None:
    world = World()
    watcher = _watch(world)
    will = Will("will/a", b"x", properties=MQTTProperties(will_delay_interval=50))
    client = connected(world, "a", properties=MQTTProperties(session_expiry_interval=3), will=will)
    client.conn.connection_lost()
    world.advance(3)
    assert watcher.received() == [Publish("will/a", b"x")]


# -- shared subscriptions ----------------------------------------------------------------


def test_shared_subscription_shares_and_redistributes() -> None:
    world = World()
    one = connected(world, "one")
    two = connected(world, "two")
    for client in (one, two):
        assert client.send(Subscribe(1, (sub("$share/g/t/#", 1),))) == [SubAck(1, (1,))]
    publisher = connected(world, "p")
    for i in range(4):
        publisher.send(Publish("t/x", bytes([i]), qos=1, packet_id=i + 1))
    got_one = one.received()
    got_two = two.received()
    assert [p.payload for p in got_one] == [b"\x00", b"\x02"]  # type: ignore[union-attr]
    assert [p.payload for p in got_two] == [b"\x01", b"\x03"]  # type: ignore[union-attr]
    one.conn.connection_lost()  # a clean session: its unacked go to the other member
    assert [(p.payload, p.dup) for p in two.received()] == [(b"\x00", False), (b"\x02", False)]  # type: ignore[union-attr]


def test_shared_subscription_with_no_local_is_protocol_error() -> None:
    world = World()
    client = connected(world, "c")
    [disconnect] = client.send(Subscribe(1, (sub("$share/g/t", no_local=True),)))
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x82


def test_shared_queue_deleted_with_last_member() -> None:
    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("$share/g/t"),)))
    vhost = world.broker.vhost("/")
    assert vhost is not None and "mqtt-shared-g-t" in vhost.queues
    assert client.send(Unsubscribe(2, ("$share/g/t",))) == [UnsubAck(2, (0,))]
    assert "mqtt-shared-g-t" not in vhost.queues


# -- AMQP interop through the core -------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def deliver(self, consumer_tag: str, delivery_tag: int, redelivered: bool, m: Message) -> None:
        self.messages.append(m)

    def consumer_cancelled(self, consumer_tag: str) -> None:
        pass

    def writable(self) -> bool:
        return True


def test_amqp_consumer_sees_mqtt_publish_with_mapped_properties() -> None:
    from rapidmq.core.api import ClientInfo

    world = World()
    sink = Sink()
    amqp = world.broker.connect("/", ClientInfo("amqp091", "x")).open_session(sink)
    amqp.declare_queue("q")
    amqp.bind_queue("q", "amq.topic", "sensors.*.temp")
    amqp.consume("q", "t", no_ack=True)
    publisher = connected(world, "p")
    props = MQTTProperties(
        content_type="text/plain",
        correlation_data=b"abc",
        response_topic="reply/to/me",
        message_expiry_interval=30,
        user_properties=[("k", "1"), ("k", "2"), ("j", "x")],
    )
    publisher.send(Publish("sensors/kitchen/temp", b"21", qos=1, packet_id=1, properties=props))
    [m] = sink.messages
    assert (m.exchange, m.routing_key, m.body) == ("amq.topic", "sensors.kitchen.temp", b"21")
    assert m.properties == Properties(
        content_type="text/plain",
        headers={"k": ["1", "2"], "j": "x"},
        delivery_mode=2,
        correlation_id="abc",
        reply_to="reply.to.me",
        expiration="30000",
    )


def test_mqtt_subscriber_sees_amqp_publish() -> None:
    from rapidmq.core.api import ClientInfo

    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("orders/#", 1),)))
    amqp = world.broker.connect("/", ClientInfo("amqp091", "x")).open_session(Sink())
    props = Properties(
        content_type="application/json",
        headers={"n": 5, "flag": True},
        delivery_mode=2,
        correlation_id="r-1",
        reply_to="amq.gen-x",
    )
    amqp.publish(Message("amq.topic", "orders.eu", b"{}", props))
    amqp.publish(Message("amq.topic", "orders.us", b"transient"))
    assert client.received() == [
        Publish(
            "orders/eu",
            b"{}",
            qos=1,
            packet_id=1,
            properties=MQTTProperties(
                content_type="application/json",
                correlation_data=b"r-1",
                response_topic="amq/gen-x",
                user_properties=[("n", "5"), ("flag", "true")],
            ),
        ),
        Publish("orders/us", b"transient"),
    ]


def test_statistics() -> None:
    world = World()
    client = connected(world, "c")
    client.send(Subscribe(1, (sub("a"),)))
    assert world.state.statistics() == {
        "sessions": 1,
        "connected_sessions": 1,
        "connections": 1,
        "expiring_sessions": 0,
        "pending_wills": 0,
        "wills_published": 0,
        "sessions_expired": 0,
        "shared_groups": 0,
        "retained_messages": 0,
    }
    stats = client.conn.statistics()
    assert (stats["client_id"], stats["state"], stats["packets_received"]) == ("c", "connected", 2)


def test_qos0_published_while_offline_is_dropped_as_mosquitto() -> None:
    world = World()
    props = MQTTProperties(session_expiry_interval=60)
    client = connected(world, "s", properties=props)
    client.send(Subscribe(1, (sub("t", 1),)))
    client.send(Disconnect())
    world.advance(1)
    publisher = connected(world, "p")
    publisher.send(Publish("t", b"qos0"), Publish("t", b"qos1", qos=1, packet_id=1))
    world.advance(1)
    again = world.client()
    assert again.connect("s", clean_start=False, properties=props) == [
        ConnAck(True, 0, V5_PROPS),
        Publish("t", b"qos1", qos=1, packet_id=1),
    ]
    publisher.send(Publish("t", b"live qos0"))
    assert again.received() == [Publish("t", b"live qos0")]


def test_overlapping_copies_settle_the_message_only_when_every_copy_is_acked() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a/+", 1), sub("a/#", 1))))
    subscriber.received()
    publisher = connected(world, "p")
    publisher.send(Publish("a/b", b"x", qos=1, packet_id=1))
    copies = subscriber.received()
    assert [(p.packet_id, p.qos) for p in copies if isinstance(p, Publish)] == [(1, 1), (2, 1)]
    core = subscriber.conn.session.core_session
    subscriber.send(PubAck(1))
    assert core.statistics()["messages_unacknowledged"] == 1
    subscriber.send(PubAck(2))
    assert core.statistics()["messages_unacknowledged"] == 0


def test_qos2_message_held_across_a_reconnect_is_routed_on_pubrel() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a", 2),)))
    props = MQTTProperties(session_expiry_interval=60)
    publisher = connected(world, "p", properties=props)
    assert publisher.send(Publish("a", b"held", qos=2, packet_id=7)) == [PubRec(7)]
    publisher.conn.connection_lost()
    assert subscriber.received() == []
    again = world.client()
    [ack] = again.connect("p", clean_start=False, properties=props)
    assert isinstance(ack, ConnAck) and ack.session_present
    assert again.send(PubRel(7)) == [PubComp(7)]
    assert subscriber.received() == [Publish("a", b"held", qos=2, packet_id=1)]


def test_qos0_only_sessions_consume_without_acks_until_a_qos1_subscription() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a", 0),)))
    core = subscriber.conn.session.core_session
    assert [c.no_ack for c in core.consumers.values()] == [True]
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"zero"))
    assert subscriber.received() == [Publish("a", b"zero")]
    subscriber.send(Subscribe(2, (sub("b", 1),)))
    assert [c.no_ack for c in core.consumers.values()] == [False]
    publisher.send(Publish("b", b"one", qos=1, packet_id=1))
    assert subscriber.received() == [Publish("b", b"one", qos=1, packet_id=1)]
    assert core.statistics()["messages_unacknowledged"] == 1
    subscriber.send(PubAck(1))
    assert core.statistics()["messages_unacknowledged"] == 0


def test_resource_alarms_stop_reading_publishers_but_not_subscribers() -> None:
    world = World()
    subscriber = connected(world, "s")
    subscriber.send(Subscribe(1, (sub("a", 1),)))
    publisher = connected(world, "p")
    publisher.send(Publish("a", b"before", qos=1, packet_id=1))
    late = connected(world, "late")
    for client in (subscriber, publisher, late):
        client.conn.set_resource_alarms(("memory",))
    assert [getattr(c.conn, "reading_paused", False) for c in (subscriber, publisher, late)] == [
        False,
        True,
        False,
    ]
    late.send(Publish("a", b"during"))  # read, routed, then no more reading
    assert late.conn.reading_paused
    assert [p.payload for p in subscriber.received() if isinstance(p, Publish)] == [
        b"before",
        b"during",
    ]
    for client in (subscriber, publisher, late):
        client.conn.set_resource_alarms(())
    assert [getattr(c.conn, "reading_paused", False) for c in (subscriber, publisher, late)] == [
        False,
        False,
        False,
    ]


class _Undecided:
    """A backend whose answer never comes back (a directory that does not reply)."""

    name = "slow"

    def decide(self, request: LoginRequest) -> LoginResult | None:
        return None

    def check_blocking(self, request: LoginRequest) -> LoginResult:
        raise AssertionError("no worker runs in this test")

    def remember(self, request: LoginRequest, result: LoginResult) -> None:
        raise AssertionError("no worker runs in this test")


def test_packets_pipelined_behind_a_pending_login_are_bounded() -> None:
    authenticator = Authenticator([_Undecided()])
    world = World(settings=MQTTSettings(authenticator=authenticator))
    client = world.client()
    try:
        assert client.connect("c1", username="alice", password=b"secret") == []
        pings = encode(PingReq(), MQTT_5) * MAX_HELD_PACKETS
        client.conn.data_received(pings)
        assert not client.conn.closed  # held for when the login is decided
        client.conn.data_received(encode(PingReq(), MQTT_5))
        assert client.conn.closed
    finally:
        authenticator.close()


@pytest.mark.parametrize("level", [MQTT_3_1_1, MQTT_5])
def test_user_name_without_password_logs_in_as_the_default_user_with_anonymous_usernames(
    level: int,
) -> None:
    world = World(settings=MQTTSettings(anonymous_usernames=True))
    client = world.client(level)
    replies = client.send(Connect(level, "dev1", username="iot:sensor-1", password=None))
    assert replies == [ConnAck(False, 0, V5_PROPS if level == MQTT_5 else None)]
    # The sent name is a label only: no vhost prefix is read from it.
    assert (client.conn.user, client.conn.vhost, client.conn.sent_username) == (
        "guest",
        "/",
        "iot:sensor-1",
    )


@pytest.mark.parametrize(("level", "code"), [(MQTT_3_1_1, 5), (MQTT_5, 0x87)])
def test_user_name_without_password_is_refused_without_anonymous_usernames(
    level: int, code: int
) -> None:
    client = World().client(level)
    replies = client.send(Connect(level, "dev1", username="sensor-1", password=None))
    # (MQTT 5's CONNACK also carries a reason string.)
    assert [(type(r), r.reason_code) for r in replies if isinstance(r, ConnAck)] == [
        (ConnAck, code)
    ]
    assert (len(replies), client.conn.closed) == (1, True)


def test_anonymous_usernames_keep_the_default_users_loopback_limit() -> None:
    world = World(settings=MQTTSettings(anonymous_usernames=True))
    client = world.client(MQTT_3_1_1, host="203.0.113.5")
    assert client.send(Connect(MQTT_3_1_1, "dev1", username="sensor-1")) == [ConnAck(False, 5)]


def test_a_login_with_a_password_shows_no_sent_user_name() -> None:
    world = World(settings=MQTTSettings(anonymous_usernames=True))
    client = connected(world, "c1", username="alice", password=b"secret")
    assert (client.conn.user, client.conn.sent_username) == ("alice", None)
