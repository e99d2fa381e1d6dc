"""The amqtt client (asyncio, MQTT 3.1.1) against the MQTT broker under test."""

from __future__ import annotations

import anyio
import pytest
from amqtt.client import MQTTClient
from mqtt_support import CLIENT_TIMEOUT_S, MQTTScratch

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def connect(mqtt: MQTTScratch, label: str, *, clean: bool = True) -> MQTTClient:
    c = MQTTClient(client_id=mqtt.client_id(label), config={"auto_reconnect": False})
    with anyio.fail_after(CLIENT_TIMEOUT_S):
        await c.connect(f"mqtt://{mqtt.endpoint.host}:{mqtt.endpoint.port}/", cleansession=clean)
    return c


async def receive(c: MQTTClient, n: int) -> list[tuple[str, bytes, int, bool]]:
    got = []
    for _ in range(n):
        message = await c.deliver_message(timeout_duration=CLIENT_TIMEOUT_S)
        assert message is not None, f"only {len(got)} of {n} messages arrived"
        got.append((message.topic, bytes(message.data), message.qos, message.retain))
    return got


async def test_subscribe_publish_and_receive_at_each_qos(mqtt: MQTTScratch) -> None:
    sub = await connect(mqtt, "sub")
    pub = await connect(mqtt, "pub")
    try:
        assert await sub.subscribe([(mqtt.topic("q", "+"), 2)]) == [2]
        for qos in (0, 1, 2):
            await pub.publish(mqtt.topic("q", str(qos)), f"qos{qos}".encode(), qos=qos)
        got = await receive(sub, 3)
    finally:
        await pub.disconnect()
        await sub.disconnect()
    assert got == [(mqtt.topic("q", str(q)), f"qos{q}".encode(), q, False) for q in (0, 1, 2)]


async def test_retained_message_and_persistent_session(mqtt: MQTTScratch) -> None:
    topic = mqtt.retained(mqtt.topic("r"))
    mqtt.client("sub", version=4, clean=False, connect=False)  # registers the session cleanup
    sub = await connect(mqtt, "sub", clean=False)
    pub = await connect(mqtt, "pub")
    try:
        await pub.publish(topic, b"retained", qos=1, retain=True)
        assert await sub.subscribe([(topic, 1)]) == [1]
        assert await receive(sub, 1) == [(topic, b"retained", 1, True)]
        await sub.disconnect()
        await pub.publish(topic, b"while offline", qos=1)
        sub = await connect(mqtt, "sub", clean=False)
        assert await receive(sub, 1) == [(topic, b"while offline", 1, False)]
    finally:
        await pub.disconnect()
        await sub.disconnect()
