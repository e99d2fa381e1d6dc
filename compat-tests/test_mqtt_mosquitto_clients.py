"""Debian's mosquitto_pub / mosquitto_sub command-line clients against the broker under test."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from mqtt_support import MQTTScratch, props
from paho.mqtt.packettypes import PacketTypes

TOOL_TIMEOUT_S = 10.0
WAIT_S = "5"  # mosquitto_sub -W: give up after this many seconds

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="mosquitto-clients is not installed (apt-get install mosquitto-clients)",
)

VERSIONS = pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])


def run(mqtt: MQTTScratch, tool: str, *args: str) -> str:
    cmd = [tool, "-h", mqtt.endpoint.host, "-p", str(mqtt.endpoint.port), *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT_S, check=False)
    assert proc.returncode == 0, (cmd, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout.decode()


@VERSIONS
def test_retained_message_from_mosquitto_pub_is_read_by_mosquitto_sub(
    mqtt: MQTTScratch, version: str
) -> None:
    topic = mqtt.retained(mqtt.topic("r"))
    run(mqtt, "mosquitto_pub", "-V", version, "-t", topic, "-m", "hello", "-q", "1", "-r")
    out = run(
        mqtt, "mosquitto_sub", "-V", version, "-t", topic, "-q", "1", "-C", "1", "-W", WAIT_S,
        "-F", "%t|%p|%q|%r",
    )  # fmt: skip
    assert out == f"{topic}|hello|1|1\n"


@VERSIONS
def test_persistent_mosquitto_sub_session_receives_queued_paho_messages(
    mqtt: MQTTScratch, version: str
) -> None:
    paho_version = 5 if version == "mqttv5" else 4
    expiry = ["-x", "60"] if version == "mqttv5" else []
    # Registers the session for cleanup; mosquitto_sub uses the same client id.
    session = mqtt.client("sub", version=paho_version, clean=False, connect=False)
    topic = mqtt.topic("q")
    common = ["-V", version, "-i", session.client_id, "-c", "-q", "1", "-t", topic, *expiry]
    run(mqtt, "mosquitto_sub", *common, "-E")  # subscribe, then leave the session behind
    pub = mqtt.client("pub", version=paho_version)
    for i in range(3):
        pub.publish(topic, f"queued-{i}".encode(), 1)
    out = run(mqtt, "mosquitto_sub", *common, "-C", "3", "-W", WAIT_S, "-F", "%p|%q")
    assert out.splitlines() == [f"queued-{i}|1" for i in range(3)]


def test_mosquitto_pub_mqtt5_properties_reach_paho(mqtt: MQTTScratch) -> None:
    sub = mqtt.client("sub")
    sub.subscribe((mqtt.topic("p"), 1))
    run(
        mqtt, "mosquitto_pub", "-V", "mqttv5", "-t", mqtt.topic("p"), "-m", "body", "-q", "1",
        "-D", "publish", "user-property", "origin", "cli",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", mqtt.topic("reply"),
        "-D", "publish", "correlation-data", "c-42",
    )  # fmt: skip
    (got,) = sub.expect(1)
    assert (got.payload, got.qos) == (b"body", 1)
    assert got.properties == {
        "UserProperty": [("origin", "cli")],
        "ContentType": "text/plain",
        "ResponseTopic": mqtt.topic("reply"),
        "CorrelationData": b"c-42",
    }


def test_mosquitto_sub_sees_the_content_type_set_by_paho(mqtt: MQTTScratch) -> None:
    topic = mqtt.retained(mqtt.topic("u"))
    pub = mqtt.client("pub")
    pub.publish(
        topic, b"x", 1, retain=True, properties=props(PacketTypes.PUBLISH, ContentType="a/b")
    )
    out = run(
        mqtt, "mosquitto_sub", "-V", "mqttv5", "-t", topic, "-C", "1", "-W", WAIT_S,
        "-F", "%t|%p|%C",
    )  # fmt: skip
    assert out == f"{topic}|x|a/b\n"
