"""`rapidmq serve` as a process: the ready line, signals, and start-up refusals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pika
import pytest

from rapidmq.testing import BrokerProcess


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rapidmq", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_serve_prints_ready_line_and_serves_pika(backend: str) -> None:
    with BrokerProcess("--bind", "127.0.0.1", backend=backend) as broker:
        assert broker.amqp_port and broker.amqp_port > 0
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = conn.channel()
        ch.queue_declare("hello")
        ch.basic_publish("", "hello", b"world")
        method, _props, body = ch.basic_get("hello", auto_ack=True)
        assert method is not None and body == b"world"
        conn.close()


def test_sigterm_closes_connections_with_320_and_exits_0() -> None:
    broker = BrokerProcess("--bind", "127.0.0.1").start()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    code = broker.stop(signal.SIGTERM)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        conn.process_data_events(time_limit=2)
        conn.channel()
    assert info.value.reply_code == 320
    assert code == 0


def test_port_in_use_stops_start_up_with_one_line() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = _serve(
            "--bind",
            "127.0.0.1",
            "--amqp-port",
            str(port),
            "--mqtt-port",
            "off",
            "--http-port",
            "off",
        )
    finally:
        holder.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0]
    assert "--amqp-port" in lines[0]
    assert "Traceback" not in result.stderr
    assert "rapidmq ready" not in result.stdout


def test_bad_config_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "rapidmq.toml"
    config.write_text("amqp_port = 'many'\n")
    result = _serve("--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "amqp_port" in lines[0]
    assert "Traceback" not in result.stderr
