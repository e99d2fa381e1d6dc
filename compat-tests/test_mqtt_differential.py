"""Differential MQTT scenarios: the same paho script against Mosquitto and RapidMQ.

Each scenario drives real clients (paho-mqtt, and a raw socket for what paho
refuses to send) against one broker and returns what the clients observed:
payloads in order, QoS, RETAIN and DUP flags, CONNACK session-present flags and
reason codes, SUBACK/UNSUBACK/PUBACK codes, DISCONNECT reason codes and message
properties.  Topics and client ids carry a per-test token that
``MQTTScratch.normalize`` replaces, so the two observations must be equal as
they stand.

Only behaviour on which Mosquitto 2.0.11 follows the MQTT specifications is
compared; where the specifications leave a choice (one copy per overlapping
subscription, QoS 0 messages for offline sessions, PUBACK 0x10 "no matching
subscribers", DISCONNECT 0x81 for an invalid topic filter) Mosquitto is the
reference.  CONNACK properties are not compared: limits such as Receive Maximum
and Topic Alias Maximum are each broker's settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from mqtt_support import (
    CLOSED,
    Connack,
    MQTTEndpoint,
    MQTTScratch,
    PahoClient,
    Received,
    SubscribeOptions,
    props,
    topic_alias_property,
)
from paho.mqtt.packettypes import PacketTypes

Observation = dict[str, Any]
Scenario = Callable[[MQTTScratch, int], Observation]
CASES: list[tuple[Scenario, int]] = []

V311, V5 = 4, 5


def scenario(*versions: int) -> Callable[[Scenario], Scenario]:
    """Register a scenario, to run once for each MQTT protocol level given."""

    def register(fn: Scenario) -> Scenario:
        CASES.extend((fn, v) for v in versions)
        return fn

    return register


# --- observation helpers ------------------------------------------------------------------


def seen(messages: list[Received], *, dup: bool = False) -> list[tuple[Any, ...]]:
    return [m.seen(dup=dup) for m in messages]


def seen_with_props(messages: list[Received]) -> list[tuple[Any, ...]]:
    return [(*m.seen(), m.properties) for m in messages]


def connack_seen(c: Connack) -> tuple[bool, int]:
    """CONNACK as compared: session present and reason code (limits are per broker)."""
    return (c.session_present, c.reason_code)


def reconnect(s: MQTTScratch, old: PahoClient, **kwargs: Any) -> tuple[PahoClient, Connack]:
    """A new connection with ``old``'s client id; returns it and its CONNACK."""
    kwargs.setdefault("version", old.version)
    c = s.client(old.client_id.split("-")[0], connect=False, **kwargs)
    return c, c.connect()


def raw_answer(answer: tuple[int, bytes] | str, version: int = 5) -> Any:
    """A raw read as compared: packet type and flags with the body, or how the connection ended.

    MQTT 5 properties of DISCONNECT, PUBACK and SUBACK (reason strings) are optional
    and broker-specific, so only packet ids and reason codes are kept.
    """
    if isinstance(answer, str):
        return answer
    first, body = answer
    if version == 5 and first == 0xE0:
        body = body[:1]
    elif version == 5 and first == 0x40:
        body = body[:3]
    elif version == 5 and first == 0x90:
        length, i, shift = 0, 2, 0
        while i < len(body):
            length |= (body[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not body[i - 1] & 0x80:
                break
        body = body[:2] + body[i + length :]
    return (hex(first), body.hex())


def raw_connack(answer: tuple[int, bytes] | str) -> Any:
    """A raw CONNACK as compared: flags and reason code, without the per-broker properties."""
    return answer if isinstance(answer, str) else (hex(answer[0]), answer[1][:2].hex())


# --- scenarios ----------------------------------------------------------------------------


@scenario(V311, V5)
def qos_downgrade(s: MQTTScratch, v: int) -> Observation:
    sub = s.client("sub", version=v)
    granted = sub.subscribe(*((s.topic(f"max{q}"), q) for q in (0, 1, 2)))
    pub = s.client("pub", version=v)
    codes = []
    for sub_qos in (0, 1, 2):
        for pub_qos in (0, 1, 2):
            codes.append(pub.publish(s.topic(f"max{sub_qos}"), f"p{pub_qos}".encode(), pub_qos))
    got = sub.collect(9)
    return {"granted": granted, "codes": codes, "got": sorted(seen(got))}


@scenario(V311, V5)
def overlapping_subscriptions(s: MQTTScratch, v: int) -> Observation:
    sub = s.client("sub", version=v)
    topic = s.topic("a", "b")
    if v == V5:
        # One copy per matching subscription, each with its own QoS and identifier.
        granted = [
            sub.subscribe(
                (f, SubscribeOptions(qos=q)),
                properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=i),
            )
            for f, q, i in ((s.topic("a", "+"), 0, 3), (s.topic("#"), 2, 4), (topic, 1, 5))
        ]
        expected = 3
    else:
        granted = [sub.subscribe((s.topic("a", "+"), 1), (s.topic("#"), 1), (topic, 1))]
        expected = 1
    pub = s.client("pub", version=v)
    pub.publish(topic, b"once", 2)
    pub.publish(s.topic("a", "c"), b"plus-and-hash", 1)
    got = sub.collect(expected + (2 if v == V5 else 1))
    return {"granted": granted, "got": sorted(seen_with_props(got), key=repr)}


@scenario(V311, V5)
def retained_set_replace_and_clear(s: MQTTScratch, v: int) -> Observation:
    topic = s.retained(s.topic("r"))
    live = s.client("live", version=v)
    live.subscribe((topic, 1))
    pub = s.client("pub", version=v)
    pub.publish(topic, b"r1", 1, retain=True)
    late1 = s.client("late1", version=v)
    late1.subscribe((topic, 2))
    pub.publish(topic, b"r2", 1, retain=True)
    late2 = s.client("late2", version=v)
    late2.subscribe((topic, 0))
    pub.publish(topic, b"", 1, retain=True)
    late3 = s.client("late3", version=v)
    late3.subscribe((topic, 1))
    return {
        "live": seen(live.collect(3)),
        "late1": seen(late1.collect(2)),
        "late2": seen(late2.collect(1)),
        "late3": seen(late3.collect(0)),
    }


@scenario(V5)
def retain_handling(s: MQTTScratch, v: int) -> Observation:
    pub = s.client("pub")
    out = {}
    for rh in (0, 1, 2):
        topic = s.retained(s.topic(f"rh{rh}"))
        pub.publish(topic, f"kept{rh}".encode(), 1, retain=True)
        sub = s.client(f"sub{rh}")
        per_subscribe = []
        # 0: sent at every subscribe; 1: only for a new subscription; 2: never.
        for expected in {0: (1, 1), 1: (1, 0), 2: (0, 0)}[rh]:
            codes = sub.subscribe((topic, SubscribeOptions(qos=1, retainHandling=rh)))
            per_subscribe.append((codes, seen(sub.take(expected))))
        out[f"rh{rh}"] = per_subscribe
    return out


@scenario(V5)
def retain_as_published(s: MQTTScratch, v: int) -> Observation:
    topic = s.retained(s.topic("rap"))
    kept = s.client("kept")
    kept.subscribe((topic, SubscribeOptions(qos=1, retainAsPublished=True)))
    cleared = s.client("cleared")
    cleared.subscribe((topic, SubscribeOptions(qos=1, retainAsPublished=False)))
    pub = s.client("pub")
    pub.publish(topic, b"retained", 1, retain=True)
    pub.publish(topic, b"plain", 1)
    return {"kept": seen(kept.collect(2)), "cleared": seen(cleared.collect(2))}


@scenario(V311, V5)
def will_on_abnormal_disconnect_only(s: MQTTScratch, v: int) -> Observation:
    watcher = s.client("watch", version=v)
    watcher.subscribe((s.topic("will", "#"), 2))
    crashed = s.client("crash", version=v, connect=False)
    crashed.will(s.topic("will", "crash"), b"gone", qos=1)
    crashed.connect()
    polite = s.client("polite", version=v, connect=False)
    polite.will(s.topic("will", "polite"), b"should not be sent", qos=1)
    polite.connect()
    polite.disconnect()
    crashed.drop()
    return {"got": seen(watcher.collect(1))}


@scenario(V5)
def will_properties_and_disconnect_with_will(s: MQTTScratch, v: int) -> Observation:
    watcher = s.client("watch")
    watcher.subscribe((s.topic("will", "#"), 1))
    c = s.client("leaver", connect=False)
    c.will(
        s.topic("will", "leaver"),
        b'{"state": "gone"}',
        qos=1,
        properties=props(
            PacketTypes.WILLMESSAGE,
            ContentType="application/json",
            ResponseTopic=s.topic("reply"),
            CorrelationData=b"\x00corr",
            UserProperty=[("k", "v1"), ("k", "v2")],
            PayloadFormatIndicator=1,
        ),
    )
    c.connect()
    c.disconnect(reason_code=0x04)  # Disconnect with Will Message
    return {"got": seen_with_props(watcher.collect(1))}


@scenario(V5)
def will_delay_and_reconnect_cancels_it(s: MQTTScratch, v: int) -> Observation:
    watcher = s.client("watch")
    watcher.subscribe((s.topic("will", "#"), 1))
    will_delay = props(PacketTypes.WILLMESSAGE, WillDelayInterval=1)
    clients = {}
    for name in ("late", "back"):
        c = s.client(name, connect=False, session_expiry_s=30)
        c.will(s.topic("will", name), name.encode(), qos=1, properties=will_delay)
        c.connect()
        clients[name] = c
    for c in clients.values():
        c.drop()
    _, connack = reconnect(s, clients["back"], clean=False, session_expiry_s=0)
    before = seen(watcher.take(0, quiet_s=0.5))
    after = seen(watcher.collect(1, timeout_s=3.0, quiet_s=0.5))
    return {"reconnect": connack_seen(connack), "before": before, "after": after}


@scenario(V311, V5)
def persistent_session_queues_while_offline(s: MQTTScratch, v: int) -> Observation:
    expiry = 60 if v == V5 else None
    sub = s.client("sub", version=v, clean=False, session_expiry_s=expiry)
    first = sub.connacks[-1]
    granted = sub.subscribe((s.topic("q1"), 1), (s.topic("q2"), 2))
    sub.disconnect()
    pub = s.client("pub", version=v)
    for i in range(3):
        pub.publish(s.topic("q1"), f"one-{i}".encode(), 1)
        pub.publish(s.topic("q2"), f"two-{i}".encode(), 2)
    back, connack = reconnect(s, sub, clean=False, session_expiry_s=expiry)
    got = back.take(6)
    pub.publish(s.topic("q1"), b"online", 1)
    online = back.collect(1)
    return {
        "first": connack_seen(first),
        "granted": granted,
        "again": connack_seen(connack),
        # Order is kept per topic; across topics (and QoS levels) it is not specified.
        "got": sorted(seen(got), key=lambda m: m[0]),
        "online": seen(online),
    }


@scenario(V311, V5)
def qos0_for_offline_session(s: MQTTScratch, v: int) -> Observation:
    expiry = 60 if v == V5 else None
    sub = s.client("sub", version=v, clean=False, session_expiry_s=expiry)
    sub.subscribe((s.topic("t"), 1))
    sub.disconnect()
    pub = s.client("pub", version=v)
    pub.publish(s.topic("t"), b"qos0", 0)
    pub.publish(s.topic("t"), b"qos1", 1)
    back, connack = reconnect(s, sub, clean=False, session_expiry_s=expiry)
    return {"again": connack_seen(connack), "got": seen(back.collect(1))}


@scenario(V311, V5)
def unacknowledged_redelivered_with_dup(s: MQTTScratch, v: int) -> Observation:
    expiry = 60 if v == V5 else None
    sub = s.client("sub", version=v, clean=False, session_expiry_s=expiry, manual_ack=True)
    sub.subscribe((s.topic("t"), 1))
    pub = s.client("pub", version=v)
    for body in (b"acked", b"unacked"):
        pub.publish(s.topic("t"), body, 1)
    first = sub.collect(2)
    sub.ack(sub.raw_messages[0])
    time.sleep(0.2)  # let the PUBACK reach the broker before the connection drops
    sub.drop()
    back, connack = reconnect(s, sub, clean=False, session_expiry_s=expiry)
    return {
        "first": seen(first, dup=True),
        "again": connack_seen(connack),
        "redelivered": seen(back.collect(1), dup=True),
    }


@scenario(V311, V5)
def clean_start_discards_session(s: MQTTScratch, v: int) -> Observation:
    expiry = 60 if v == V5 else None
    sub = s.client("sub", version=v, clean=False, session_expiry_s=expiry)
    sub.subscribe((s.topic("t"), 1))
    sub.disconnect()
    pub = s.client("pub", version=v)
    pub.publish(s.topic("t"), b"queued", 1)
    fresh, connack = reconnect(s, sub, clean=True, session_expiry_s=expiry)
    queued = seen(fresh.collect(0))
    pub.publish(s.topic("t"), b"after", 1)
    fresh.disconnect()
    again, connack2 = reconnect(s, sub, clean=False, session_expiry_s=expiry)
    return {
        "clean": connack_seen(connack),
        "queued": queued,
        "after": seen(fresh.collect(0)),
        "again": connack_seen(connack2),
        "lost_subscription": seen(again.collect(0)),
    }


@scenario(V5)
def session_expiry(s: MQTTScratch, v: int) -> Observation:
    short = s.client("short", clean=False, session_expiry_s=1)
    short.subscribe((s.topic("t"), 1))
    short.disconnect()
    kept = s.client("kept", clean=False, session_expiry_s=60)
    kept.subscribe((s.topic("t"), 1))
    kept.disconnect()
    time.sleep(2.0)
    _, short_again = reconnect(s, short, clean=False, session_expiry_s=60)
    _, kept_again = reconnect(s, kept, clean=False, session_expiry_s=60)
    return {"short": connack_seen(short_again), "kept": connack_seen(kept_again)}


@scenario(V311, V5)
def session_takeover(s: MQTTScratch, v: int) -> Observation:
    first = s.raw(v)
    cid = s.client_id("same")
    first_connack = raw_connack(first.connect(cid, clean=False, session_expiry_s=60))
    granted = raw_answer(first.subscribe([(s.topic("t"), 1)]), v)
    second = s.client("same", version=v, connect=False, clean=False, session_expiry_s=60)
    connack = second.connect()
    # MQTT 5 servers may send DISCONNECT 0x8E (Mosquitto 2.0.11 does not); both must close.
    ended = first.read()
    if ended != CLOSED and ended[0] == 0xE0 and ended[1][:1] == b"\x8e":
        ended = first.read()
    pub = s.client("pub", version=v)
    pub.publish(s.topic("t"), b"to-second", 1)
    return {
        "first": (first_connack, granted),
        "takeover": connack_seen(connack),
        "first_connection": raw_answer(ended, v),
        "got": seen(second.collect(1)),
    }


@scenario(V311)
def dollar_topics_and_leading_wildcards(s: MQTTScratch, v: int) -> Observation:
    sub = s.client("sub", version=v)
    granted = sub.subscribe(("#", 0), (f"+/{s.token}/#", 0), (f"$c/{s.token}/#", 0))
    pub = s.client("pub", version=v)
    pub.publish(f"$c/{s.token}/x", b"dollar", 1)
    pub.publish(f"c/{s.token}/x", b"plain", 1)
    pub.publish(f"$c/{s.token}/x/done", b"marker", 1)
    deadline = time.monotonic() + 5.0
    while not any(m.payload == b"marker" for m in sub.messages) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    # '#' also sees other clients' traffic: keep only this scenario's.
    mine = [m for m in sub.messages if s.token in m.topic]
    return {"granted": granted, "got": sorted(seen(mine))}


@scenario(V311, V5)
def invalid_topic_filters(s: MQTTScratch, v: int) -> Observation:
    out = {}
    for bad in ("a/#/b", "a+/b", "#/a", "a/b#", "", "a/\x00b", b"a/\xff", "$share/g+/a"):
        raw = s.raw(v)
        connack = raw_connack(raw.connect(s.client_id("raw")))
        answer = raw.subscribe([(s.topic("ok"), 1), (bad, 1)])
        then = raw.read(1.0) if answer != CLOSED else CLOSED
        out[repr(bad)] = (connack, raw_answer(answer, v), raw_answer(then, v))
        raw.close()
    return out


@scenario(V5)
def no_local(s: MQTTScratch, v: int) -> Observation:
    me = s.client("me")
    me.subscribe((s.topic("nl"), SubscribeOptions(qos=1, noLocal=True)))
    me.subscribe((s.topic("local"), SubscribeOptions(qos=1, noLocal=False)))
    other = s.client("other")
    other.subscribe((s.topic("+"), 1))
    me.publish(s.topic("nl"), b"mine-nl", 1)
    me.publish(s.topic("local"), b"mine-local", 1)
    other.publish(s.topic("nl"), b"theirs-nl", 1)
    return {"me": seen(me.collect(2)), "other": seen(other.collect(3))}


@scenario(V5)
def message_expiry(s: MQTTScratch, v: int) -> Observation:
    sent_s = {b"short": 1, b"long": 60, b"retained-short": 1}

    def expiry_seen(messages: list[Received]) -> list[tuple[Any, ...]]:
        # What remains of the interval is forwarded; allow for the time spent queued.
        out = []
        for m in messages:
            left = m.properties.get("MessageExpiryInterval")
            sent = sent_s.get(m.payload)
            out.append((m.payload, left if left is None else sent - 3 <= left <= sent))
        return out

    live = s.client("live")
    live.subscribe((s.topic("e"), 1))
    off = s.client("off", clean=False, session_expiry_s=60)
    off.subscribe((s.topic("e"), 1))
    off.disconnect()
    pub = s.client("pub")
    short = props(PacketTypes.PUBLISH, MessageExpiryInterval=1)
    long = props(PacketTypes.PUBLISH, MessageExpiryInterval=60)
    retained = s.retained(s.topic("e"))
    pub.publish(s.topic("e"), b"short", 1, properties=short)
    pub.publish(s.topic("e"), b"long", 1, properties=long)
    pub.publish(s.topic("e"), b"none", 1)
    pub.publish(retained, b"retained-short", 1, retain=True, properties=short)
    time.sleep(2.1)
    back, _ = reconnect(s, off, clean=False, session_expiry_s=60)
    late = s.client("late")
    late.subscribe((retained, 1))
    return {
        "live": expiry_seen(live.collect(4)),
        "offline": expiry_seen(back.collect(2)),
        "late_retained": expiry_seen(late.collect(0)),
    }


@scenario(V5)
def topic_alias_from_client(s: MQTTScratch, v: int) -> Observation:
    sub = s.client("sub")
    sub.subscribe((s.topic("alias"), 1))
    raw = s.raw(V5)
    connack = raw_connack(raw.connect(s.client_id("raw")))
    raw.publish(s.topic("alias"), b"set", qos=1, packet_id=1, properties=topic_alias_property(1))
    set_ack = raw.read()
    raw.publish(b"", b"used", qos=1, packet_id=2, properties=topic_alias_property(1))
    use_ack = raw.read()
    raw.publish(s.topic("other"), b"moved", qos=1, packet_id=3, properties=topic_alias_property(1))
    move_ack = raw.read()
    raw.publish(b"", b"to-other", qos=1, packet_id=4, properties=topic_alias_property(1))
    other_ack = raw.read()
    unknown = s.raw(V5)
    unknown_connack = raw_connack(unknown.connect(s.client_id("unk")))
    unknown.publish(b"", b"unknown", qos=1, properties=topic_alias_property(2))
    return {
        "connacks": [connack, unknown_connack],
        "acks": [raw_answer(a) for a in (set_ack, use_ack, move_ack, other_ack)],
        "got": seen(sub.collect(2)),
        "unknown_alias": [raw_answer(unknown.read()), raw_answer(unknown.read(1.0))],
    }


@scenario(V5)
def shared_subscription(s: MQTTScratch, v: int) -> Observation:
    members = [s.client(f"m{i}") for i in range(2)]
    granted = [m.subscribe((f"$share/g{s.token}/{s.topic('work')}", 1)) for m in members]
    plain = s.client("plain")
    plain.subscribe((s.topic("work"), 1))
    pub = s.client("pub")
    sent = [f"job-{i}".encode() for i in range(8)]
    for body in sent:
        pub.publish(s.topic("work"), body, 1)
    plain_got = plain.collect(len(sent))
    deadline = time.monotonic() + 5.0
    while sum(len(m.messages) for m in members) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    shared = [r for m in members for r in m.messages]
    return {
        "granted": granted,
        "plain": seen(plain_got),
        "shared": sorted(r.payload for r in shared),
        "every_member_got_some": all(m.messages for m in members),
    }


@scenario(V5)
def message_properties_forwarded(s: MQTTScratch, v: int) -> Observation:
    sub = s.client("sub")
    sub.subscribe((s.topic("p"), 2))
    pub = s.client("pub")
    pub.publish(
        s.topic("p"),
        "héllo".encode(),
        2,
        properties=props(
            PacketTypes.PUBLISH,
            ContentType="text/plain; charset=utf-8",
            ResponseTopic=s.topic("reply"),
            CorrelationData=bytes(range(8)),
            PayloadFormatIndicator=1,
            UserProperty=[("b", "2"), ("a", "1"), ("b", "3"), ("ünï", "cödé")],
        ),
    )
    pub.publish(s.topic("p"), b"bare", 1)
    # The subscriber's client hands a QoS 2 message over only after its own PUBREL
    # round trip, so the order of the two depends on timing on either broker.
    return {"got": sorted(seen_with_props(sub.collect(2)), key=repr)}


@scenario(V5)
def puback_and_unsuback_reason_codes(s: MQTTScratch, v: int) -> Observation:
    pub = s.client("pub")
    nobody = [pub.publish(s.topic("nobody"), b"x", q) for q in (0, 1, 2)]
    sub = s.client("sub")
    sub.subscribe((s.topic("somebody"), 2))
    somebody = [pub.publish(s.topic("somebody"), b"x", q) for q in (0, 1, 2)]
    unsub = sub.unsubscribe(s.topic("somebody"), s.topic("never"))
    after = pub.publish(s.topic("somebody"), b"after", 1)
    return {
        "nobody": nobody,
        "somebody": somebody,
        "got": seen(sub.collect(3)),
        "unsuback": unsub,
        "after_unsubscribe": after,
    }


# --- the test -----------------------------------------------------------------------------


@pytest.fixture
def watchdog_s() -> float:
    return 45.0


@pytest.mark.differential
@pytest.mark.parametrize(
    ("run", "version"),
    CASES,
    ids=[f"{fn.__name__}-v{'5' if v == V5 else '311'}" for fn, v in CASES],
)
def test_rapidmq_observes_what_mosquitto_does(
    run: Scenario,
    version: int,
    mosquitto: MQTTEndpoint,
    mqtt_endpoint: MQTTEndpoint,
    mqtt_scratch_factory: Callable[[MQTTEndpoint], MQTTScratch],
) -> None:
    reference = mqtt_scratch_factory(mosquitto)
    expected = reference.normalize(run(reference, version))
    candidate = mqtt_scratch_factory(mqtt_endpoint)
    actual = candidate.normalize(run(candidate, version))
    assert actual == expected
