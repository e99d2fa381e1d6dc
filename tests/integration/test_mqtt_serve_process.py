"""`rapidmq serve` with its MQTT listeners, driven by paho-mqtt over TCP and WebSocket."""

from __future__ import annotations

import queue
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.testing import BrokerProcess


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    with BrokerProcess("--bind", "127.0.0.1") as process:
        yield process


def _client(
    broker: BrokerProcess, *, transport: str = "tcp", protocol: int = mqtt.MQTTv311
) -> tuple[mqtt.Client, queue.Queue[Any]]:
    events: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{uuid.uuid4().hex[:12]}",
        protocol=protocol,
        transport=transport,  # type: ignore[arg-type]
    )
    client.on_connect = lambda c, u, flags, rc, props: events.put(("connack", rc.value))
    client.on_subscribe = lambda c, u, mid, codes, props: events.put(("suback", codes))
    client.on_message = lambda c, u, msg: events.put(("message", msg.topic, msg.payload))
    client.on_disconnect = lambda c, u, flags, rc, props: events.put(("disconnect", rc.value))
    if transport == "websockets":
        client.ws_set_options(path="/ws")
        port = broker.mqtt_ws_port
    else:
        port = broker.mqtt_port
    assert port is not None
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    assert events.get(timeout=5) == ("connack", 0)
    return client, events


def _next(events: queue.Queue[Any], kind: str) -> Any:
    while True:
        event = events.get(timeout=5)
        if event[0] == kind:
            return event


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_paho_publishes_and_receives_over_each_listener(
    broker: BrokerProcess, transport: str
) -> None:
    topic = f"it/{uuid.uuid4().hex[:8]}/temp"
    sub, sub_events = _client(broker, transport=transport)
    pub, _ = _client(broker, transport=transport)
    try:
        sub.subscribe(topic.rsplit("/", 1)[0] + "/+", qos=1)
        _next(sub_events, "suback")
        pub.publish(topic, b"21.5", qos=1).wait_for_publish(5)
        assert _next(sub_events, "message") == ("message", topic, b"21.5")
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_mqtt_publish_reaches_an_amqp_queue_bound_to_amq_topic(broker: BrokerProcess) -> None:
    token = uuid.uuid4().hex[:8]
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", routing_key=f"sensors.{token}.*")
    pub, _ = _client(broker)
    try:
        pub.publish(f"sensors/{token}/t1", b"hello", qos=1).wait_for_publish(5)
        for _ in range(50):
            method, _props, body = ch.basic_get(q, auto_ack=True)
            if method is not None:
                break
            conn.sleep(0.05)
        assert method is not None
        assert (method.routing_key, body) == (f"sensors.{token}.t1", b"hello")
    finally:
        pub.disconnect()
        pub.loop_stop()
        conn.close()


def test_sigterm_disconnects_mqtt5_clients_with_server_shutting_down() -> None:
    process = BrokerProcess("--bind", "127.0.0.1").start()
    client, events = _client(process, protocol=mqtt.MQTTv5)
    try:
        code = process.stop(signal.SIGTERM)
        assert _next(events, "disconnect") == ("disconnect", 0x8B)
        assert code == 0
    finally:
        client.loop_stop()
