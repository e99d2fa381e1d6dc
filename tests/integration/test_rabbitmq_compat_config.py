"""A deployment written for RabbitMQ's image, run against ``rapidmq serve``.

RabbitMQ's environment variables, definitions imported at start-up and
RabbitMQ's ``rabbitmq.conf`` ``load_definitions`` key, each on a real broker
process.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pika

from rapidmq.testing import BrokerProcess

COOKIE_NOTE = "RABBITMQ_ERLANG_COOKIE is set and ignored: RapidMQ nodes do not use an Erlang cookie"


def api_get(broker: BrokerProcess, path: str, user: str, password: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}{path}")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def log_lines_with(broker: BrokerProcess, text: str) -> list[str]:
    """The log lines mentioning ``text``, each cut to what follows the log prefix."""
    return [line[line.index(text) :] for line in broker.output if text in line]


def test_rabbitmq_default_user_variables_create_an_administrator_pika_logs_in_with() -> None:
    env = {
        "RABBITMQ_DEFAULT_USER": "admin",
        "RABBITMQ_DEFAULT_PASS": "s3cret",
        "RABBITMQ_DEFAULT_VHOST": "prod",
        "RABBITMQ_ERLANG_COOKIE": "SWQOKODSQALRPCLNMEQG",
    }
    with BrokerProcess("--bind", "127.0.0.1", env=env) as broker:
        params = pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port, "prod", pika.PlainCredentials("admin", "s3cret")
        )
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            declared = channel.queue_declare("compose-check", durable=True)
            assert declared.method.queue == "compose-check"
        finally:
            connection.close()
        users = api_get(broker, "/api/users", "admin", "s3cret")
        assert [(u["name"], u["tags"]) for u in users] == [("admin", ["administrator"])]
        permissions = api_get(broker, "/api/permissions", "admin", "s3cret")
        assert [
            (p["user"], p["vhost"], p["configure"], p["write"], p["read"]) for p in permissions
        ] == [("admin", "prod", ".*", ".*", ".*")]
        assert log_lines_with(broker, "RABBITMQ_ERLANG_COOKIE") == [COOKIE_NOTE]
        assert not any("SWQOKODSQALRPCLNMEQG" in line for line in broker.output)


def test_rapidmq_default_user_wins_over_rabbitmq_default_user() -> None:
    env = {
        "RABBITMQ_DEFAULT_USER": "admin",
        "RABBITMQ_DEFAULT_PASS": "from-rabbitmq",
        "RAPIDMQ_DEFAULT_USER": "ops",
        "RAPIDMQ_DEFAULT_PASS": "from-rapidmq",
    }
    with BrokerProcess("--bind", "127.0.0.1", env=env) as broker:
        users = api_get(broker, "/api/users", "ops", "from-rapidmq")
        assert [u["name"] for u in users] == ["ops"]
        assert log_lines_with(broker, "RABBITMQ_ERLANG_COOKIE") == []


RABBITMQ_EXPORT = Path(__file__).parent / "admin" / "fixtures" / "rabbitmq-3.10-definitions.json"
IMPORTED = "definitions imported by load_definitions: "
IMPORT_COUNTS = (
    "2 vhosts, 1 limits, 3 users, 3 permissions, 1 topic_permissions, "
    "1 policies, 4 exchanges, 3 queues, 4 bindings"
)


def serve_refused(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``rapidmq serve`` on free ports that is expected to stop before its ready line."""
    command = [sys.executable, "-m", "rapidmq", "serve", "--bind", "127.0.0.1"]
    for flag in ("--amqp-port", "--mqtt-port", "--mqtt-ws-port", "--http-port"):
        command += [flag, "0"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


def queue_summary(broker: BrokerProcess) -> list[tuple[str, str, bool]]:
    queues = api_get(broker, "/api/queues", "guest", "guest")
    return sorted((q["vhost"], q["name"], q["durable"]) for q in queues)


def message_count(broker: BrokerProcess, vhost: str, queue: str) -> int:
    params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port, vhost)
    connection = pika.BlockingConnection(params)
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def ready_index(broker: BrokerProcess) -> int:
    return next(i for i, line in enumerate(broker.output) if line.startswith("rapidmq ready "))


def test_load_definitions_applies_a_rabbitmq_export_before_ready_and_again_after_restart(
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path / "data")
    args = ("--bind", "127.0.0.1", "--load-definitions", str(RABBITMQ_EXPORT))
    expected_queues = [
        ("shop", "dead", True),
        ("shop", "orders.eu", True),
        ("shop", "scratch", False),
    ]
    with BrokerProcess(*args, data_dir=data_dir) as broker:
        imported = [i for i, line in enumerate(broker.output) if IMPORTED in line]
        assert [broker.output[i][broker.output[i].index(IMPORTED) :] for i in imported] == [
            IMPORTED + IMPORT_COUNTS
        ]
        assert imported[0] < ready_index(broker)
        assert queue_summary(broker) == expected_queues
        users = api_get(broker, "/api/users", "guest", "guest")
        assert sorted((u["name"], tuple(u["tags"])) for u in users) == [
            ("alice", ("management",)),
            ("bob", ("monitoring", "policymaker")),
            ("guest", ("administrator",)),
        ]
        params = pika.ConnectionParameters("127.0.0.1", broker.amqp_port, "shop")
        connection = pika.BlockingConnection(params)
        try:
            connection.channel().basic_publish(
                "orders", "order.eu.1", b"kept", pika.BasicProperties(delivery_mode=2)
            )
        finally:
            connection.close()
        assert message_count(broker, "shop", "orders.eu") == 1
        assert broker.stop() == 0
    with BrokerProcess(*args, data_dir=data_dir) as broker:
        # Imported again: the transient exchange and queue are made anew, the durable
        # ones that were recovered are left as they are, and the queue keeps its message.
        assert [line[line.index(IMPORTED) :] for line in broker.output if IMPORTED in line] == [
            IMPORTED + "2 vhosts, 1 limits, 3 users, 3 permissions, 1 topic_permissions, "
            "1 policies, 1 exchanges, 1 queues, 4 bindings"
        ]
        assert queue_summary(broker) == expected_queues
        assert message_count(broker, "shop", "orders.eu") == 1
        limits = api_get(broker, "/api/vhost-limits/shop", "guest", "guest")
        assert limits == [{"vhost": "shop", "value": {"max-connections": 100}}]


def test_rabbitmq_conf_load_definitions_is_honoured(tmp_path: Path) -> None:
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(
        f"listeners.tcp.default = 5672\nload_definitions = {RABBITMQ_EXPORT}\n", encoding="utf-8"
    )
    env = {"RABBITMQ_CONFIG_FILE": str(conf)}
    with BrokerProcess("--bind", "127.0.0.1", env=env) as broker:
        assert [line[line.index(IMPORTED) :] for line in broker.output if IMPORTED in line] == [
            IMPORTED + IMPORT_COUNTS
        ]
        assert log_lines_with(broker, f"rabbitmq.conf {conf}") == [
            f"rabbitmq.conf {conf}: only load_definitions is read; ignored listeners.tcp.default"
        ]
        assert [q[1] for q in queue_summary(broker)] == ["dead", "orders.eu", "scratch"]


def test_missing_definitions_file_refuses_start_up_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "definitions.json"
    result = serve_refused("--data-dir", str(tmp_path / "data"), "--load-definitions", str(missing))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: definitions file {missing} not found; fix load_definitions "
        "(--load-definitions, RAPIDMQ_LOAD_DEFINITIONS or rabbitmq.conf)\n",
    )


def test_malformed_definitions_file_refuses_start_up_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "definitions.json"
    bad.write_text('{"queues": [\n', encoding="utf-8")
    env = {"RAPIDMQ_LOAD_DEFINITIONS": str(bad)}
    result = serve_refused("--data-dir", str(tmp_path / "data"), env=env)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: definitions file {bad} is not a JSON definitions object "
        "(Expecting value: line 2 column 1 (char 13)); "
        "fix the file (export one with GET /api/definitions)\n",
    )


def test_definitions_naming_a_missing_vhost_refuse_start_up_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "definitions.json"
    bad.write_text(
        json.dumps({"queues": [{"name": "q", "vhost": "nowhere", "durable": True}]}),
        encoding="utf-8",
    )
    result = serve_refused("--data-dir", str(tmp_path / "data"), "--load-definitions", str(bad))
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: definitions file {bad}: queues: vhost 'nowhere' does not exist; fix the file\n",
    )


def test_load_definitions_directory_imports_its_json_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    # The queue file needs the vhost file first: name order decides.
    (folder / "20-queues.json").write_text(
        json.dumps({"queues": [{"name": "telemetry", "vhost": "iot", "durable": True}]}),
        encoding="utf-8",
    )
    (folder / "10-vhosts.json").write_text(
        json.dumps({"vhosts": [{"name": "iot"}]}), encoding="utf-8"
    )
    (folder / "notes.txt").write_text("not definitions", encoding="utf-8")
    env = {"RAPIDMQ_LOAD_DEFINITIONS": str(folder)}
    with BrokerProcess("--bind", "127.0.0.1", env=env) as broker:
        assert [line[line.index(IMPORTED) :] for line in broker.output if IMPORTED in line] == [
            IMPORTED + "1 vhosts",
            IMPORTED + "1 queues",
        ]
        assert queue_summary(broker) == [("iot", "telemetry", True)]
