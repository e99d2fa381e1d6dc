"""No clear-text password reaches the logs or the API, and every change is audited.

A real ``rapidmq serve`` runs (text and JSON logs, at debug level), users are
made and changed through the API with passwords, AMQP (pika) and MQTT (paho)
clients log in with right and wrong ones, and then the whole log output, the
audit file and the JSON of the API's user, definitions, overview and
connection listings are searched for every password used.  Password hashes are
expected in the user listings (RabbitMQ shows them too); passwords never.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.testing import BrokerProcess

DEFAULT_PASS = "Dflt-Pw-7d1c9e"
USER_PASS = "Usr-Pw-41b8aa"
NEW_PASS = "Chg-Pw-90f3e2"
WRONG_PASS = "Wrong-Pw-c0ffee"
SECRETS = (DEFAULT_PASS, USER_PASS, NEW_PASS, WRONG_PASS)


def amqp_login(broker: BrokerProcess, user: str, password: str) -> bool:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        broker.amqp_port,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
    )
    try:
        conn = pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError:
        return False
    conn.channel()
    conn.close()
    return True


def mqtt_login(broker: BrokerProcess, user: str, password: str) -> int:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"secrets-{user}-{time.time()}")
    client.username_pw_set(user, password)
    codes: list[int] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        codes.append(int(reason.value))
        done.set()

    client.on_connect = on_connect
    assert broker.mqtt_port is not None
    client.connect("127.0.0.1", broker.mqtt_port, keepalive=30)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
        if codes[0] == 0:
            client.disconnect()
    finally:
        client.loop_stop()
    return codes[0]


def exercise(broker: BrokerProcess, audit_path: Path) -> dict[str, str]:
    """Everything that handles a password; returns the API's JSON texts to search."""
    url = f"http://127.0.0.1:{broker.http_port}"
    texts: dict[str, str] = {}
    with httpx.Client(base_url=url, auth=("admin", DEFAULT_PASS), timeout=10) as api:
        body = {"password": USER_PASS, "tags": "monitoring"}
        assert api.put("/api/users/carol", json=body).status_code == 201
        grant = {"configure": ".*", "write": ".*", "read": ".*"}
        assert api.put("/api/permissions/%2F/carol", json=grant).status_code == 201
        assert amqp_login(broker, "carol", USER_PASS)
        assert not amqp_login(broker, "carol", WRONG_PASS)
        assert mqtt_login(broker, "carol", USER_PASS) == 0
        assert mqtt_login(broker, "carol", WRONG_PASS) != 0
        body = {"password": NEW_PASS, "tags": "monitoring"}
        assert api.put("/api/users/carol", json=body).status_code == 204
        assert amqp_login(broker, "carol", NEW_PASS)
        assert not amqp_login(broker, "admin", WRONG_PASS)
        with httpx.Client(base_url=url, auth=("admin", WRONG_PASS)) as wrong:
            assert wrong.get("/api/overview").status_code == 401
        # a connection stays open while the listings are read
        params = pika.ConnectionParameters(
            "127.0.0.1",
            broker.amqp_port,
            credentials=pika.PlainCredentials("carol", NEW_PASS),
            connection_attempts=1,
        )
        conn = pika.BlockingConnection(params)
        try:
            deadline = time.monotonic() + 5
            while not api.get("/api/connections").json() and time.monotonic() < deadline:
                time.sleep(0.05)
            for path in ("/api/users", "/api/definitions", "/api/overview", "/api/connections"):
                response = api.get(path)
                assert response.status_code == 200
                texts[path] = response.text
        finally:
            conn.close()
    assert "password_hash" in texts["/api/users"]
    assert "carol" in texts["/api/connections"]
    return texts


@pytest.fixture(params=["text", "json"])
def run(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    audit_path = tmp_path / "audit.jsonl"
    broker = BrokerProcess(
        "--bind",
        "127.0.0.1",
        "--storage",
        "memory",
        "--log-level",
        "debug",
        "--log-format",
        request.param,
        "--default-user",
        "admin",
        "--default-pass",
        DEFAULT_PASS,
        "--audit-log",
        str(audit_path),
    )
    with broker:
        texts = exercise(broker, audit_path)
        time.sleep(0.3)  # let the last close be logged
    lines = list(broker.output)
    if audit_path.exists():
        lines += audit_path.read_text(encoding="utf-8").splitlines()
    yield lines, texts


def test_no_password_in_the_logs_or_the_api(run: tuple[list[str], dict[str, str]]) -> None:
    lines, texts = run
    assert any("carol" in line for line in lines), "the run logged nothing about carol"
    for secret in SECRETS:
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"{secret} in the log: {leaked[:3]}"
        for path, text in texts.items():
            assert secret not in text, f"{secret} in {path}"


# -- the audit trail -------------------------------------------------------------------------


CHANGES: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    # method, path, body, expected event, expected fields
    ("PUT", "/api/vhosts/audited", {"description": "d"}, "vhost.created", {"vhost": "audited"}),
    ("PUT", "/api/vhosts/audited", {"description": "e"}, "vhost.changed", {"vhost": "audited"}),
    (
        "PUT",
        "/api/users/dave",
        {"password": USER_PASS, "tags": ""},
        "user.created",
        {"user": "dave"},
    ),
    (
        "PUT",
        "/api/users/dave",
        {"password": NEW_PASS, "tags": "management"},
        "user.changed",
        {"user": "dave", "tags": ["management"]},
    ),
    (
        "PUT",
        "/api/permissions/audited/dave",
        {"configure": "^dave-", "write": ".*", "read": ".*"},
        "permission.set",
        {"user": "dave", "vhost": "audited", "configure": "^dave-"},
    ),
    (
        "PUT",
        "/api/topic-permissions/audited/dave",
        {"exchange": "amq.topic", "write": "^a", "read": ".*"},
        "topic_permission.set",
        {"user": "dave", "vhost": "audited", "exchange": "amq.topic", "write": "^a"},
    ),
    (
        "PUT",
        "/api/vhost-limits/audited/max-queues",
        {"value": 10},
        "limit.set",
        {"vhost": "audited", "limit": "max-queues", "value": 10},
    ),
    (
        "PUT",
        "/api/user-limits/dave/max-channels",
        {"value": 3},
        "limit.set",
        {"user": "dave", "limit": "max-channels", "value": 3},
    ),
    (
        "DELETE",
        "/api/user-limits/dave/max-channels",
        {},
        "limit.cleared",
        {"user": "dave", "limit": "max-channels"},
    ),
    (
        "DELETE",
        "/api/vhost-limits/audited/max-queues",
        {},
        "limit.cleared",
        {"vhost": "audited", "limit": "max-queues"},
    ),
    (
        "DELETE",
        "/api/topic-permissions/audited/dave",
        {},
        "topic_permission.cleared",
        {"user": "dave", "vhost": "audited"},
    ),
    (
        "DELETE",
        "/api/permissions/audited/dave",
        {},
        "permission.cleared",
        {"user": "dave", "vhost": "audited"},
    ),
    ("DELETE", "/api/users/dave", {}, "user.deleted", {"user": "dave"}),
    ("DELETE", "/api/vhosts/audited", {}, "vhost.deleted", {"vhost": "audited"}),
]

_CHANGE_EVENTS = (
    "user.",
    "vhost.",
    "permission.",
    "topic_permission.",
    "limit.",
)


def test_every_change_through_the_api_is_one_audit_line(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    args = ("--bind", "127.0.0.1", "--storage", "memory", "--audit-log", str(audit_path))
    with BrokerProcess(*args) as broker:
        url = f"http://127.0.0.1:{broker.http_port}"
        with httpx.Client(base_url=url, auth=("guest", "guest"), timeout=10) as api:
            for method, path, body, _event, _fields in CHANGES:
                response = api.request(method, path, json=body or None)
                assert response.is_success, (method, path, response.text)
            # a refused change is no change: nothing is recorded for it
            assert api.put("/api/vhost-limits/nowhere/max-queues", json={"value": 1}).is_error
    entries = [json.loads(line) for line in audit_path.read_text(encoding="utf-8").splitlines()]
    changes = [e for e in entries if str(e.get("event", "")).startswith(_CHANGE_EVENTS)]
    # creating a vhost also grants its creator everything in it, as RabbitMQ does
    creator_grant = changes.pop(1)
    assert creator_grant["event"] == "permission.set"
    assert (creator_grant["user"], creator_grant["vhost"]) == ("guest", "audited")
    assert [c["event"] for c in changes] == [event for *_, event, _ in CHANGES]
    for entry, (_m, path, _b, _event, fields) in zip(changes, CHANGES, strict=True):
        assert entry["actor"] == "guest", path
        assert entry["category"] == "audit"
        for key, value in fields.items():
            assert entry[key] == value, (path, key, entry)
    text = audit_path.read_text(encoding="utf-8")
    assert USER_PASS not in text and NEW_PASS not in text
    assert "password_hash" not in text


def test_a_definitions_import_is_audited(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    args = ("--bind", "127.0.0.1", "--storage", "memory", "--audit-log", str(audit_path))
    definitions = {
        "users": [
            {"name": "erin", "password": USER_PASS, "tags": [], "limits": {"max-channels": 2}}
        ],
        "vhosts": [{"name": "imported"}],
        "permissions": [
            {"user": "erin", "vhost": "imported", "configure": ".*", "write": ".*", "read": ".*"}
        ],
        "parameters": [
            {
                "value": {"max-connections": 4},
                "vhost": "imported",
                "component": "vhost-limits",
                "name": "limits",
            }
        ],
    }
    with BrokerProcess(*args) as broker:
        url = f"http://127.0.0.1:{broker.http_port}"
        with httpx.Client(base_url=url, auth=("guest", "guest"), timeout=10) as api:
            assert api.post("/api/definitions", json=definitions).status_code == 204
    entries = [json.loads(line) for line in audit_path.read_text(encoding="utf-8").splitlines()]
    seen = {(e["event"], e.get("user"), e.get("vhost"), e.get("limit")) for e in entries}
    assert ("vhost.created", None, "imported", None) in seen
    assert ("user.created", "erin", None, None) in seen
    assert ("permission.set", "erin", "imported", None) in seen
    assert ("limit.set", None, "imported", "max-connections") in seen
    assert ("limit.set", "erin", None, "max-channels") in seen
    assert all(e.get("actor") == "guest" for e in entries if e["event"] != "login.succeeded")
    assert USER_PASS not in audit_path.read_text(encoding="utf-8")
