"""gmqtt (asyncio, MQTT 5 and 3.1.1) against the MQTT broker under test."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from mqtt_support import CLIENT_TIMEOUT_S, MQTTScratch

pytestmark = pytest.mark.anyio

VERSIONS = pytest.mark.parametrize("version", [MQTTv311, MQTTv50], ids=["v311", "v5"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Inbox:
    """Collects gmqtt's on_message calls."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    def on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        self.messages.append((topic, payload, qos, properties))
        self.arrived.set()
        return 0

    async def wait(self, n: int) -> list[tuple[str, bytes, int, dict[str, Any]]]:
        with anyio.fail_after(CLIENT_TIMEOUT_S):
            while len(self.messages) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages


async def connect(mqtt: MQTTScratch, label: str, version: int, inbox: Inbox | None = None) -> Any:
    c = gmqtt.Client(mqtt.client_id(label))
    if inbox is not None:
        c.on_message = inbox.on_message
    with anyio.fail_after(CLIENT_TIMEOUT_S):
        await c.connect(mqtt.endpoint.host, mqtt.endpoint.port, version=version, keepalive=30)
    return c


@VERSIONS
async def test_subscribe_publish_and_receive(mqtt: MQTTScratch, version: int) -> None:
    inbox = Inbox()
    sub = await connect(mqtt, "sub", version, inbox)
    pub = await connect(mqtt, "pub", version)
    try:
        sub.subscribe(mqtt.topic("#"), qos=2)
        await asyncio.sleep(0.2)  # gmqtt's subscribe does not wait for the SUBACK
        for qos in (0, 1, 2):
            pub.publish(mqtt.topic(f"q{qos}"), f"qos{qos}".encode(), qos=qos)
        got = await inbox.wait(3)
    finally:
        await pub.disconnect()
        await sub.disconnect()
    assert sorted((t, p, q) for t, p, q, _ in got) == [
        (mqtt.topic(f"q{qos}"), f"qos{qos}".encode(), qos) for qos in (0, 1, 2)
    ]


async def test_user_properties_and_content_type_reach_the_subscriber(mqtt: MQTTScratch) -> None:
    inbox = Inbox()
    sub = await connect(mqtt, "sub", MQTTv50, inbox)
    pub = await connect(mqtt, "pub", MQTTv50)
    try:
        sub.subscribe(mqtt.topic("p"), qos=1)
        await asyncio.sleep(0.2)
        pub.publish(
            mqtt.topic("p"),
            b"{}",
            qos=1,
            content_type="application/json",
            user_property=[("k1", "v1"), ("k2", "v2")],
        )
        ((topic, payload, qos, properties),) = await inbox.wait(1)
    finally:
        await pub.disconnect()
        await sub.disconnect()
    assert (topic, payload, qos) == (mqtt.topic("p"), b"{}", 1)
    assert properties["content_type"] == ["application/json"]
    assert properties["user_property"] == [("k1", "v1"), ("k2", "v2")]
