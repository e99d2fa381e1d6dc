"""``--mqtt-anonymous-usernames``: devices that send a user name and no password.

Real paho-mqtt and aiomqtt clients, MQTT 3.1.1 and 5, against a ``rapidmq serve``
process on free ports.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiomqtt
import anyio
import pytest
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.testing import BrokerProcess

TIMEOUT_S = 10.0
VERSIONS = pytest.mark.parametrize("level", [paho.MQTTv311, paho.MQTTv5], ids=["v311", "v5"])
#: What a refused CONNECT answers: CONNACK 5 in 3.1.1, reason 0x87 in 5; paho 2 reports
#: both as its reason code 0x87, "Not authorized" (the 3.1.1 code is checked on the wire
#: in tests/unit/test_mqtt_connection.py).
NOT_AUTHORIZED = {paho.MQTTv311: 0x87, paho.MQTTv5: 0x87}


@pytest.fixture(scope="module")
def on_broker() -> Iterator[BrokerProcess]:
    with BrokerProcess("--bind", "127.0.0.1", "--mqtt-anonymous-usernames") as broker:
        yield broker


@pytest.fixture(scope="module")
def off_broker() -> Iterator[BrokerProcess]:
    with BrokerProcess("--bind", "127.0.0.1") as broker:
        yield broker


def connections(broker: BrokerProcess) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/api/connections")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        result: list[dict[str, Any]] = json.loads(response.read())
    return result


def wait_for_connection(broker: BrokerProcess, client_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for conn in connections(broker):
            if conn["client_properties"].get("client_id") == client_id:
                return conn
        time.sleep(0.05)
    raise AssertionError(f"connection {client_id} not listed")


def wait_for_log(broker: BrokerProcess, text: str) -> list[str]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        found = [line[line.index(text) :] for line in list(broker.output) if text in line]
        if found:
            return found
        time.sleep(0.05)
    return []


class PahoDevice:
    """A paho client that sends a user name and no password, as such devices do."""

    def __init__(self, broker: BrokerProcess, client_id: str, name: str, level: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=level)
        self.client.username_pw_set(name, None)
        self.connack = threading.Event()
        self.reason_code = -1
        self.messages: list[tuple[str, bytes]] = []
        self.got_message = threading.Event()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.mqtt_port or 0, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.reason_code = int(reason.value)
        self.connack.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self.messages.append((message.topic, message.payload))
        self.got_message.set()

    def wait_connack(self) -> int:
        assert self.connack.wait(TIMEOUT_S), "no CONNACK"
        return self.reason_code

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@VERSIONS
def test_paho_user_name_without_password_logs_in_as_the_default_user(
    on_broker: BrokerProcess, level: int
) -> None:
    client_id = f"paho-anon-{level}"
    device = PahoDevice(on_broker, client_id, f"sensor-{level}", level)
    try:
        assert device.wait_connack() == 0
        # The default user's permissions apply: it may subscribe and publish.
        device.client.subscribe(f"devices/{client_id}", qos=1)
        assert device.subscribed.wait(TIMEOUT_S)
        device.client.publish(f"devices/{client_id}", b"reading", qos=1)
        assert device.got_message.wait(TIMEOUT_S)
        assert device.messages == [(f"devices/{client_id}", b"reading")]
        conn = wait_for_connection(on_broker, client_id)
        assert (conn["user"], conn["vhost"], conn["client_properties"]) == (
            "guest",
            "/",
            {"client_id": client_id, "username": f"sensor-{level}"},
        )
        assert wait_for_log(on_broker, f"(user 'guest' (sent 'sensor-{level}')") == [
            f"(user 'guest' (sent 'sensor-{level}'), vhost '/', client '{client_id}')"
        ]
    finally:
        device.close()


@VERSIONS
def test_paho_user_name_with_a_wrong_password_is_still_refused_with_the_setting(
    on_broker: BrokerProcess, level: int
) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-bad-{level}", protocol=level)
    client.username_pw_set("guest", "wrong")
    codes: list[int] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        codes.append(int(reason.value))
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", on_broker.mqtt_port or 0, keepalive=30)
    client.loop_start()
    try:
        assert done.wait(TIMEOUT_S)
        assert codes == [NOT_AUTHORIZED[level]]
    finally:
        client.loop_stop()


@VERSIONS
def test_paho_user_name_without_password_is_refused_when_the_setting_is_off(
    off_broker: BrokerProcess, level: int
) -> None:
    device = PahoDevice(off_broker, f"paho-off-{level}", "sensor-off", level)
    try:
        assert device.wait_connack() == NOT_AUTHORIZED[level]
    finally:
        device.client.loop_stop()


AIO_VERSIONS = pytest.mark.parametrize(
    "protocol",
    [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5],
    ids=["v311", "v5"],
)


def aio_device(
    broker: BrokerProcess, client_id: str, protocol: aiomqtt.ProtocolVersion
) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.mqtt_port or 0,
        identifier=client_id,
        username=f"device-{client_id}",
        password=None,
        protocol=protocol,
        timeout=TIMEOUT_S,
    )


@AIO_VERSIONS
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiomqtt_user_name_without_password_logs_in_as_the_default_user(
    on_broker: BrokerProcess, protocol: aiomqtt.ProtocolVersion, anyio_backend: str
) -> None:
    client_id = f"aio-anon-{protocol.value}"
    async with aio_device(on_broker, client_id, protocol) as client:
        await client.subscribe(f"devices/{client_id}", qos=1)
        await client.publish(f"devices/{client_id}", b"reading", qos=1)
        with anyio.fail_after(TIMEOUT_S):
            message = await anext(aiter(client.messages))
        assert (str(message.topic), message.payload) == (f"devices/{client_id}", b"reading")
        conn = await anyio.to_thread.run_sync(wait_for_connection, on_broker, client_id)
        assert (conn["user"], conn["client_properties"]) == (
            "guest",
            {"client_id": client_id, "username": f"device-{client_id}"},
        )


@AIO_VERSIONS
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiomqtt_user_name_without_password_is_refused_when_the_setting_is_off(
    off_broker: BrokerProcess, protocol: aiomqtt.ProtocolVersion, anyio_backend: str
) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with aio_device(off_broker, f"aio-off-{protocol.value}", protocol):
            pass
    rc = refused.value.rc
    assert (rc if isinstance(rc, int) else int(rc.value)) == 0x87  # 5 in 3.1.1, as paho maps it
