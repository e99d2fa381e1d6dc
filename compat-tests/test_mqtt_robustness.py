"""Malformed, truncated and random MQTT input closes only its own connection.

A healthy paho subscriber stays connected throughout; after each bad
connection the broker must have closed that one and must still deliver a
publish to the healthy subscriber.
"""

from __future__ import annotations

import queue
import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_support import MQTTEndpoint
from paho.mqtt.enums import CallbackAPIVersion

CONNECT_311 = bytes.fromhex("101000044d5154540402003c0004") + b"fuzz"


def _client(prefix: str) -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{prefix}-{uuid.uuid4().hex[:8]}")


class Healthy:
    """A subscriber that must keep working while others misbehave."""

    def __init__(self, endpoint: MQTTEndpoint) -> None:
        self.topic = f"robust/{uuid.uuid4().hex[:10]}"
        self.got: queue.Queue[bytes] = queue.Queue()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"h-{uuid.uuid4().hex[:8]}"
        )
        subscribed: queue.Queue[Any] = queue.Queue()
        self.client.on_message = lambda c, u, m: self.got.put(m.payload)
        self.client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(codes)
        self.client.connect(endpoint.host, endpoint.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(self.topic, qos=1)
        subscribed.get(timeout=5)
        self.publisher = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}"
        )
        self.publisher.connect(endpoint.host, endpoint.port, keepalive=30)
        self.publisher.loop_start()

    def check(self) -> None:
        body = uuid.uuid4().bytes
        self.publisher.publish(self.topic, body, qos=1).wait_for_publish(5)
        while True:
            if self.got.get(timeout=5) == body:
                return

    def close(self) -> None:
        for c in (self.client, self.publisher):
            c.disconnect()
            c.loop_stop()


@pytest.fixture
def healthy(mqtt_endpoint: MQTTEndpoint) -> Iterator[Healthy]:
    h = Healthy(mqtt_endpoint)
    yield h
    h.close()


def _closed_by_server(endpoint: MQTTEndpoint, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` on a fresh socket; return what came back before the server closed it."""
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


BAD_INPUTS = {
    "garbage-first-byte": b"\x00\x01\x02\x03",
    "publish-before-connect": b"\x30\x05\x00\x01a" + b"xy",
    "remaining-length-five-bytes": b"\x10\xff\xff\xff\xff\x7f",
    "bad-protocol-name": bytes.fromhex("100c0004585858580402003c0000"),
    "reserved-connect-flag": bytes.fromhex("100c00044d5154540403003c0000"),
    "qos3-publish-after-connect": CONNECT_311 + b"\x36\x05\x00\x01a\x00\x01",
    "subscribe-bad-flags-after-connect": CONNECT_311 + b"\x80\x06\x00\x01\x00\x01a\x00",
    "second-connect": CONNECT_311 + CONNECT_311,
    "truncated-then-eof": CONNECT_311 + b"\x30\x7f\x00\x05topic",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_closes_only_that_connection(
    mqtt_endpoint: MQTTEndpoint, healthy: Healthy, name: str
) -> None:
    data = BAD_INPUTS[name]
    if name == "truncated-then-eof":
        with socket.create_connection((mqtt_endpoint.host, mqtt_endpoint.port), timeout=5) as s:
            s.sendall(data)  # then close half-way through a PUBLISH
    else:
        received = _closed_by_server(mqtt_endpoint, data)
        # Only a CONNACK (to the valid CONNECT) may come back before the close.
        assert received == b"" or received.startswith(b"\x20\x02")
    healthy.check()


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(noise=st.binary(min_size=1, max_size=64))
def test_random_bytes_after_connect_never_hurt_other_clients(
    mqtt_endpoint: MQTTEndpoint, healthy: Healthy, noise: bytes
) -> None:
    with socket.create_connection((mqtt_endpoint.host, mqtt_endpoint.port), timeout=5) as s:
        s.sendall(CONNECT_311 + noise + struct.pack("!BB", 0xE0, 0))
    healthy.check()
