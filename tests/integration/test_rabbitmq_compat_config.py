"""A deployment written for RabbitMQ's image, run against ``rapidmq serve``.

RabbitMQ's environment variables, definitions imported at start-up and
RabbitMQ's ``rabbitmq.conf`` ``load_definitions`` key, each on a real broker
process.
"""

from __future__ import annotations

import base64
import json
import urllib.request
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
