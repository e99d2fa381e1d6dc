"""A real ``rapidmq serve`` writes structured logs: one open and one close per connection.

The broker runs as a subprocess with stdout (the ready line) and stderr (the log)
read apart, since BrokerProcess merges them and the point here is that stderr
holds nothing but log lines.  pika and paho-mqtt connect with a good and a bad
password each; the checks run on the lines read after the broker stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest

WRONG = "Wr0ng-Pa55"  # a bad password that must never show up in a log

READY = re.compile(r"^rapidmq ready amqp=(\d+) mqtt=(\d+) http=(\S+)")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\w+): (.+)$")


@dataclass
class Serve:
    """One ``rapidmq serve`` with its stdout and stderr lines kept apart."""

    proc: subprocess.Popen[str]
    amqp_port: int
    mqtt_port: int
    stderr: list[str] = field(default_factory=list)


def start(log_format: str) -> Iterator[Serve]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDMQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rapidmq",
            "serve",
            "--amqp-port",
            "0",
            "--mqtt-port",
            "0",
            "--http-port",
            "off",
            "--mqtt-ws-port",
            "off",
            "--storage",
            "memory",
            "--log-format",
            log_format,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr: list[str] = []
    err_stream = proc.stderr
    reader = threading.Thread(
        target=lambda: stderr.extend(line.rstrip("\n") for line in err_stream), daemon=True
    )
    reader.start()
    ready = READY.match(proc.stdout.readline())
    if ready is None:
        proc.kill()
        proc.wait()
        reader.join(5)
        raise AssertionError("rapidmq did not start:\n" + "\n".join(stderr))
    serve = Serve(proc, int(ready.group(1)), int(ready.group(2)), stderr)
    try:
        yield serve
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)
        proc.stdout.close()
        err_stream.close()


def amqp_session(serve: Serve, user: str, password: str) -> None:
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=serve.amqp_port,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        client_properties={"connection_name": "log-test"},
    )
    conn = pika.BlockingConnection(params)
    channel = conn.channel()
    channel.queue_declare("", exclusive=True)
    conn.close()


def amqp_refused(serve: Serve, user: str, password: str) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        amqp_session(serve, user, password)


def mqtt_connect(serve: Serve, client_id: str, user: str, password: str) -> int:
    """CONNECT, then DISCONNECT if accepted; the CONNACK return code."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(user, password)
    codes: list[int] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        codes.append(int(reason.value))
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", serve.mqtt_port, keepalive=30)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
        if codes[0] == 0:
            client.disconnect()
    finally:
        client.loop_stop()
    return codes[0]


def stop(serve: Serve) -> list[str]:
    """Stop the broker as a supervisor would and return every stderr line it wrote."""
    # Let the broker notice the last client's socket close before stopping it.
    time.sleep(0.3)
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.proc.wait(15) == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("stopped" in line for line in serve.stderr):
        time.sleep(0.02)
    return list(serve.stderr)


def exercise(serve: Serve) -> None:
    """A good and a bad login for each protocol, with normal disconnects."""
    amqp_session(serve, "guest", "guest")
    amqp_refused(serve, "guest", WRONG)
    assert mqtt_connect(serve, "log-test-client", "guest", "guest") == 0
    assert mqtt_connect(serve, "log-test-bad", "guest", WRONG) != 0


@pytest.fixture(scope="module")
def json_run() -> Iterator[list[str]]:
    for serve in start("json"):
        exercise(serve)
        yield stop(serve)


@pytest.fixture(scope="module")
def text_run() -> Iterator[list[str]]:
    for serve in start("text"):
        exercise(serve)
        yield stop(serve)


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") == name]


def test_every_json_line_is_one_object_with_the_fixed_keys(json_run: list[str]) -> None:
    assert json_run, "the broker wrote no log"
    entries = [json.loads(line) for line in json_run]
    assert all(isinstance(e, dict) for e in entries)
    for entry in entries:
        assert {"time", "level", "category", "logger", "message"} <= entry.keys(), entry
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}
    categories = {e["category"] for e in entries}
    assert {"broker", "connection", "auth"} <= categories
    assert any(e["message"].startswith("rapidmq ready amqp=") for e in entries)


def test_one_open_and_one_close_per_successful_connection(json_run: list[str]) -> None:
    entries = [json.loads(line) for line in json_run]
    opens = events(entries, "connection.open")
    closes = events(entries, "connection.close")
    assert sorted(e["protocol"] for e in opens) == ["amqp", "mqtt"]
    assert sorted(e["protocol"] for e in closes) == ["amqp", "mqtt"]
    for entry in opens + closes:
        assert entry["category"] == "connection"
        assert entry["logger"] == "rapidmq.connection"
        assert (entry["user"], entry["vhost"]) == ("guest", "/")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", entry["client_address"]), entry
    amqp_open = next(e for e in opens if e["protocol"] == "amqp")
    amqp_close = next(e for e in closes if e["protocol"] == "amqp")
    assert amqp_open["client_product"] == f"Pika Python Client Library {pika.__version__}"
    assert amqp_open["connection_name"] == "log-test"
    assert amqp_open["level"] == "info"
    assert amqp_close["client_address"] == amqp_open["client_address"]
    assert amqp_close["reason"] == "closed by client"
    assert isinstance(amqp_close["duration_ms"], int) and amqp_close["duration_ms"] >= 0
    mqtt_open = next(e for e in opens if e["protocol"] == "mqtt")
    mqtt_close = next(e for e in closes if e["protocol"] == "mqtt")
    assert mqtt_open["client_product"] == "log-test-client"
    assert mqtt_close["client_product"] == "log-test-client"
    assert mqtt_close["reason"] == "client sent DISCONNECT"
    assert mqtt_open["message"].startswith(
        f"accepted MQTT connection {mqtt_open['client_address']} -> 127.0.0.1:"
    )
    assert mqtt_open["message"].endswith("(user 'guest', vhost '/', client 'log-test-client')")


def test_failed_logins_are_auth_warnings_without_the_password(json_run: list[str]) -> None:
    entries = [json.loads(line) for line in json_run]
    refused = [e for e in entries if e["category"] == "auth"]
    assert sorted(e["protocol"] for e in refused) == ["amqp", "mqtt"]
    for entry in refused:
        assert entry["level"] == "warning"
        assert entry["event"] == "auth.refused"
        assert entry["logger"] == "rapidmq.auth"
        assert "'guest'" in entry["message"]
        assert "127.0.0.1" in entry["client_address"]
    mqtt_refused = next(e for e in refused if e["protocol"] == "mqtt")
    assert mqtt_refused["user"] == "guest"
    for line in json_run:
        assert WRONG not in line
        assert "guest:guest" not in line
    # A refused login never opens a connection.
    assert len(events(entries, "connection.open")) == 2


def test_text_lines_are_readable_with_their_category(text_run: list[str]) -> None:
    parsed = [TEXT_LINE.match(line) for line in text_run]
    assert all(parsed), [line for line, m in zip(text_run, parsed, strict=True) if m is None]
    lines = [(m.group(1), m.group(2), m.group(3)) for m in parsed if m is not None]
    opens = [msg for level, cat, msg in lines if cat == "connection" and msg.startswith("accept")]
    closes = [msg for level, cat, msg in lines if cat == "connection" and msg.startswith("closed")]
    assert len(opens) == 2 and len(closes) == 2
    amqp_open = next(msg for msg in opens if msg.startswith("accepted AMQP connection"))
    assert re.fullmatch(
        r"accepted AMQP connection 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ "
        rf"\(user 'guest', vhost '/', client 'Pika Python Client Library {pika.__version__}'\)",
        amqp_open,
    ), amqp_open
    refused = [(level, msg) for level, cat, msg in lines if cat == "auth"]
    assert [level for level, _ in refused] == ["WARNING", "WARNING"]
    assert all("'guest'" in msg for _, msg in refused)
    assert not any(WRONG in line for line in text_run)
    assert any(cat == "broker" and msg.startswith("rapidmq ready") for _, cat, msg in lines)


@pytest.fixture(scope="module")
def lifecycle_run() -> Iterator[list[str]]:
    """Connections that end every other way: peer gone, take-over, broker shutdown."""
    for serve in start("json"):
        params = pika.ConnectionParameters("127.0.0.1", serve.amqp_port, connection_attempts=1)
        left_open = pika.BlockingConnection(params)
        dropped = pika.BlockingConnection(params)
        channel = dropped.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.queue_declare("no-such-queue", passive=True)
        sock = dropped._impl._transport._sock  # the socket vanishes without a close
        sock.shutdown(2)
        sock.close()
        first = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="same-id")
        second = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="same-id")
        for client in (first, second):
            client.username_pw_set("guest", "guest")
            client.reconnect_delay_set(30, 30)  # the one taken over stays away
            client.connect("127.0.0.1", serve.mqtt_port, keepalive=30)
            client.loop_start()
            time.sleep(0.4)
        try:
            yield stop(serve)
        finally:
            for client in (first, second):
                client.loop_stop()
                held = client.socket()
                if held is not None:
                    held.close()
            with contextlib.suppress(pika.exceptions.AMQPError):
                left_open.close()  # the broker closed it already: only the socket is left
            for conn in (left_open, dropped):
                conn._impl.ioloop.close()  # its wake-up socket pair, which pika leaves open


def test_every_way_of_ending_logs_exactly_one_close(lifecycle_run: list[str]) -> None:
    entries = [json.loads(line) for line in lifecycle_run]
    opens = events(entries, "connection.open")
    closes = events(entries, "connection.close")
    assert len(opens) == 4
    assert sorted(e["client_address"] for e in opens) == sorted(e["client_address"] for e in closes)
    reasons = sorted(e["reason"] for e in closes)
    assert reasons == [
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
        "broker shutting down",
        "client id taken over by another connection",
        "client unexpectedly closed TCP connection",
    ]
    channel_errors = [e for e in entries if e["category"] == "channel"]
    assert len(channel_errors) == 1
    assert channel_errors[0]["level"] == "warning"
    assert channel_errors[0]["reply_code"] == 404
    assert "no-such-queue" in channel_errors[0]["message"]
