"""MQTT and AMQP 0-9-1 clients on one broker: paho-mqtt <-> pika through ``amq.topic``.

MQTT topic ``a/b/c`` is routing key ``a.b.c``; MQTT 5 user properties are AMQP
headers, and content type, correlation data, response topic and message expiry
interval (seconds) map to content_type, correlation_id, reply_to and expiration
(milliseconds).  These tests need the AMQP side of the same broker, so they skip
when the MQTT endpoint is an outside broker (RAPIDMQ_COMPAT_MQTT).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
import pytest
from compat_support import Scratch
from mqtt_support import MQTTEndpoint, MQTTScratch, props
from paho.mqtt.packettypes import PacketTypes

POLL_TIMEOUT_S = 5.0


@pytest.fixture
def amqp(mqtt_endpoint: MQTTEndpoint, scratch_factory: Callable[[str], Scratch]) -> Scratch:
    if mqtt_endpoint.amqp_url is None:
        pytest.skip(f"{mqtt_endpoint.name} is not the AMQP broker under test: no interop to test")
    return scratch_factory(mqtt_endpoint.amqp_url)


def get_one(ch: object, queue: str) -> tuple[object, object, bytes]:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        method, props_, body = ch.basic_get(queue, auto_ack=True)  # type: ignore[attr-defined]
        if method is not None:
            return method, props_, body
        assert time.monotonic() < deadline, f"nothing arrived on {queue!r}"
        ch.connection.sleep(0.02)  # type: ignore[attr-defined]


def test_amqp_queue_bound_with_star_receives_mqtt_publish_with_mapped_properties(
    mqtt: MQTTScratch, amqp: Scratch
) -> None:
    ch = amqp.channel()
    q = amqp.queue()
    ch.queue_declare(q)
    ch.queue_bind(q, "amq.topic", f"compat.{mqtt.token}.a.b.*")
    pub = mqtt.client("pub")
    pub.publish(
        mqtt.topic("a", "b", "c"),
        b"from mqtt",
        1,
        properties=props(
            PacketTypes.PUBLISH,
            UserProperty=[("tenant", "t1"), ("trace", "abc")],
            ContentType="application/json",
            CorrelationData=f"corr-{mqtt.token}".encode(),
            ResponseTopic=f"replies-{mqtt.token}",
            MessageExpiryInterval=60,
        ),
    )
    pub.publish(mqtt.topic("a", "b", "c", "d"), b"too deep for *", 1)
    method, p, body = get_one(ch, q)
    assert (body, method.exchange, method.routing_key) == (  # type: ignore[attr-defined]
        b"from mqtt",
        "amq.topic",
        f"compat.{mqtt.token}.a.b.c",
    )
    assert p.headers == {"tenant": "t1", "trace": "abc"}  # type: ignore[attr-defined]
    assert (p.content_type, p.correlation_id, p.reply_to) == (  # type: ignore[attr-defined]
        "application/json",
        f"corr-{mqtt.token}",
        f"replies-{mqtt.token}",
    )
    assert 58_000 <= int(p.expiration) <= 60_000  # type: ignore[attr-defined]
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_mqtt_subscriber_with_plus_receives_amqp_publish_with_mapped_properties(
    mqtt: MQTTScratch, amqp: Scratch
) -> None:
    sub = mqtt.client("sub")
    assert sub.subscribe((mqtt.topic("x", "+", "z"), 1)) == [1]
    ch = amqp.channel()
    key = f"compat.{mqtt.token}.x.y.z"
    ch.basic_publish(
        "amq.topic",
        key,
        b"from amqp",
        pika.BasicProperties(
            content_type="text/plain",
            correlation_id=f"corr-{mqtt.token}",
            reply_to=f"replies-{mqtt.token}",
            headers={"origin": "pika", "kind": "test"},
            expiration="30000",
        ),
    )
    ch.basic_publish("amq.topic", f"compat.{mqtt.token}.x.y.y.z", b"not matched by +")
    (got,) = sub.expect(1)
    assert (got.topic, got.payload, got.retain) == (mqtt.topic("x", "y", "z"), b"from amqp", False)
    expiry = got.properties.pop("MessageExpiryInterval")
    assert 28 <= expiry <= 30
    user = got.properties.pop("UserProperty")
    assert sorted(user) == [("kind", "test"), ("origin", "pika")]
    assert got.properties == {
        "ContentType": "text/plain",
        "CorrelationData": f"corr-{mqtt.token}".encode(),
        "ResponseTopic": f"replies-{mqtt.token}",
    }


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_dots_in_mqtt_topics_and_slashes_in_routing_keys_are_swapped(
    mqtt: MQTTScratch, amqp: Scratch, version: int
) -> None:
    ch = amqp.channel()
    q = amqp.queue()
    ch.queue_declare(q)
    ch.queue_bind(q, "amq.topic", f"compat.{mqtt.token}.#")
    sub = mqtt.client("sub", version=version)
    sub.subscribe((mqtt.topic("#"), 1))
    pub = mqtt.client("pub", version=version)
    pub.publish(mqtt.topic("v1.2", "x"), b"mqtt", 1)
    method, _, body = get_one(ch, q)
    assert (method.routing_key, body) == (f"compat.{mqtt.token}.v1/2.x", b"mqtt")  # type: ignore[attr-defined]
    ch.basic_publish("amq.topic", f"compat.{mqtt.token}.a/b.c", b"amqp")
    assert [m.topic for m in sub.take(2)] == [mqtt.topic("v1.2", "x"), mqtt.topic("a.b", "c")]
