"""MQTT durability without sockets: acknowledgements after the sync, and restarts from stores."""

from __future__ import annotations

from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.protocols.mqtt.codec import MQTTParser, encode
from rapidmq.protocols.mqtt.connection import MQTTConnection, MQTTSettings
from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    MQTTProperties,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)
from rapidmq.protocols.mqtt.state import MQTTState
from rapidmq.storage.memory import MemoryMessageStore, MemoryMetadataStore

V5_PROPS = MQTTProperties(topic_alias_maximum=65535)
EXPIRY = MQTTProperties(session_expiry_interval=300)


class Stores:
    """One metadata and one message store that outlive the brokers started on them."""

    def __init__(self) -> None:
        self.metadata = MemoryMetadataStore()
        self.messages = MemoryMessageStore()
        self.now = [100.0]
        self.wall = [1_000_000.0]

    def start(self) -> World:
        return World(self)


class World:
    """A broker restored from the stores, as ``rapidmq serve`` starts one."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        codec = MessageCodec(encode_properties, decode_properties)
        self.persistence = Persistence(stores.messages, codec)
        self.broker = Broker(
            clock=self.clock, metadata=stores.metadata, persistence=self.persistence
        )
        self.broker.restore()
        self.broker.recover_messages()
        self.sync()
        self.users = UserStore.with_default_user()
        self.state = MQTTState(self.broker, clock=self.clock, wall_clock=self.wall_clock)
        self.restored = self.state.restore(stores.metadata)

    def clock(self) -> float:
        return self.stores.now[0]

    def wall_clock(self) -> float:
        return self.stores.wall[0]

    def advance(self, seconds: float) -> None:
        self.stores.now[0] += seconds
        self.stores.wall[0] += seconds
        self.state.tick(self.stores.now[0])

    def sync(self) -> None:
        """The server's flusher: commit the batch, sync it, report it durable."""
        self.persistence.commit()
        self.persistence.durable(self.stores.messages.sync())

    def client(self, level: int = MQTT_5) -> Client:
        return Client(self, level)


class Client:
    def __init__(self, world: World, level: int) -> None:
        self.level = level
        self.conn = MQTTConnection(
            world.broker,
            world.users,
            world.state,
            MQTTSettings(),
            ("127.0.0.1", 50000),
            lambda: None,
            clock=world.clock,
        )
        self.parser = MQTTParser(protocol_level=level)
        self.rest: list[Packet] = []  # what came after the CONNACK

    def send(self, *packets: Packet) -> list[Packet]:
        for packet in packets:
            self.conn.data_received(encode(packet, self.level))
        return self.received()

    def received(self) -> list[Packet]:
        return self.parser.receive_data(self.conn.data_to_send())


def persistent(world: World, client_id: str, level: int = MQTT_5, present: bool = False) -> Client:
    client = world.client(level)
    if level == MQTT_5:
        connect = Connect(level, client_id, clean_start=False, properties=EXPIRY)
        expected: Packet = ConnAck(present, 0, V5_PROPS)
    else:
        connect = Connect(level, client_id, clean_start=False)
        expected = ConnAck(present, 0)
    replies = client.send(connect)
    assert replies[0] == expected
    client.rest = replies[1:]
    return client


def subscribed_and_away(world: World, client_id: str, level: int = MQTT_5) -> None:
    client = persistent(world, client_id, level)
    assert client.send(Subscribe(1, (Subscription("t/#", 2),))) == [SubAck(1, (2,))]
    client.send(Disconnect())


def test_qos1_puback_waits_for_the_sync_and_later_acks_keep_their_order() -> None:
    world = Stores().start()
    subscribed_and_away(world, "sub")
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    assert pub.send(Publish("t/1", b"stored", qos=1, packet_id=1)) == []
    # Reaches no queue, so nothing to sync, but it may not overtake packet 1.
    assert pub.send(Publish("other", b"x", qos=1, packet_id=2)) == []
    assert pub.conn.publishing.waiting_acks == 2
    world.sync()
    assert pub.received() == [PubAck(1, 0), PubAck(2, 0x10)]
    assert pub.send(Publish("other", b"y", qos=1, packet_id=3)) == [PubAck(3, 0x10)]


def test_qos2_pubrec_is_immediate_and_pubcomp_waits_for_the_sync() -> None:
    world = Stores().start()
    subscribed_and_away(world, "sub")
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    assert pub.send(Publish("t/2", b"two", qos=2, packet_id=7)) == [PubRec(7, 0)]
    assert pub.send(PubRel(7)) == []
    world.sync()
    assert pub.received() == [PubComp(7, 0)]


def test_acknowledged_messages_and_subscriptions_survive_a_restart() -> None:
    stores = Stores()
    world = stores.start()
    subscribed_and_away(world, "sub", MQTT_3_1_1)
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    pub.send(Publish("t/a", b"one", qos=1, packet_id=1))
    world.sync()
    assert pub.received() == [PubAck(1, 0)]

    world = stores.start()
    assert world.restored == {"sessions": 1, "retained": 0}
    sub = world.client(MQTT_3_1_1)
    replies = sub.send(Connect(MQTT_3_1_1, "sub", clean_start=False))
    assert replies == [ConnAck(True, 0), Publish("t/a", b"one", qos=1, packet_id=1)]
    assert sub.send(Subscribe(2, (Subscription("t/#", 2),))) == [SubAck(2, (2,))]


def test_delivered_but_unacked_messages_come_back_with_dup_after_a_restart() -> None:
    stores = Stores()
    world = stores.start()
    subscribed_and_away(world, "sub")
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    pub.send(Publish("t/a", b"one", qos=1, packet_id=1))
    world.sync()
    sub = persistent(world, "sub", present=True)
    assert sub.rest == [Publish("t/a", b"one", qos=1, packet_id=1)]
    world.sync()  # the delivery was recorded; no PUBACK came back before the crash

    world = stores.start()
    sub = world.client()
    replies = sub.send(Connect(MQTT_5, "sub", clean_start=False, properties=EXPIRY))
    assert replies == [
        ConnAck(True, 0, V5_PROPS),
        Publish("t/a", b"one", qos=1, dup=True, packet_id=1),
    ]


def test_a_held_qos2_message_survives_a_restart_until_pubrel() -> None:
    stores = Stores()
    world = stores.start()
    subscribed_and_away(world, "sub")
    pub = persistent(world, "pub")
    assert pub.send(Publish("t/q", b"held", qos=2, packet_id=9)) == [PubRec(9, 0)]

    world = stores.start()
    pub = persistent(world, "pub", present=True)
    assert pub.send(PubRel(9)) == []
    world.sync()
    assert pub.received() == [PubComp(9, 0)]
    assert pub.send(PubRel(9)) == [PubComp(9, 0x92)]  # released once only
    [(_, record)] = list(stores.metadata.items("mqtt_session"))[1:]
    assert record["incoming_qos2"] == {}

    world = stores.start()
    sub = persistent(world, "sub", present=True)
    assert sub.rest == [Publish("t/q", b"held", qos=2, packet_id=1)]


def test_a_released_outbound_packet_id_gets_its_pubrel_after_a_restart() -> None:
    stores = Stores()
    world = stores.start()
    subscribed_and_away(world, "sub")
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    pub.send(Publish("t/q", b"x", qos=2, packet_id=1), PubRel(1))
    world.sync()
    sub = persistent(world, "sub", present=True)
    assert sub.rest == [Publish("t/q", b"x", qos=2, packet_id=1)]
    assert sub.send(PubRec(1)) == [PubRel(1)]

    world = stores.start()
    sub = world.client()
    replies = sub.send(Connect(MQTT_5, "sub", clean_start=False, properties=EXPIRY))
    # The core still holds the message until PUBCOMP, so it comes back too, flagged DUP.
    assert replies == [
        ConnAck(True, 0, V5_PROPS),
        PubRel(1),
        Publish("t/q", b"x", qos=2, dup=True, packet_id=2),
    ]
    assert sub.send(PubComp(1), PubRec(2)) == [PubRel(2)]
    assert sub.send(PubComp(2)) == []
    assert world.state.sessions[("/", "sub")].inflight == {}


def test_session_expiry_counts_from_the_stored_wall_clock_deadline() -> None:
    stores = Stores()
    world = stores.start()
    subscribed_and_away(world, "sub")
    stores.wall[0] += 200  # the broker was down for 200 s of the 300
    world = stores.start()
    assert ("/", "sub") in world.state.sessions
    world.advance(99)
    assert ("/", "sub") in world.state.sessions
    world.advance(2)
    assert ("/", "sub") not in world.state.sessions
    assert list(stores.metadata.items("mqtt_session")) == []
    assert "mqtt-session-sub" not in world.broker.vhost("/").queues  # type: ignore[union-attr]


def test_clean_sessions_are_never_recorded() -> None:
    stores = Stores()
    world = stores.start()
    client = world.client(MQTT_3_1_1)
    client.send(Connect(MQTT_3_1_1, "clean"))
    client.send(Subscribe(1, (Subscription("t/#", 1),)))
    client.send(Publish("t/x", b"q2", qos=2, packet_id=3))
    assert list(stores.metadata.items("mqtt_session")) == []
    subscribed_and_away(world, "gone")
    again = world.client()
    again.send(Connect(MQTT_5, "gone", clean_start=True))
    assert list(stores.metadata.items("mqtt_session")) == []


def test_retained_messages_survive_a_restart_and_clearing_forgets_them() -> None:
    stores = Stores()
    world = stores.start()
    pub = world.client()
    pub.send(Connect(MQTT_5, "pub"))
    pub.send(Publish("r/1", b"kept", qos=1, packet_id=1, retain=True))
    pub.send(Publish("r/2", b"gone", qos=0, retain=True))
    pub.send(Publish("r/2", b"", qos=0, retain=True))

    world = stores.start()
    assert world.restored == {"sessions": 0, "retained": 1}
    sub = world.client()
    sub.send(Connect(MQTT_5, "sub"))
    replies = sub.send(Subscribe(1, (Subscription("r/#", 1),)))
    assert replies == [SubAck(1, (1,)), Publish("r/1", b"kept", qos=1, retain=True, packet_id=1)]
