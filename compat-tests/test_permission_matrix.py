"""Permission matrix, differential: operation x permission patterns, RabbitMQ and RapidMQ.

For each permission profile a fresh vhost and user (names with a unique token)
are set up through each broker's own management API, the resources the
operations act on are declared there by guest, and then every operation of
the table runs as the user over AMQP with pika.  Each outcome is ``ok`` or the
channel (or connection) error's reply code and text; with the token replaced
and server-generated queue names blanked, the two brokers must agree exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pika
import pika.adapters.blocking_connection
import pika.exceptions
import pytest
from management_support import Api, enc, token

pytestmark = pytest.mark.differential

Channel = pika.adapters.blocking_connection.BlockingChannel
Operation = Callable[[Channel, str], Any]  # (channel, user name)

#: configure, write, read patterns; and an optional topic permission on amq.topic.
PROFILES: dict[str, tuple[tuple[str, str, str], tuple[str, str] | None]] = {
    "full": ((".*", ".*", ".*"), None),
    "prefix": (("^user-", "^user-", "^user-"), None),
    "unanchored": (("user-", "user-", "user-"), None),
    "empty": (("", "", ""), None),
    "configure-only": ((".*", "", ""), None),
    "write-only": (("", ".*", ""), None),
    "read-only": (("", "", ".*"), None),
    "topic": ((".*", ".*", ".*"), ("^{username}\\.", "^news\\.")),
}

OPERATIONS: list[tuple[str, Operation]] = [
    ("declare exchange user-nx", lambda ch, u: ch.exchange_declare("user-nx", "fanout")),
    ("declare exchange other-nx", lambda ch, u: ch.exchange_declare("other-nx", "fanout")),
    ("declare exchange my-user-nx", lambda ch, u: ch.exchange_declare("my-user-nx", "fanout")),
    ("passive exchange other-x", lambda ch, u: ch.exchange_declare("other-x", passive=True)),
    (
        "declare exchange with alternate",
        lambda ch, u: ch.exchange_declare(
            "user-ax", "direct", arguments={"alternate-exchange": "other-x"}
        ),
    ),
    ("declare queue user-nq", lambda ch, u: ch.queue_declare("user-nq")),
    ("declare queue other-nq", lambda ch, u: ch.queue_declare("other-nq")),
    ("declare server-named queue", lambda ch, u: ch.queue_declare("", exclusive=True)),
    ("passive queue other-q", lambda ch, u: ch.queue_declare("other-q", passive=True)),
    (
        "declare queue with dead-letter exchange",
        lambda ch, u: ch.queue_declare("user-dq", arguments={"x-dead-letter-exchange": "other-x"}),
    ),
    ("bind user-q to user-x", lambda ch, u: ch.queue_bind("user-q", "user-x", "k")),
    ("bind other-q to user-x", lambda ch, u: ch.queue_bind("other-q", "user-x", "k")),
    ("bind user-q to other-x", lambda ch, u: ch.queue_bind("user-q", "other-x", "k")),
    ("bind exchange", lambda ch, u: ch.exchange_bind("user-x", "other-x", "k")),
    ("unbind exchange", lambda ch, u: ch.exchange_unbind("user-x", "other-x", "k")),
    ("publish user-x", lambda ch, u: ch.basic_publish("user-x", "k", b"m")),
    ("publish default exchange", lambda ch, u: ch.basic_publish("", "user-q", b"m")),
    ("publish other-x", lambda ch, u: ch.basic_publish("other-x", "k", b"m")),
    ("publish missing exchange", lambda ch, u: ch.basic_publish("user-none", "k", b"m")),
    ("get user-q", lambda ch, u: ch.basic_get("user-q", auto_ack=True)),
    ("get other-q", lambda ch, u: ch.basic_get("other-q", auto_ack=True)),
    ("consume user-q", lambda ch, u: ch.basic_consume("user-q", lambda *a: None)),
    ("consume other-q", lambda ch, u: ch.basic_consume("other-q", lambda *a: None)),
    ("purge user-q", lambda ch, u: ch.queue_purge("user-q")),
    ("purge other-q", lambda ch, u: ch.queue_purge("other-q")),
    ("topic publish own key", lambda ch, u: ch.basic_publish("amq.topic", f"{u}.x", b"m")),
    ("topic publish other key", lambda ch, u: ch.basic_publish("amq.topic", "bob.x", b"m")),
    ("topic bind news", lambda ch, u: ch.queue_bind("user-q", "amq.topic", "news.#")),
    ("topic bind sport", lambda ch, u: ch.queue_bind("user-q", "amq.topic", "sport.#")),
    ("unbind user-q from user-x", lambda ch, u: ch.queue_unbind("user-q", "user-x", "k")),
    ("delete queue user-nq", lambda ch, u: ch.queue_delete("user-nq")),
    ("delete queue other-q", lambda ch, u: ch.queue_delete("other-q")),
    ("delete exchange user-nx", lambda ch, u: ch.exchange_delete("user-nx")),
    ("delete exchange other-x", lambda ch, u: ch.exchange_delete("other-x")),
]


def _ok(reply: Any) -> None:
    assert reply.status in (200, 201, 204), (reply.status, reply.body)


def _setup(api: Api, vhost: str, user: str, profile: str | None) -> None:
    """The vhost, user and resources; ``profile`` None grants nothing in the vhost."""
    (configure, write, read), topic = PROFILES[profile or "empty"]
    _ok(api.put(f"/api/vhosts/{enc(vhost)}"))
    _ok(api.put(f"/api/users/{enc(user)}", {"password": "pw", "tags": ""}))
    for name in ("user-x", "other-x"):
        _ok(api.put(f"/api/exchanges/{enc(vhost)}/{name}", {"type": "direct"}))
    for name in ("user-q", "other-q"):
        _ok(api.put(f"/api/queues/{enc(vhost)}/{name}", {}))
    if profile is not None:
        grant = {"configure": configure, "write": write, "read": read}
        _ok(api.put(f"/api/permissions/{enc(vhost)}/{enc(user)}", grant))
    if topic is not None:
        body = {"exchange": "amq.topic", "write": topic[0], "read": topic[1]}
        _ok(api.put(f"/api/topic-permissions/{enc(vhost)}/{enc(user)}", body))


def _teardown(api: Api, vhost: str, user: str) -> None:
    api.call("DELETE", f"/api/vhosts/{enc(vhost)}")
    api.call("DELETE", f"/api/users/{enc(user)}")


def _connect(api: Api, vhost: str, user: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        api.amqp_port,
        vhost,
        pika.PlainCredentials(user, "pw"),
        connection_attempts=1,
        blocked_connection_timeout=5,
        socket_timeout=5,
    )
    return pika.BlockingConnection(params)


def _outcomes(api: Api, profile: str) -> list[str]:
    tok = token()
    vhost, user = f"perm-{tok}", f"permu-{tok}"
    _setup(api, vhost, user, profile)
    outcomes: list[str] = []
    connection: pika.BlockingConnection | None = None
    try:
        for _, op in OPERATIONS:
            try:
                if connection is None or not connection.is_open:
                    connection = _connect(api, vhost, user)
                channel = connection.channel()
                op(channel, user)
                channel.basic_qos(prefetch_count=1)  # a round trip shows async refusals
                outcomes.append("ok")
                channel.close()
            except pika.exceptions.ChannelClosedByBroker as err:
                outcomes.append(f"{err.reply_code} {err.reply_text}")
            except pika.exceptions.ConnectionClosedByBroker as err:
                outcomes.append(f"connection {err.reply_code} {err.reply_text}")
            except pika.exceptions.ProbableAccessDeniedError as err:
                outcomes.append(f"connection refused {err}")
    finally:
        if connection is not None and connection.is_open:
            connection.close()
        _teardown(api, vhost, user)
    return [_normal(text, tok) for text in outcomes]


def _normal(text: str, tok: str) -> str:
    text = text.replace(tok, "<T>")
    return re.sub(r"amq\.gen-[\w-]+", "amq.gen-<generated>", text)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_operation_is_allowed_or_refused_alike(
    rabbitmq_api: Api, rapidmq_api: Api, profile: str
) -> None:
    expected = _outcomes(rabbitmq_api, profile)
    got = _outcomes(rapidmq_api, profile)
    differences = [
        (name, want, have)
        for (name, _), want, have in zip(OPERATIONS, expected, got, strict=True)
        if want != have
    ]
    assert not differences, differences
    # The table exercises both answers in every profile but the extremes.
    if profile not in ("full", "empty"):
        assert "ok" in got and any(o.startswith("403") for o in got)


def test_no_permission_in_the_vhost_is_refused_alike(rabbitmq_api: Api, rapidmq_api: Api) -> None:
    refusals = []
    for api in (rabbitmq_api, rapidmq_api):
        tok = token()
        vhost, user = f"perm-{tok}", f"permu-{tok}"
        try:
            _setup(api, vhost, user, None)
            with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
                _connect(api, vhost, user)
            refusals.append(_normal(str(info.value), tok))
        finally:
            _teardown(api, vhost, user)
    assert refusals[0] == refusals[1]
    assert "530" in refusals[0] and "access to vhost 'perm-<T>' refused" in refusals[0]


#: (method, path under /api with {v} for the vhost, body) run by a restricted management user.
API_REQUESTS: list[tuple[str, str, Any]] = [
    ("PUT", "/queues/{v}/other-new", {}),
    ("PUT", "/queues/{v}/user-new", {}),
    ("DELETE", "/queues/{v}/other-q", None),
    ("DELETE", "/queues/{v}/other-q/contents", None),
    (
        "POST",
        "/queues/{v}/other-q/get",
        {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
    ),
    (
        "POST",
        "/exchanges/{v}/other-x/publish",
        {"routing_key": "k", "payload": "x", "payload_encoding": "string", "properties": {}},
    ),
    ("PUT", "/exchanges/{v}/other-nx", {"type": "direct"}),
    ("DELETE", "/exchanges/{v}/other-x", None),
    ("POST", "/bindings/{v}/e/other-x/q/user-q", {"routing_key": "k"}),
    ("POST", "/bindings/{v}/e/amq.direct/q/other-q", {"routing_key": "k"}),
    ("DELETE", "/queues/{v}/user-new", None),
]


def _api_outcomes(api: Api) -> list[tuple[int, Any]]:
    tok = token()
    vhost, user = f"perm-{tok}", f"permu-{tok}"
    _setup(api, vhost, user, "prefix")
    _ok(api.put(f"/api/users/{enc(user)}", {"password": "pw", "tags": "management"}))
    try:
        outcomes = []
        for method, path, body in API_REQUESTS:
            reply = api.call(
                method, "/api" + path.format(v=enc(vhost)), json_body=body, auth=(user, "pw")
            )
            text = json.dumps(reply.body).replace(tok, "<T>") if reply.body else ""
            outcomes.append((reply.status, text))
        return outcomes
    finally:
        _teardown(api, vhost, user)


def test_management_api_checks_the_same_permissions(rabbitmq_api: Api, rapidmq_api: Api) -> None:
    expected = _api_outcomes(rabbitmq_api)
    got = _api_outcomes(rapidmq_api)
    assert got == expected
    assert {status for status, _ in got} >= {401, 201}
