"""Acknowledged MQTT messages survive SIGKILL (paho, MQTT 3.1.1 and 5).

A persistent-session subscriber is offline while a publisher sends numbered
QoS 1 and QoS 2 messages and the broker is killed at random points over
several rounds.  Every message the publisher got a PUBACK or PUBCOMP for must
reach the subscriber after the last restart; a QoS 2 one exactly once, and a
QoS 1 one more than once only with DUP set on the repeats.

After a crash the broker re-sends deliveries that were in flight with DUP but
under new packet ids (a client's packet-id state from before the crash is not
known to the broker), which is why this test keys messages by their payload.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rapidmq.testing import BrokerProcess

ROUNDS = 4
SEED = 20261129
TIMEOUT_S = 5.0


def _client(client_id: str, v5: bool, clean: bool) -> paho.Client:
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else clean,
    )


def _connect(client: paho.Client, port: int, v5: bool, clean: bool) -> threading.Event:
    connected = threading.Event()
    present: list[bool] = []

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, p: Any) -> None:
        present.append(bool(flags.session_present))
        connected.set()

    client.on_connect = on_connect
    kwargs: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 3600
        kwargs = {"clean_start": clean, "properties": props}
    client.connect("127.0.0.1", port, keepalive=30, **kwargs)
    client.loop_start()
    assert connected.wait(TIMEOUT_S)
    client.user_data_set(present)
    return connected


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)).start()


def _publish_until_killed(
    broker: BrokerProcess, v5: bool, first: int, kill_after_s: float
) -> tuple[set[int], int]:
    """Publish numbered messages, then SIGKILL the broker mid-stream.

    Returns:
        The acknowledged numbers, and the next number to use.
    """
    port = broker.mqtt_port
    assert port is not None
    client = _client(f"pub-{first}", v5, clean=True)
    client.reconnect_delay_set(60, 60)  # no reconnect to the dead broker during the round
    mids: dict[int, int] = {}
    acked_mids: set[int] = set()
    lock = threading.Lock()

    def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
        if not rc.is_failure:
            with lock:
                acked_mids.add(mid)

    client.on_publish = on_publish
    _connect(client, port, v5, clean=True)
    deadline = time.monotonic() + kill_after_s
    number = first
    while time.monotonic() < deadline:
        info = client.publish("crash/n", str(number).encode(), 1 if number % 2 else 2)
        mids[info.mid] = number
        number += 1
        if number % 20 == 0:
            time.sleep(0.002)
    broker.stop(signal.SIGKILL)
    client.loop_stop()
    with lock:
        return {mids[mid] for mid in acked_mids if mid in mids}, number


@pytest.mark.parametrize("v5", [False, True], ids=["v311", "v5"])
def test_acknowledged_messages_survive_sigkill(tmp_path: Path, v5: bool) -> None:
    rng = random.Random(SEED + v5)
    started = time.monotonic()
    broker = _broker(tmp_path)
    try:
        assert broker.mqtt_port is not None
        sub = _client("crash-sub", v5, clean=False)
        subscribed = threading.Event()
        sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        _connect(sub, broker.mqtt_port, v5, clean=False)
        sub.subscribe("crash/#", 2)
        assert subscribed.wait(TIMEOUT_S)
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()

    acknowledged: set[int] = set()
    number = 0
    for _ in range(ROUNDS):
        broker = _broker(tmp_path)
        try:
            got, number = _publish_until_killed(broker, v5, number, rng.uniform(0.1, 0.4))
            acknowledged |= got
        finally:
            broker.stop(signal.SIGKILL)
    assert acknowledged, "no message was acknowledged before the kills"

    broker = _broker(tmp_path)
    try:
        assert broker.mqtt_port is not None
        received: dict[int, list[tuple[int, bool]]] = defaultdict(list)
        lock = threading.Lock()
        last = [time.monotonic()]

        def on_message(c: Any, u: Any, m: paho.MQTTMessage) -> None:
            with lock:
                received[int(m.payload)].append((m.qos, bool(m.dup)))
                last[0] = time.monotonic()

        sub = _client("crash-sub", v5, clean=False)
        sub.on_message = on_message
        _connect(sub, broker.mqtt_port, v5, clean=False)
        assert sub._userdata == [True]  # session present
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if acknowledged <= received.keys() and time.monotonic() - last[0] > 0.5:
                    break
            time.sleep(0.05)
        sub.disconnect()
        sub.loop_stop()
    finally:
        broker.stop()

    missing = sorted(acknowledged - received.keys())
    assert not missing, f"acknowledged but lost: {missing[:20]} ({len(missing)})"
    for n, copies in received.items():
        qos = 1 if n % 2 else 2
        assert all(q == qos for q, _ in copies), (n, copies)
        if qos == 2 and n in acknowledged:
            assert len(copies) == 1, (n, copies)
        assert not any(dup is False for _, dup in copies[1:]), (n, copies)
    assert time.monotonic() - started < 30
