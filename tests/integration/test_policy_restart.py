"""Policies and operator policies survive a restart on the same RocksDB data dir."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pika
import pytest

from rapidmq.testing import BrokerProcess

POLICY = {
    "pattern": "^dq",
    "definition": {"max-length": 3, "ha-mode": "all"},
    "priority": 2,
    "apply-to": "queues",
}
OPERATOR_POLICY = {"pattern": "^dq", "definition": {"max-length": 2}, "priority": 0}


def _api(broker: BrokerProcess) -> httpx.Client:
    assert broker.http_port is not None
    return httpx.Client(
        base_url=f"http://127.0.0.1:{broker.http_port}", auth=("guest", "guest"), timeout=10.0
    )


def _publish(broker: BrokerProcess, count: int) -> list[bytes]:
    """Publish ``count`` messages to ``dq``, then take them all back."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare("dq", durable=True)
        for i in range(count):
            channel.basic_publish("", "dq", f"m{i}".encode())
        bodies = []
        while True:
            method, _, body = channel.basic_get("dq", auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_policies_survive_a_restart_and_apply_to_restored_queues(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    data_dir = str(tmp_path / "data")
    with BrokerProcess("--bind", "127.0.0.1", data_dir=data_dir) as first, _api(first) as api:
        assert api.put("/api/policies/%2F/limit", json=POLICY).status_code == 201
        assert api.put("/api/operator-policies/%2F/cap", json=OPERATOR_POLICY).status_code == 201
        assert api.put("/api/policies/%2F/gone", json=POLICY).status_code == 201
        assert api.delete("/api/policies/%2F/gone").status_code == 204
        assert _publish(first, 5) == [b"m3", b"m4"]
        policies = api.get("/api/policies").json()
        operator_policies = api.get("/api/operator-policies").json()
        first.stop(stop_signal)

    with BrokerProcess("--bind", "127.0.0.1", data_dir=data_dir) as second, _api(second) as api:
        assert any(", 2 policies in " in line for line in second.output)  # limit and cap
        assert api.get("/api/policies").json() == policies
        assert api.get("/api/operator-policies").json() == operator_policies
        queue = api.get("/api/queues/%2F/dq").json()
        assert (
            queue["policy"],
            queue["operator_policy"],
            queue["effective_policy_definition"],
        ) == (
            "limit",
            "cap",
            {"ha-mode": "all", "max-length": 2},
        )
        assert _publish(second, 4) == [b"m2", b"m3"]
