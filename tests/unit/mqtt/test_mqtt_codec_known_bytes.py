"""Encodings checked against the specification's examples and against paho-mqtt's encoders.

paho-mqtt is run for real: a paho client connects to a plain socket listening on
a free port, and the bytes it sends are decoded here and compared with this
codec's encoding of the same packets.  paho in turn decodes the CONNACK and
SUBACK this codec encodes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

from rapidmq.protocols.mqtt.codec import (
    MQTTParser,
    decode_variable_byte_integer,
    encode,
    encode_ack,
    encode_publish,
    encode_publish_v5,
    encode_variable_byte_integer,
)
from rapidmq.protocols.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    MQTTProperties,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from rapidmq.protocols.mqtt.properties import decode_properties

# MQTT 5.0 section 1.5.5, table 1-1: the bounds of each length of variable byte integer.
VARIABLE_BYTE_INTEGERS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]

# Hand-written from the packet layouts of MQTT 3.1, 3.1.1 (section 3) and 5.0 (section 3).
KNOWN: list[tuple[int, Packet, bytes]] = [
    (4, PingReq(), b"\xc0\x00"),
    (4, PingResp(), b"\xd0\x00"),
    (4, Disconnect(), b"\xe0\x00"),
    (5, Disconnect(), b"\xe0\x00"),
    (5, Disconnect(0x8E), b"\xe0\x01\x8e"),
    (4, PubAck(1), b"\x40\x02\x00\x01"),
    (5, PubAck(258, 0x10), b"\x40\x03\x01\x02\x10"),
    (
        5,
        PubAck(1, 0x80, MQTTProperties(reason_string="no")),
        b"\x40\x09\x00\x01\x80\x05\x1f\x00\x02no",
    ),
    (4, PubRel(7), b"\x62\x02\x00\x07"),
    (4, ConnAck(True, 0), b"\x20\x02\x01\x00"),
    (3, ConnAck(False, 5), b"\x20\x02\x00\x05"),
    (5, ConnAck(False, 0x86), b"\x20\x03\x00\x86\x00"),
    (4, Publish("a/b", b"hi"), b"\x30\x07\x00\x03a/bhi"),
    (4, Publish("a/b", b"", 1, True, True, 10), b"\x3b\x07\x00\x03a/b\x00\x0a"),
    (5, Publish("a", b"x", 2, packet_id=1), b"\x34\x07\x00\x01a\x00\x01\x00x"),
    (
        5,
        Publish(
            "t", b"", properties=MQTTProperties(topic_alias=1, subscription_identifiers=[1, 200])
        ),
        b"\x30\x0c\x00\x01t\x08\x0b\x01\x0b\xc8\x01\x23\x00\x01",
    ),
    (4, Subscribe(1, (Subscription("a/+", 1),)), b"\x82\x08\x00\x01\x00\x03a/+\x01"),
    (5, Subscribe(2, (Subscription("#", 2, True, True, 2),)), b"\x82\x07\x00\x02\x00\x00\x01#\x2e"),
    (4, SubAck(1, (0, 1, 0x80)), b"\x90\x05\x00\x01\x00\x01\x80"),
    (4, Unsubscribe(3, ("a", "b")), b"\xa2\x08\x00\x03\x00\x01a\x00\x01b"),
    (4, UnsubAck(3), b"\xb0\x02\x00\x03"),
    (5, UnsubAck(3, (0, 0x11)), b"\xb0\x05\x00\x03\x00\x00\x11"),
    (
        4,
        Connect(4, "c", True, 10, "u", b"p", Will("w", b"!", 1, True)),
        b"\x10\x19\x00\x04MQTT\x04\xee\x00\x0a\x00\x01c\x00\x01w\x00\x01!\x00\x01u\x00\x01p",
    ),
    (
        3,
        Connect(3, "c", False, 0, protocol_name="MQIsdp"),
        b"\x10\x0f\x00\x06MQIsdp\x03\x00\x00\x00\x00\x01c",
    ),
    (
        5,
        Connect(5, "", True, 60, properties=MQTTProperties(session_expiry_interval=1)),
        b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x05\x11\x00\x00\x00\x01\x00\x00",
    ),
]


@pytest.mark.parametrize(("value", "wire"), VARIABLE_BYTE_INTEGERS)
def test_variable_byte_integers_match_the_specification_table(value: int, wire: bytes) -> None:
    assert encode_variable_byte_integer(value) == wire
    assert decode_variable_byte_integer(wire) == (value, len(wire))


@pytest.mark.parametrize(("level", "packet", "wire"), KNOWN)
def test_known_packets_encode_and_decode_exactly(level: int, packet: Packet, wire: bytes) -> None:
    assert encode(packet, level) == wire
    parser = MQTTParser() if isinstance(packet, Connect) else MQTTParser(protocol_level=level)
    assert parser.receive_data(wire) == [packet]


def test_hot_path_encoders_write_what_the_generic_encoder_writes() -> None:
    out = bytearray()
    encode_publish(out, b"a/b", b"x" * 200, 1, True, False, 9)
    encode_publish_v5(out, b"a/b", b"y", 0, False, False, None)
    encode_publish_v5(out, b"a/b", b"z", 2, False, True, 3, b"\x03\x00\x01j")
    encode_publish(out, b"a/b", b"z", 2, False, True, 3, b"\x03\x00\x01j")  # non-empty: MQTT 5
    encode_ack(out, PacketType.PUBREL, 4)
    encode_ack(out, PacketType.PUBREC, 5, 0x10)
    encode_ack(out, PacketType.PUBCOMP, 6, 0x92, b"\x1f\x00\x01r")
    v5 = MQTTProperties(content_type="j")

    assert bytes(out) == b"".join(
        [
            encode(Publish("a/b", b"x" * 200, 1, True, False, 9), 4),
            encode(Publish("a/b", b"y"), 5),
            encode(Publish("a/b", b"z", 2, False, True, 3, v5), 5),
            encode(Publish("a/b", b"z", 2, False, True, 3, v5), 5),
            b"\x62\x02\x00\x04",
            b"\x50\x03\x00\x05\x10",
            b"\x70\x08\x00\x06\x92\x04\x1f\x00\x01r",
        ]
    )


# ---------------------------------------------------------------- paho-mqtt


class Peer:
    """The server end of one paho connection: raw bytes in, this codec's packets out."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.parser = MQTTParser()
        self.raw = bytearray()

    def receive(self, count: int) -> tuple[list[Packet], bytes]:
        packets: list[Packet] = []
        self.raw.clear()
        while len(packets) < count:
            chunk = self.conn.recv(65536)
            assert chunk, "paho closed the connection"
            self.raw += chunk
            packets += self.parser.receive_data(chunk)
        return packets, bytes(self.raw)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(5)
        yield sock


def _connect(listener: socket.socket, client: paho.Client, **kwargs: object) -> Peer:
    client.connect("127.0.0.1", listener.getsockname()[1], **kwargs)  # type: ignore[arg-type]
    conn, _addr = listener.accept()
    conn.settimeout(5)
    return Peer(conn)


@pytest.mark.parametrize(
    ("protocol", "level", "name"),
    [(paho.MQTTv31, 3, "MQIsdp"), (paho.MQTTv311, 4, "MQTT")],
)
def test_paho_3_packets_decode_and_encode_identically(
    listener: socket.socket, protocol: int, level: int, name: str
) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-1", protocol=protocol)
    client.username_pw_set("user", "secret")
    client.will_set("last/will", b"gone", qos=1, retain=True)
    peer = _connect(listener, client, keepalive=30)
    try:
        packets, raw = peer.receive(1)
        connect = Connect(
            level, "paho-1", True, 30, "user", b"secret", Will("last/will", b"gone", 1, True),
            protocol_name=name,
        )  # fmt: skip
        assert (packets, encode(connect, level)) == ([connect], raw)

        peer.conn.sendall(encode(ConnAck(False, 0), level))
        client.loop(timeout=1.0)
        assert client.is_connected()

        info = client.publish("a/b", b"payload", qos=1, retain=True)
        client.publish("c", b"", qos=0)
        _rc, sub_mid = client.subscribe([("x/+", 1), ("y/#", 2)])
        _rc, unsub_mid = client.unsubscribe("x/+")
        expected: list[Packet] = [
            Publish("a/b", b"payload", 1, True, False, info.mid),
            Publish("c", b""),
            Subscribe(sub_mid, (Subscription("x/+", 1), Subscription("y/#", 2))),
            Unsubscribe(unsub_mid, ("x/+",)),
        ]
        packets, raw = peer.receive(4)
        assert (packets, b"".join(encode(p, level) for p in expected)) == (expected, raw)
    finally:
        client.disconnect()
        peer.conn.close()


def test_paho_5_packets_decode_and_encode_identically(listener: socket.socket) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-5", protocol=paho.MQTTv5)
    client.username_pw_set("user", "secret")
    will_props = PahoProperties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 5
    will_props.ContentType = "text/plain"
    client.will_set("last/will", b"gone", qos=2, retain=False, properties=will_props)
    connect_props = PahoProperties(PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = 3600
    connect_props.ReceiveMaximum = 10
    connect_props.UserProperty = [("k", "v"), ("k", "w")]
    peer = _connect(listener, client, keepalive=45, clean_start=True, properties=connect_props)
    try:
        packets, raw = peer.receive(1)
        connect = Connect(
            5, "paho-5", True, 45, "user", b"secret",
            Will("last/will", b"gone", 2, False, MQTTProperties(
                content_type="text/plain", will_delay_interval=5
            )),
            MQTTProperties(
                session_expiry_interval=3600, receive_maximum=10,
                user_properties=[("k", "v"), ("k", "w")],
            ),
        )  # fmt: skip
        assert (packets, encode(connect, 5)) == ([connect], raw)

        connack = ConnAck(False, 0, MQTTProperties(topic_alias_maximum=5, maximum_qos=1))
        peer.conn.sendall(encode(connack, 5))
        client.loop(timeout=1.0)
        assert client.is_connected()

        pub_props = PahoProperties(PacketTypes.PUBLISH)
        pub_props.ContentType = "application/json"
        pub_props.ResponseTopic = "reply/here"
        pub_props.CorrelationData = b"\x01\x02"
        pub_props.MessageExpiryInterval = 30
        pub_props.UserProperty = [("a", "1")]
        info = client.publish("a/b", b"{}", qos=1, properties=pub_props)
        options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
        _rc, sub_mid = client.subscribe([("x/+", options)])
        expected: list[Packet] = [
            Publish(
                "a/b", b"{}", 1, False, False, info.mid,
                MQTTProperties(
                    message_expiry_interval=30, content_type="application/json",
                    response_topic="reply/here", correlation_data=b"\x01\x02",
                    user_properties=[("a", "1")],
                ),
            ),
            Subscribe(sub_mid, (Subscription("x/+", 1, True, True, 2),)),
        ]  # fmt: skip
        packets, raw = peer.receive(2)
        assert (packets, b"".join(encode(p, 5) for p in expected)) == (expected, raw)

        granted: list[list[int]] = []
        client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append(
            [int(code.value) for code in codes]
        )
        peer.conn.sendall(encode(SubAck(sub_mid, (1,)), 5))
        client.loop(timeout=1.0)
        assert granted == [[1]]
    finally:
        client.disconnect()
        peer.conn.close()


def test_paho_property_blocks_decode_to_the_same_properties() -> None:
    props = PahoProperties(PacketTypes.CONNACK)
    props.AssignedClientIdentifier = "auto-1"
    props.ServerKeepAlive = 20
    props.MaximumPacketSize = 1 << 20
    props.RetainAvailable = 0
    props.SharedSubscriptionAvailable = 1
    props.ReasonString = "fine"
    wire = props.pack()

    assert decode_properties(wire, 0, len(wire), PacketType.CONNACK) == (
        MQTTProperties(
            assigned_client_identifier="auto-1",
            server_keep_alive=20,
            maximum_packet_size=1 << 20,
            retain_available=0,
            shared_subscription_available=1,
            reason_string="fine",
        ),
        len(wire),
    )
