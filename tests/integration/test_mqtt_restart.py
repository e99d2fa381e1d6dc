"""Retained messages and persistent MQTT sessions survive a restart, graceful or not (paho)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rapidmq.testing import BrokerProcess

TIMEOUT_S = 5.0


class Peer:
    """A paho client on a background loop, recording what it sees."""

    def __init__(self, client_id: str, v5: bool, *, clean: bool) -> None:
        self.v5 = v5
        self.clean = clean
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else clean,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.messages: list[tuple[str, bytes, int, bool]] = []  # topic, payload, qos, retain
        self.acked: set[int] = set()
        self.lock = threading.Lock()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, p: Any) -> None:
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_message(self, c: Any, u: Any, m: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload, m.qos, bool(m.retain)))

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
        with self.lock:
            self.acked.add(mid)

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: Any, p: Any) -> None:
        self.subscribed.set()

    def connect(self, port: int) -> Peer:
        kwargs: dict[str, Any] = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean else 3600
            kwargs = {"clean_start": self.clean, "properties": props}
        self.client.connect("127.0.0.1", port, keepalive=30, **kwargs)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT_S)
        return self

    def subscribe(self, topic_filter: str, qos: int) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos)
        assert self.subscribed.wait(TIMEOUT_S)

    def publish_acked(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        deadline = time.monotonic() + TIMEOUT_S
        while info.mid not in self.acked:
            assert time.monotonic() < deadline, f"no acknowledgement of {topic}"
            time.sleep(0.01)

    def wait_messages(self, count: int) -> list[tuple[str, bytes, int, bool]]:
        deadline = time.monotonic() + TIMEOUT_S
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and nothing more
        with self.lock:
            return sorted(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_retained_messages_and_persistent_sessions_survive_a_restart(
    tmp_path: Path, v5: bool, sig: int
) -> None:
    broker = BrokerProcess("--bind", "127.0.0.1", data_dir=str(tmp_path)).start()
    try:
        assert broker.mqtt_port is not None
        keeper = Peer("keeper", v5, clean=False).connect(broker.mqtt_port)
        keeper.subscribe("news/#", 2)
        keeper.close()
        pub = Peer("pub", v5, clean=True).connect(broker.mqtt_port)
        pub.publish_acked("news/retained", b"kept", 1, retain=True)
        pub.publish_acked("news/cleared", b"gone", 1, retain=True)
        pub.publish_acked("news/cleared", b"", 1, retain=True)
        pub.publish_acked("news/queued-1", b"one", 1)
        pub.publish_acked("news/queued-2", b"two", 2)
        pub.close()
    finally:
        broker.stop(sig)

    broker = BrokerProcess("--bind", "127.0.0.1", data_dir=str(tmp_path)).start()
    try:
        assert broker.mqtt_port is not None
        keeper = Peer("keeper", v5, clean=False).connect(broker.mqtt_port)
        assert keeper.session_present is True
        # Published after the restart: the session's subscription is there.
        pub = Peer("pub", v5, clean=True).connect(broker.mqtt_port)
        pub.publish_acked("news/after", b"three", 1)
        pub.close()
        assert keeper.wait_messages(6) == [
            ("news/after", b"three", 1, False),
            ("news/cleared", b"", 1, False),  # a clearing is delivered like any message
            ("news/cleared", b"gone", 1, False),
            ("news/queued-1", b"one", 1, False),
            ("news/queued-2", b"two", 2, False),
            ("news/retained", b"kept", 1, False),
        ]
        keeper.close()
        fresh = Peer("fresh", v5, clean=True).connect(broker.mqtt_port)
        fresh.subscribe("news/#", 1)
        assert fresh.wait_messages(1) == [("news/retained", b"kept", 1, True)]
        fresh.close()
    finally:
        broker.stop()
