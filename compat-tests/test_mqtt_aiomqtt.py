"""aiomqtt (asyncio, over paho-mqtt) against the MQTT broker under test."""

from __future__ import annotations

import aiomqtt
import anyio
import pytest
from mqtt_support import CLIENT_TIMEOUT_S, MQTTScratch
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

pytestmark = pytest.mark.anyio

VERSIONS = pytest.mark.parametrize(
    "protocol",
    [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5],
    ids=["v311", "v5"],
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(mqtt: MQTTScratch, label: str, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
    return aiomqtt.Client(
        mqtt.endpoint.host,
        mqtt.endpoint.port,
        identifier=mqtt.client_id(label),
        protocol=protocol,
        timeout=CLIENT_TIMEOUT_S,
    )


async def receive(c: aiomqtt.Client, n: int) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    with anyio.fail_after(CLIENT_TIMEOUT_S):
        async for message in c.messages:
            got.append(message)
            if len(got) == n:
                return got
    return got


@VERSIONS
async def test_publish_and_receive_at_each_qos(
    mqtt: MQTTScratch, protocol: aiomqtt.ProtocolVersion
) -> None:
    async with client(mqtt, "sub", protocol) as sub, client(mqtt, "pub", protocol) as pub:
        await sub.subscribe(mqtt.topic("+"), qos=2)
        for qos in (0, 1, 2):
            await pub.publish(mqtt.topic(f"q{qos}"), f"qos{qos}".encode(), qos=qos)
        got = await receive(sub, 3)
    assert [(m.topic.value, m.payload, m.qos, m.retain) for m in got] == [
        (mqtt.topic(f"q{qos}"), f"qos{qos}".encode(), qos, False) for qos in (0, 1, 2)
    ]


@VERSIONS
async def test_retained_message_is_sent_on_subscribe(
    mqtt: MQTTScratch, protocol: aiomqtt.ProtocolVersion
) -> None:
    topic = mqtt.retained(mqtt.topic("status"))
    async with client(mqtt, "pub", protocol) as pub:
        await pub.publish(topic, b"online", qos=1, retain=True)
    async with client(mqtt, "sub", protocol) as sub:
        await sub.subscribe(topic, qos=1)
        (got,) = await receive(sub, 1)
    assert (got.topic.value, got.payload, got.qos, got.retain) == (topic, b"online", 1, True)


async def test_mqtt5_properties_reach_the_subscriber(mqtt: MQTTScratch) -> None:
    v5 = aiomqtt.ProtocolVersion.V5
    sent = Properties(PacketTypes.PUBLISH)
    sent.ContentType = "text/plain"
    sent.CorrelationData = b"corr-1"
    sent.ResponseTopic = mqtt.topic("reply")
    sent.UserProperty = [("k", "v")]
    async with client(mqtt, "sub", v5) as sub, client(mqtt, "pub", v5) as pub:
        await sub.subscribe(mqtt.topic("req"), qos=1)
        await pub.publish(mqtt.topic("req"), b"ping", qos=1, properties=sent)
        (got,) = await receive(sub, 1)
    assert got.properties is not None
    assert (
        got.properties.ContentType,
        got.properties.CorrelationData,
        got.properties.ResponseTopic,
        got.properties.UserProperty,
    ) == ("text/plain", b"corr-1", mqtt.topic("reply"), [("k", "v")])
