"""``rapidmq users``, ``vhosts`` and ``permissions`` as an operator runs them.

One broker (``rapidmq serve`` on free ports, in memory) serves the module;
each command runs as a real ``python -m rapidmq`` process and its effect is
checked through the management API and by logging in with pika as the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pika
import pika.exceptions
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


def rapidmq(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDMQ_")}
    environ["RAPIDMQ_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "rapidmq", *args],
        capture_output=True,
        text=True,
        env=environ,
        input=stdin,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def can_log_in(broker: BrokerProcess, user: str, password: str, vhost: str = "/") -> bool:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        broker.amqp_port,
        vhost,
        pika.PlainCredentials(user, password),
        connection_attempts=1,
    )
    try:
        conn = pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError:
        return False
    try:
        # named after the user, so a "^user-" configure grant allows it
        conn.channel().queue_declare(f"{user}-probe", exclusive=True)
    finally:
        conn.close()
    return True


def test_users_add_list_tags_password_delete(
    broker: BrokerProcess, url: str, api: httpx.Client
) -> None:
    out = ok(
        rapidmq(url, "users", "add", "alice", "--password", "Al1ce-pw", "--tags", "monitoring")
    )
    assert out.strip() == "user 'alice' added"
    assert "Al1ce-pw" not in out
    user = api.get("/api/users/alice").json()
    assert user["tags"] == ["monitoring"]
    ok(
        rapidmq(
            url, "permissions", "set", "alice", "--configure", ".*", "--write", ".*", "--read", ".*"
        )
    )
    assert can_log_in(broker, "alice", "Al1ce-pw")
    assert not can_log_in(broker, "alice", "wrong")

    again = rapidmq(url, "users", "add", "alice", "--password", "x")
    assert again.returncode == 1
    assert again.stderr.strip() == "rapidmq: user 'alice' already exists"

    listed = ok(rapidmq(url, "users", "list")).splitlines()
    assert listed[0].split() == ["name", "tags"]
    assert ["alice", "monitoring"] in [line.split() for line in listed[1:]]
    as_json = json.loads(ok(rapidmq(url, "users", "list", "--format", "json")))
    assert {u["name"] for u in as_json} >= {"alice", "guest"}

    ok(rapidmq(url, "users", "set-tags", "alice", "administrator,management"))
    assert api.get("/api/users/alice").json()["tags"] == ["administrator", "management"]
    assert can_log_in(broker, "alice", "Al1ce-pw"), "set-tags must keep the password"

    # the new password from stdin, never echoed
    changed = rapidmq(url, "users", "change-password", "alice", "--password", "-", stdin="N3w-pw\n")
    assert "N3w-pw" not in ok(changed)
    assert can_log_in(broker, "alice", "N3w-pw")
    assert not can_log_in(broker, "alice", "Al1ce-pw")
    assert api.get("/api/users/alice").json()["tags"] == ["administrator", "management"]

    # the new administrator can use the commands with their own login (before the command)
    mine = rapidmq(url, "--user", "alice", "--password", "N3w-pw", "users", "list")
    assert "alice" in ok(mine)

    ok(rapidmq(url, "users", "delete", "alice"))
    assert api.get("/api/users/alice").status_code == 404
    assert not can_log_in(broker, "alice", "N3w-pw")
    missing = rapidmq(url, "users", "delete", "alice")
    assert (missing.returncode, missing.stderr.strip()) == (1, "rapidmq: user 'alice' not found")


def test_vhosts_add_list_delete(broker: BrokerProcess, url: str, api: httpx.Client) -> None:
    ok(rapidmq(url, "vhosts", "add", "staging", "--description", "staging apps", "--tags", "qa,eu"))
    vhost = api.get("/api/vhosts/staging").json()
    assert (vhost["description"], vhost["tags"]) == ("staging apps", ["qa", "eu"])
    # the creator may use it at once, as with RabbitMQ
    assert can_log_in(broker, "guest", "guest", "staging")
    listed = ok(rapidmq(url, "vhosts", "list")).splitlines()
    assert listed[0].split() == ["name", "description", "tags", "messages"]
    assert any(line.startswith("staging ") for line in listed)
    ok(rapidmq(url, "vhosts", "delete", "staging"))
    assert api.get("/api/vhosts/staging").status_code == 404
    gone = rapidmq(url, "vhosts", "delete", "staging")
    assert (gone.returncode, gone.stderr.strip()) == (1, "rapidmq: vhost 'staging' not found")


def test_permissions_set_list_clear(broker: BrokerProcess, url: str, api: httpx.Client) -> None:
    ok(rapidmq(url, "vhosts", "add", "perm"))
    ok(rapidmq(url, "users", "add", "bob", "--password", "B0b-pw"))
    assert not can_log_in(broker, "bob", "B0b-pw", "perm")
    ok(
        rapidmq(
            url,
            "permissions",
            "set",
            "bob",
            "--vhost",
            "perm",
            "--configure",
            "^bob-",
            "--write",
            ".*",
            "--read",
            ".*",
        )
    )
    assert api.get("/api/permissions/perm/bob").json()["configure"] == "^bob-"
    assert can_log_in(broker, "bob", "B0b-pw", "perm")
    listed = json.loads(
        ok(rapidmq(url, "permissions", "list", "--vhost", "perm", "--format", "json"))
    )
    assert {(p["user"], p["configure"]) for p in listed} == {("bob", "^bob-"), ("guest", ".*")}
    every = ok(rapidmq(url, "permissions", "list")).splitlines()
    assert every[0].split() == ["user", "vhost", "configure", "write", "read"]
    assert ["bob", "perm", "^bob-", ".*", ".*"] in [line.split() for line in every]
    bad = rapidmq(
        url, "permissions", "set", "bob", "--vhost", "perm",
        "--configure", "(", "--write", ".*", "--read", ".*",
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("rapidmq: refused: ")
    ok(rapidmq(url, "permissions", "clear", "bob", "--vhost", "perm"))
    assert api.get("/api/permissions/perm/bob").status_code == 404
    assert not can_log_in(broker, "bob", "B0b-pw", "perm")
    ok(rapidmq(url, "users", "delete", "bob"))
    ok(rapidmq(url, "vhosts", "delete", "perm"))


def test_refusals_are_one_line(url: str) -> None:
    down = rapidmq("http://127.0.0.1:9", "users", "list")
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1 and down.stderr.startswith("rapidmq: cannot reach")
    unauthorised = rapidmq(url, "--password", "nope", "vhosts", "list")
    assert unauthorised.returncode == 1
    assert unauthorised.stderr.startswith("rapidmq: not authorized")
    usage = rapidmq(url, "users", "add", "carol")
    assert usage.returncode == 2
    assert usage.stderr.count("\n") == 1 and "--password" in usage.stderr
    empty = rapidmq(url, "users", "add", "carol", "--password", "-", stdin="")
    assert (empty.returncode, empty.stderr.strip()) == (2, "rapidmq: no password on stdin")
