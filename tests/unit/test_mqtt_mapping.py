"""MQTT PUBLISH <-> core Message conversion and the retained store."""

from __future__ import annotations

from rapidmq.core.message import Message, Properties
from rapidmq.protocols.mqtt.mapping import (
    message_qos,
    message_to_properties,
    publish_to_message,
)
from rapidmq.protocols.mqtt.packets import MQTTProperties, Publish
from rapidmq.protocols.mqtt.retained import RetainedStore


def test_mqtt_properties_round_trip_exactly_through_a_message() -> None:
    props = MQTTProperties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="application/json",
        response_topic="reply/a.b",
        correlation_data=b"\xff\x00binary",
        user_properties=[("k", "1"), ("x", "y"), ("k", "2")],
    )
    publish = Publish("a/b.c", b"{}", qos=2, retain=True, packet_id=4, properties=props)
    message = publish_to_message(publish, "a/b.c", origin="mqtt:/:c", now=10.0)
    assert (message.exchange, message.routing_key, message.body) == ("amq.topic", "a.b/c", b"{}")
    assert message.properties == Properties(
        content_type="application/json",
        headers={
            "k": ["1", "2"],
            "x": "y",
            "x-mqtt-correlation-data": b"\xff\x00binary",
            "x-mqtt-payload-format": 1,
        },
        delivery_mode=2,
        reply_to="reply.a/b",
        expiration="60000",
    )
    assert message.annotations == {
        "origin": "mqtt:/:c",
        "retain": True,
        "published_at": 10.0,
        "qos": 2,
        "user_properties": (("k", "1"), ("x", "y"), ("k", "2")),
    }
    assert message_qos(message) == 2
    back = message_to_properties(message, now=10.0)
    assert back == MQTTProperties(
        payload_format_indicator=1,
        message_expiry_interval=60,
        content_type="application/json",
        response_topic="reply/a.b",
        correlation_data=b"\xff\x00binary",
        user_properties=[("k", "1"), ("x", "y"), ("k", "2")],  # the original order
    )


def test_expiry_forwarded_is_what_remains() -> None:
    props = MQTTProperties(message_expiry_interval=10)
    message = publish_to_message(Publish("t", b"", properties=props), "t", origin="o", now=0.0)
    assert message_to_properties(message, now=3.5) == MQTTProperties(message_expiry_interval=7)
    assert message_to_properties(message, now=10.0) == MQTTProperties(message_expiry_interval=0)


def test_amqp_message_maps_to_mqtt() -> None:
    message = Message(
        "amq.topic",
        "a.b",
        b"x",
        Properties(headers={"n": 1, "b": b"raw"}, expiration="1500", correlation_id="c-1"),
    )
    assert message_qos(message) == 0
    assert message_to_properties(message, now=0.0) == MQTTProperties(
        message_expiry_interval=2,
        correlation_data=b"c-1",
        user_properties=[("n", "1"), ("b", "raw")],
    )
    assert message_qos(message.evolve(delivery_mode=2)) == 1
    assert message_to_properties(Message("amq.topic", "a", b""), now=0.0) is None


def test_retained_store_matches_filters_and_drops_expired() -> None:
    store = RetainedStore()

    def retained(topic: str, body: bytes, expiry: int | None = None) -> Message:
        props = MQTTProperties(message_expiry_interval=expiry) if expiry else None
        publish = Publish(topic, body, retain=True, properties=props)
        return publish_to_message(publish, topic, origin="o", now=0.0)

    store.put("a/b", retained("a/b", b"1"))
    store.put("a/c", retained("a/c", b"2", expiry=5))
    store.put("$SYS/x", retained("$SYS/x", b"3"))
    assert [(t, m.body) for t, m in store.matching("a/+", now=1.0)] == [
        ("a/b", b"1"),
        ("a/c", b"2"),
    ]
    assert [t for t, _ in store.matching("#", now=5.0)] == ["a/b"]
    assert len(store) == 2
    store.put("a/b", retained("a/b", b""))
    assert [t for t, _ in store.matching("#", now=5.0)] == []
    assert store.get("$SYS/x", now=5.0) is not None
