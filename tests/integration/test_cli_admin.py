"""The admin commands of ``rapidmq`` as a user runs them: real processes, a real broker.

One broker (``rapidmq serve`` on free ports, in memory) serves the whole module;
every command runs as ``python -m rapidmq ...`` and its effect is checked
through the management API with httpx, not by trusting the command's output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from rapidmq.testing import BrokerProcess


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    with BrokerProcess("--bind", "127.0.0.1", "--storage", "memory") as process:
        yield process


@pytest.fixture(scope="module")
def url(broker: BrokerProcess) -> str:
    return f"http://127.0.0.1:{broker.http_port}"


@pytest.fixture(scope="module")
def api(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, auth=("guest", "guest"), timeout=10) as client:
        yield client


def rapidmq(
    url: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real command; the broker's URL comes in through RAPIDMQ_URL, as in a shell."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDMQ_")}
    environ["RAPIDMQ_URL"] = url
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rapidmq", *args],
        capture_output=True,
        text=True,
        env=environ,
        input=stdin,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one stderr line of a failure, after checking there is nothing more."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rapidmq: ")
    return lines[0]


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


def queue_info(api: httpx.Client, name: str, vhost: str = "%2F") -> dict[str, Any]:
    response = api.get(f"/api/queues/{vhost}/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_status_shows_the_node_totals_and_alarms(url: str, api: httpx.Client) -> None:
    node = api.get("/api/overview").json()["node"]
    lines = ok(rapidmq(url, "status")).splitlines()
    assert lines[0].split() == ["node", node]
    assert lines[1].split()[:2] == ["product", "RapidMQ"]
    assert "alarms                   none" in lines
    status = json.loads(ok(rapidmq(url, "status", "--format", "json")))
    assert status["node"] == node
    assert status["alarms"] == []
    assert set(status["object_totals"]) >= {"connections", "exchanges", "queues"}


def test_queue_declare_list_publish_get_purge_delete(url: str, api: httpx.Client) -> None:
    args = ("declare", "queue", "cli-orders", "--durable", "--arguments", '{"x-max-length": 7}')
    assert ok(rapidmq(url, *args)) == "queue declared\n"
    info = queue_info(api, "cli-orders")
    assert (info["durable"], info["auto_delete"], info["arguments"]) == (
        True,
        False,
        {"x-max-length": 7},
    )
    # Global options also after the command, and the JSON confirmation.
    again = rapidmq(url, *args, "--format", "json")
    assert json.loads(ok(again)) == {"result": "queue declared"}

    published = rapidmq(url, "publish", "--routing-key", "cli-orders", "first order")
    assert ok(published) == "message published\n"
    listed = rows(ok(rapidmq(url, "list", "queues")))
    assert listed[0] == [
        "vhost",
        "name",
        "messages",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    ]
    assert ["/", "cli-orders", "1", "1", "0", "0"] in listed
    as_json = json.loads(ok(rapidmq(url, "--format", "json", "list", "queues")))
    assert any(q["name"] == "cli-orders" and q["durable"] for q in as_json)

    peeked = ok(rapidmq(url, "get", "cli-orders", "--requeue")).splitlines()
    assert peeked[0].split()[:3] == ["routing_key", "exchange", "message_count"]
    assert "first order" in peeked[1]
    assert queue_info(api, "cli-orders")["messages"] == 1  # put back
    [taken] = json.loads(ok(rapidmq(url, "get", "cli-orders", "--format", "json")))
    assert (taken["payload"], taken["redelivered"], taken["message_count"]) == (
        "first order",
        True,
        0,
    )
    assert queue_info(api, "cli-orders")["messages"] == 0  # acknowledged

    for body in ("a", "b"):
        ok(rapidmq(url, "publish", "--routing-key", "cli-orders", body))
    assert queue_info(api, "cli-orders")["messages"] == 2
    assert ok(rapidmq(url, "purge", "queue", "cli-orders")) == "queue purged\n"
    assert queue_info(api, "cli-orders")["messages"] == 0

    assert ok(rapidmq(url, "delete", "queue", "cli-orders")) == "queue deleted\n"
    assert api.get("/api/queues/%2F/cli-orders").status_code == 404


def test_exchange_and_binding_route_and_are_deleted(url: str, api: httpx.Client) -> None:
    api.put("/api/queues/%2F/cli-events-q", json={"durable": False}).raise_for_status()
    declared = rapidmq(url, "declare", "exchange", "cli-events", "--type", "topic", "--durable")
    assert ok(declared) == "exchange declared\n"
    exchange = api.get("/api/exchanges/%2F/cli-events").json()
    assert (exchange["type"], exchange["durable"], exchange["internal"]) == ("topic", True, False)

    bind = ("--source", "cli-events", "--destination", "cli-events-q", "--routing-key", "order.*")
    assert ok(rapidmq(url, "declare", "binding", *bind)) == "binding declared\n"
    bindings = api.get("/api/bindings/%2F/e/cli-events/q/cli-events-q").json()
    assert [b["routing_key"] for b in bindings] == ["order.*"]
    listed = json.loads(ok(rapidmq(url, "list", "bindings", "--format", "json")))
    assert any(b["source"] == "cli-events" and b["routing_key"] == "order.*" for b in listed)
    exchanges = rows(ok(rapidmq(url, "list", "exchanges")))
    assert ["/", "cli-events", "topic", "true", "false", "false"] in exchanges

    routed = rapidmq(url, "publish", "--exchange", "cli-events", "--routing-key", "order.new", "x")
    assert ok(routed) == "message published\n"
    lost = rapidmq(
        url,
        "publish",
        "--exchange",
        "cli-events",
        "--routing-key",
        "audit",
        "x",
        "--format",
        "json",
    )
    assert json.loads(ok(lost)) == {"routed": False}
    assert queue_info(api, "cli-events-q")["messages"] == 1

    assert ok(rapidmq(url, "delete", "binding", *bind)) == "binding deleted\n"
    assert api.get("/api/bindings/%2F/e/cli-events/q/cli-events-q").json() == []
    assert ok(rapidmq(url, "delete", "exchange", "cli-events")) == "exchange deleted\n"
    assert api.get("/api/exchanges/%2F/cli-events").status_code == 404
    api.delete("/api/queues/%2F/cli-events-q").raise_for_status()


def test_publish_reads_stdin_and_sets_properties(url: str, api: httpx.Client) -> None:
    api.put("/api/queues/%2F/cli-props", json={"durable": False}).raise_for_status()
    result = rapidmq(
        url,
        "publish",
        "--routing-key",
        "cli-props",
        "--property",
        "content_type=application/json",
        "--property",
        "delivery_mode=2",
        "--property",
        "headers.origin=cli",
        "-",
        stdin='{"line": 1}\n{"line": 2}\n',
    )
    assert ok(result) == "message published\n"
    got = api.post(
        "/api/queues/%2F/cli-props/get",
        json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
    )
    [message] = got.json()
    assert message["payload"] == '{"line": 1}\n{"line": 2}\n'
    properties = message["properties"]
    assert properties["content_type"] == "application/json"
    assert properties["delivery_mode"] == 2
    assert properties["headers"] == {"origin": "cli"}
    api.delete("/api/queues/%2F/cli-props").raise_for_status()


def test_lists_show_clients_and_close_connection_ends_one(
    url: str, api: httpx.Client, broker: BrokerProcess
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_declare("cli-consumed")
        tag = channel.basic_consume("cli-consumed", lambda *_: None)

        [listed] = ok(rapidmq(url, "list", "connections")).splitlines()[1:]
        name = api.get("/api/connections").json()[0]["name"]
        assert listed.startswith(name + "  ")
        assert listed.split()[-6:] == ["guest", "/", "AMQP", "0-9-1", "running", "1"]
        channels = json.loads(ok(rapidmq(url, "list", "channels", "--format", "json")))
        assert [c["connection_details"]["name"] for c in channels] == [name]
        consumers = rows(ok(rapidmq(url, "--vhost", "/", "list", "consumers")))
        assert consumers[1][:3] == ["/", "cli-consumed", tag]

        closed = rapidmq(url, "close", "connection", name, "--reason", "maintenance window")
        assert ok(closed) == "connection closed\n"
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            connection.process_data_events(time_limit=2)
            connection.process_data_events(time_limit=2)
        assert info.value.reply_code == 320
        assert "maintenance window" in info.value.reply_text
        assert api.get("/api/connections").json() == []
    finally:
        if connection.is_open:
            connection.close()
        api.delete("/api/queues/%2F/cli-consumed")


def test_users_vhosts_and_permissions_are_listed(url: str) -> None:
    assert ["guest", "administrator"] in rows(ok(rapidmq(url, "list", "users")))
    vhosts = json.loads(ok(rapidmq(url, "list", "vhosts", "--format", "json")))
    assert "/" in [v["name"] for v in vhosts]
    permissions = rows(ok(rapidmq(url, "list", "permissions")))
    assert permissions[0] == ["user", "vhost", "configure", "write", "read"]
    assert ["guest", "/", ".*", ".*", ".*"] in permissions


def test_vhost_option_and_variable_choose_the_vhost(url: str, api: httpx.Client) -> None:
    api.put("/api/vhosts/cli%2Fteam").raise_for_status()
    api.put(
        "/api/permissions/cli%2Fteam/guest", json={"configure": ".*", "write": ".*", "read": ".*"}
    ).raise_for_status()
    try:
        declared = rapidmq(url, "declare", "queue", "cli-team-q", env={"RAPIDMQ_VHOST": "cli/team"})
        assert ok(declared) == "queue declared\n"
        assert queue_info(api, "cli-team-q", vhost="cli%2Fteam")["vhost"] == "cli/team"
        listed = rows(ok(rapidmq(url, "list", "queues", "--vhost", "cli/team")))
        assert listed[1:] == [["cli/team", "cli-team-q", "0", "0", "0", "0"]]
    finally:
        api.delete("/api/vhosts/cli%2Fteam")


def test_definitions_export_and_import_round_trip(
    url: str, api: httpx.Client, tmp_path: Path
) -> None:
    api.put("/api/queues/%2F/cli-kept", json={"durable": True}).raise_for_status()
    file = tmp_path / "definitions.json"
    assert ok(rapidmq(url, "definitions", "export", str(file))) == (
        f"definitions exported to {file}\n"
    )
    exported = json.loads(file.read_text(encoding="utf-8"))
    assert "cli-kept" in [q["name"] for q in exported["queues"]]
    to_stdout = json.loads(ok(rapidmq(url, "definitions", "export", "-")))
    assert [u["name"] for u in to_stdout["users"]] == [u["name"] for u in exported["users"]]

    api.delete("/api/queues/%2F/cli-kept").raise_for_status()
    imported = rapidmq(url, "definitions", "import", str(file), "--format", "json")
    assert json.loads(ok(imported)) == {"result": f"definitions imported from {file}"}
    assert queue_info(api, "cli-kept")["durable"] is True
    api.delete("/api/queues/%2F/cli-kept").raise_for_status()


def test_policies_are_set_listed_applied_and_cleared(url: str, api: httpx.Client) -> None:
    api.put("/api/queues/%2F/cli-pol-q", json={}).raise_for_status()
    set_policy = rapidmq(
        url, "set", "policy", "cli-limit", "^cli-pol-", '{"max-length": 2}', "--priority", "4"
    )
    assert ok(set_policy) == "policy 'cli-limit' set in vhost '/'\n"
    cap = ("cli-cap", "^cli-pol-", '{"max-length": 1}', "--apply-to", "queues")
    set_operator = rapidmq(url, "set", "operator-policy", *cap)
    assert ok(set_operator) == "operator policy 'cli-cap' set in vhost '/'\n"
    try:
        assert rows(ok(rapidmq(url, "list", "policies"))) == [
            ["vhost", "name", "pattern", "apply-to", "priority", "definition"],
            ["/", "cli-limit", "^cli-pol-", "all", "4", '{"max-length":2}'],
        ]
        listed = json.loads(ok(rapidmq(url, "list", "operator-policies", "--format", "json")))
        assert listed == [
            {
                "vhost": "/",
                "name": "cli-cap",
                "pattern": "^cli-pol-",
                "apply-to": "queues",
                "definition": {"max-length": 1},
                "priority": 0,
            }
        ]
        shown = queue_info(api, "cli-pol-q")
        assert (shown["policy"], shown["operator_policy"]) == ("cli-limit", "cli-cap")
        refused = failed(rapidmq(url, "set", "policy", "bad", "(", '{"max-length": 1}'))
        assert refused == (
            "rapidmq: refused: Validation failed pattern should be regular expression but is "
            'invalid: {"missing )",1}'
        )
    finally:
        ok(rapidmq(url, "clear", "policy", "cli-limit"))
        ok(rapidmq(url, "clear", "operator-policy", "cli-cap"))
        api.delete("/api/queues/%2F/cli-pol-q")
    assert rows(ok(rapidmq(url, "list", "policies"))) == [
        ["vhost", "name", "pattern", "apply-to", "priority", "definition"]
    ]
    missing = failed(rapidmq(url, "clear", "policy", "cli-limit", "--vhost", "/"))
    assert missing == "rapidmq: policy 'cli-limit' in vhost '/' not found"


def test_unreachable_broker_is_one_line(url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    line = failed(rapidmq(url, "--url", closed, "list", "queues"))
    assert line == (
        f"rapidmq: cannot reach {closed}: connection refused; "
        "is the broker running, and is --url right?"
    )


def test_wrong_password_is_one_line(url: str) -> None:
    line = failed(rapidmq(url, "status", env={"RAPIDMQ_PASSWORD": "wrong"}))
    assert line.startswith("rapidmq: not authorized (")
    assert line.endswith("check --user and --password")


def test_missing_queue_is_one_line(url: str) -> None:
    line = failed(rapidmq(url, "delete", "queue", "cli-no-such-queue"))
    assert line == "rapidmq: queue 'cli-no-such-queue' in vhost '/' not found"


def test_refused_request_carries_the_api_reason(url: str, api: httpx.Client) -> None:
    line = failed(rapidmq(url, "declare", "exchange", "cli-odd", "--type", "no-such-type"))
    assert line.startswith("rapidmq: refused: ")
    assert "no-such-type" in line
    assert api.get("/api/exchanges/%2F/cli-odd").status_code == 404


def test_bad_arguments_json_is_a_usage_error(url: str, api: httpx.Client) -> None:
    line = failed(rapidmq(url, "declare", "queue", "cli-bad", "--arguments", "{x"), code=2)
    assert line.startswith("rapidmq: error: argument --arguments: not valid JSON")
    assert api.get("/api/queues/%2F/cli-bad").status_code == 404


def test_unknown_subcommand_is_a_usage_error(url: str) -> None:
    line = failed(rapidmq(url, "lsit", "queues"), code=2)
    assert "invalid choice: 'lsit'" in line
