"""paho-mqtt 2.x (MQTT 3.1.1 and 5) against the MQTT broker under test."""

from __future__ import annotations

import time

import pytest
from mqtt_support import (
    CLOSED,
    MQTTScratch,
    SubscribeOptions,
    props,
    topic_alias_property,
)
from paho.mqtt.packettypes import PacketTypes

BOTH = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


@BOTH
def test_connect_starts_without_a_session_and_disconnects_cleanly(
    mqtt: MQTTScratch, version: int
) -> None:
    c = mqtt.client("c", version=version)
    assert (c.connacks[-1].session_present, c.connacks[-1].reason_code) == (False, 0)
    c.disconnect()
    assert c.disconnects == [0]


@BOTH
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
@pytest.mark.parametrize("pub_qos", [0, 1, 2])
def test_message_is_delivered_at_the_lower_of_publish_and_subscribe_qos(
    mqtt: MQTTScratch, version: int, pub_qos: int, sub_qos: int
) -> None:
    sub = mqtt.client("sub", version=version)
    assert sub.subscribe((mqtt.topic("t"), sub_qos)) == [sub_qos]
    pub = mqtt.client("pub", version=version)
    pub.publish(mqtt.topic("t"), b"payload", pub_qos)
    got = sub.expect(1)
    assert [m.seen(dup=True) for m in got] == [
        (mqtt.topic("t"), b"payload", min(pub_qos, sub_qos), False, False)
    ]


@BOTH
def test_many_qos2_messages_keep_their_order(mqtt: MQTTScratch, version: int) -> None:
    sub = mqtt.client("sub", version=version)
    sub.subscribe((mqtt.topic("t"), 2))
    pub = mqtt.client("pub", version=version)
    sent = [f"m{i}".encode() for i in range(50)]
    for body in sent:
        pub.publish(mqtt.topic("t"), body, 2)
    assert [m.payload for m in sub.expect(len(sent))] == sent


@BOTH
def test_retained_message_reaches_later_subscribers_until_cleared(
    mqtt: MQTTScratch, version: int
) -> None:
    topic = mqtt.retained(mqtt.topic("r"))
    pub = mqtt.client("pub", version=version)
    pub.publish(topic, b"first", 1, retain=True)
    pub.publish(topic, b"latest", 1, retain=True)
    late = mqtt.client("late", version=version)
    late.subscribe((mqtt.topic("#"), 1))
    assert [m.seen() for m in late.expect(1)] == [(topic, b"latest", 1, True)]
    pub.publish(topic, b"", 1, retain=True)
    assert [m.seen() for m in late.take(2)[1:]] == [(topic, b"", 1, False)]
    later = mqtt.client("later", version=version)
    later.subscribe((topic, 1))
    assert later.expect(0) == []


@BOTH
def test_will_is_published_on_abnormal_disconnect_only(mqtt: MQTTScratch, version: int) -> None:
    watcher = mqtt.client("watch", version=version)
    watcher.subscribe((mqtt.topic("will", "+"), 1))
    polite = mqtt.client("polite", version=version, connect=False)
    polite.will(mqtt.topic("will", "polite"), b"unexpected", qos=1)
    polite.connect()
    polite.disconnect()
    crashed = mqtt.client("crash", version=version, connect=False)
    crashed.will(mqtt.topic("will", "crash"), b"crashed", qos=1)
    crashed.connect()
    crashed.drop()
    assert [m.seen() for m in watcher.expect(1)] == [
        (mqtt.topic("will", "crash"), b"crashed", 1, False)
    ]


@BOTH
def test_persistent_session_queues_messages_while_offline(mqtt: MQTTScratch, version: int) -> None:
    expiry = 60 if version == 5 else None
    sub = mqtt.client("sub", version=version, clean=False, session_expiry_s=expiry)
    sub.subscribe((mqtt.topic("t"), 2))
    sub.disconnect()
    pub = mqtt.client("pub", version=version)
    for i in range(3):
        pub.publish(mqtt.topic("t"), f"offline-{i}".encode(), 2)
    back = mqtt.client("sub", version=version, clean=False, session_expiry_s=expiry, connect=False)
    connack = back.connect()
    assert (connack.session_present, connack.reason_code) == (True, 0)
    assert [m.seen() for m in back.expect(3)] == [
        (mqtt.topic("t"), b"offline-0", 2, False),
        (mqtt.topic("t"), b"offline-1", 2, False),
        (mqtt.topic("t"), b"offline-2", 2, False),
    ]


@BOTH
def test_clean_start_discards_the_previous_session(mqtt: MQTTScratch, version: int) -> None:
    expiry = 60 if version == 5 else None
    sub = mqtt.client("sub", version=version, clean=False, session_expiry_s=expiry)
    sub.subscribe((mqtt.topic("t"), 1))
    sub.disconnect()
    pub = mqtt.client("pub", version=version)
    pub.publish(mqtt.topic("t"), b"dropped with the session", 1)
    fresh = mqtt.client("sub", version=version, clean=True, connect=False)
    connack = fresh.connect()
    assert (connack.session_present, connack.reason_code) == (False, 0)
    pub.publish(mqtt.topic("t"), b"no subscription any more", 1)
    assert fresh.expect(0) == []


def test_shared_subscription_gives_each_message_to_one_member(mqtt: MQTTScratch) -> None:
    shared = f"$share/g{mqtt.token}/{mqtt.topic('jobs', '+')}"
    members = [mqtt.client(f"m{i}") for i in range(3)]
    for m in members:
        assert m.subscribe((shared, 1)) == [1]
    pub = mqtt.client("pub")
    sent = [f"job-{i}".encode() for i in range(30)]
    for body in sent:
        pub.publish(mqtt.topic("jobs", "a"), body, 1)
    deadline = time.monotonic() + 5.0
    while sum(len(m.messages) for m in members) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    got = [r.payload for m in members for r in m.messages]
    assert sorted(got) == sorted(sent)
    assert all(m.messages for m in members), [len(m.messages) for m in members]
    order = {body: i for i, body in enumerate(sent)}
    for m in members:
        # Each member still sees its share in publish order.
        mine = [r.payload for r in m.messages]
        assert mine == sorted(mine, key=order.__getitem__)


def test_message_properties_round_trip(mqtt: MQTTScratch) -> None:
    sub = mqtt.client("sub")
    sub.subscribe((mqtt.topic("p"), 1))
    pub = mqtt.client("pub")
    sent = {
        "ContentType": "application/json",
        "CorrelationData": b"\x00\x01request-17",
        "ResponseTopic": mqtt.topic("reply"),
        "PayloadFormatIndicator": 1,
        "UserProperty": [("trace", "abc"), ("tenant", "t1")],
        "MessageExpiryInterval": 120,
    }
    pub.publish(mqtt.topic("p"), b'{"n": 1}', 1, properties=props(PacketTypes.PUBLISH, **sent))
    (got,) = sub.expect(1)
    expiry = got.properties.pop("MessageExpiryInterval")
    assert 118 <= expiry <= 120
    assert got.properties == {k: v for k, v in sent.items() if k != "MessageExpiryInterval"}


def test_user_properties_keep_their_order_and_repeated_names(mqtt: MQTTScratch) -> None:
    sub = mqtt.client("sub")
    sub.subscribe((mqtt.topic("p"), 0))
    pub = mqtt.client("pub")
    pairs = [("b", "2"), ("a", "1"), ("b", "3"), ("ünï", "cödé"), ("a", "")]
    pub.publish(mqtt.topic("p"), b"x", 1, properties=props(PacketTypes.PUBLISH, UserProperty=pairs))
    (got,) = sub.expect(1)
    assert got.properties == {"UserProperty": pairs}


def test_subscription_identifiers_name_every_matching_subscription(mqtt: MQTTScratch) -> None:
    sub = mqtt.client("sub")
    for topic_filter, ident in ((mqtt.topic("a", "+"), 7), (mqtt.topic("#"), 9)):
        sub.subscribe(
            (topic_filter, 1), properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=ident)
        )
    sub.subscribe((mqtt.topic("plain"), 1))
    pub = mqtt.client("pub")
    pub.publish(mqtt.topic("a", "b"), b"both", 1)
    pub.publish(mqtt.topic("z"), b"hash only", 1)
    pub.publish(mqtt.topic("plain"), b"hash and plain", 1)
    got = sub.collect(5)
    ids: dict[bytes, list[int]] = {}
    for m in got:
        ids.setdefault(m.payload, []).extend(m.properties.get("SubscriptionIdentifier", []))
    # One copy with both identifiers, or one copy per subscription: the same identifiers.
    assert {k: sorted(v) for k, v in ids.items()} == {
        b"both": [7, 9],
        b"hash only": [9],
        b"hash and plain": [9],
    }


def test_no_local_subscription_skips_the_clients_own_messages(mqtt: MQTTScratch) -> None:
    me = mqtt.client("me")
    me.subscribe((mqtt.topic("chat"), SubscribeOptions(qos=1, noLocal=True)))
    other = mqtt.client("other")
    me.publish(mqtt.topic("chat"), b"from me", 1)
    other.publish(mqtt.topic("chat"), b"from other", 1)
    assert [m.payload for m in me.expect(1)] == [b"from other"]


def test_topic_alias_set_by_the_client_names_the_topic(mqtt: MQTTScratch) -> None:
    sub = mqtt.client("sub")
    sub.subscribe((mqtt.topic("+"), 1))
    pub = mqtt.client("pub")
    limit = pub.connacks[-1].properties.get("TopicAliasMaximum", 0)
    if limit < 1:
        pytest.skip("the broker accepts no topic aliases")
    alias = props(PacketTypes.PUBLISH, TopicAlias=1)
    pub.publish(mqtt.topic("long-topic-name"), b"sets", 1, properties=alias)
    pub.publish("", b"uses", 1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    assert [m.seen() for m in sub.expect(2)] == [
        (mqtt.topic("long-topic-name"), b"sets", 1, False),
        (mqtt.topic("long-topic-name"), b"uses", 1, False),
    ]
    # Topic aliases are per connection and never forwarded as such.
    assert all("TopicAlias" not in m.properties for m in sub.messages)


def test_topic_alias_above_the_maximum_is_refused(mqtt: MQTTScratch) -> None:
    raw = mqtt.raw(5)
    connack = raw.connect(mqtt.client_id("raw"))
    assert connack != CLOSED and connack[0] == 0x20, connack
    limit = 0
    body = connack[1]  # type: ignore[index]
    # Topic Alias Maximum (0x22, two bytes) in the CONNACK properties; absent means 0.
    if (i := body.find(b"\x22", 3)) != -1:
        limit = int.from_bytes(body[i + 1 : i + 3], "big")
    if limit == 0xFFFF:
        pytest.skip("the Topic Alias Maximum is 65535: no alias is above it")
    raw.publish(mqtt.topic("t"), b"x", qos=1, properties=topic_alias_property(limit + 1))
    assert raw.read() == (0xE0, b"\x94")
    assert raw.read() == CLOSED


@BOTH
def test_suback_grants_each_requested_qos(mqtt: MQTTScratch, version: int) -> None:
    c = mqtt.client("c", version=version)
    granted = c.subscribe((mqtt.topic("q0"), 0), (mqtt.topic("q1"), 1), (mqtt.topic("q2"), 2))
    assert granted == [0, 1, 2]
    assert c.unsubscribe(mqtt.topic("q1")) == ([0] if version == 5 else [])


@BOTH
def test_subscription_to_a_malformed_filter_is_refused(mqtt: MQTTScratch, version: int) -> None:
    # paho checks wildcards itself but lets a NUL character through.
    c = mqtt.client("c", version=version)
    c._client.subscribe(mqtt.topic("bad\x00filter"), 1)
    reason = c.wait_disconnected()
    # MQTT 5: DISCONNECT 0x81 (Malformed Packet); 3.1.1: the connection is closed
    # (paho reports it as 0x80).
    assert reason == (0x81 if version == 5 else 0x80)
