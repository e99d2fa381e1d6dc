"""/api/policies and /api/operator-policies over HTTP, with pika clients seeing their effect."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pika
import pytest

from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio

DEADLINE_S = 10.0


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port


def with_channel(port: int, work: Callable[[Any], Any]) -> Any:
    """Run ``work(channel)`` on a fresh pika connection (call in a worker thread)."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        return work(connection.channel())
    finally:
        connection.close()


async def pika_do(server: Server, work: Callable[[Any], Any]) -> Any:
    return await anyio.to_thread.run_sync(with_channel, amqp_port(server), work)


def publish_all(queue: str, bodies: list[str], **declare: Any) -> Callable[[Any], None]:
    def work(channel: Any) -> None:
        channel.queue_declare(queue, **declare)
        for body in bodies:
            channel.basic_publish("", queue, body.encode())

    return work


def drain(queue: str) -> Callable[[Any], list[bytes]]:
    def work(channel: Any) -> list[bytes]:
        out = []
        while True:
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is None:
                return out
            out.append(body)

    return work


async def wait_for(check: Callable[[], Any]) -> None:
    with anyio.fail_after(DEADLINE_S):
        while not await check():
            await anyio.sleep(0.02)


POLICY = {"pattern": "^pq", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"}


async def test_a_policy_is_created_replaced_listed_and_deleted(api: httpx.AsyncClient) -> None:
    assert (await api.put("/api/policies/%2F/p1", json=POLICY)).status_code == 201
    assert (await api.put("/api/policies/%2F/p1", json=POLICY)).status_code == 204
    shown = {
        "vhost": "/",
        "name": "p1",
        "pattern": "^pq",
        "apply-to": "queues",
        "definition": {"max-length": 2},
        "priority": 1,
    }
    assert (await api.get("/api/policies/%2F/p1")).json() == shown
    assert (await api.get("/api/policies")).json() == [shown]
    assert (await api.get("/api/policies/%2F")).json() == [shown]
    assert (await api.get("/api/operator-policies")).json() == []
    assert (await api.delete("/api/policies/%2F/p1")).status_code == 204
    gone = await api.delete("/api/policies/%2F/p1")
    assert (gone.status_code, gone.json()) == (
        404,
        {"error": "Object Not Found", "reason": "Not Found"},
    )
    assert (await api.get("/api/policies/%2F/p1")).status_code == 404
    assert (await api.get("/api/policies/nowhere")).status_code == 404


async def test_defaults_are_priority_0_and_apply_to_all(api: httpx.AsyncClient) -> None:
    body = {"pattern": "x", "definition": {"ha-mode": "all"}}
    assert (await api.put("/api/policies/%2F/d", json=body)).status_code == 201
    assert (await api.get("/api/policies/%2F/d")).json() == {
        "vhost": "/",
        "name": "d",
        "pattern": "x",
        "apply-to": "all",
        "definition": {"ha-mode": "all"},
        "priority": 0,
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "reply"),
    [
        (
            "/api/policies/nowhere/p",
            POLICY,
            404,
            {"error": "not_found", "reason": "vhost_not_found"},
        ),
        (
            "/api/policies/%2F/p",
            {"pattern": "(", "definition": {"max-length": 5}},
            400,
            {
                "error": "bad_request",
                "reason": "Validation failed\n\npattern should be regular expression but is "
                'invalid: {"missing )",1}\n',
            },
        ),
        (
            "/api/policies/%2F/p",
            {"pattern": "a", "definition": {"max-length": "x"}},
            400,
            {
                "error": "bad_request",
                "reason": "Validation failed\n\n"
                '&lt;&lt;"x"&gt;&gt; is not a valid maximum length\n',
            },
        ),
        (
            "/api/policies/%2F/p",
            {"definition": {"max-length": 1}},
            400,
            {"error": "bad_request", "reason": "[{key_missing,pattern}]"},
        ),
        (
            "/api/operator-policies/%2F/p",
            {"pattern": "a", "definition": {"overflow": "drop-head"}},
            400,
            {
                "error": "bad_request",
                "reason": 'Validation failed\n\n[{<<"overflow">>,<<"drop-head">>}] are not '
                "recognised policy settings\n",
            },
        ),
    ],
)
async def test_refused_policies_answer_as_rabbitmq(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, reply: dict[str, Any]
) -> None:
    response = await api.put(path, json=body)
    assert (response.status_code, response.json()) == (status, reply)


async def test_a_policy_max_length_drops_messages_of_an_existing_queue_at_once(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await pika_do(admin_server, publish_all("pq1", ["m0", "m1", "m2", "m3", "m4"]))
    assert (await api.put("/api/policies/%2F/limit", json=POLICY)).status_code == 201
    queue = (await api.get("/api/queues/%2F/pq1")).json()
    fields = ("messages_ready", "policy", "operator_policy", "effective_policy_definition")
    assert {k: queue[k] for k in fields} == {
        "messages_ready": 2,
        "policy": "limit",
        "operator_policy": None,
        "effective_policy_definition": {"max-length": 2},
    }
    assert await pika_do(admin_server, drain("pq1")) == [b"m3", b"m4"]


async def test_an_operator_policy_merges_and_shows_on_the_queue(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await pika_do(admin_server, publish_all("pq2", [], arguments={"x-max-length": 10}))
    policy = {"pattern": "^pq", "definition": {"max-length": 6, "expires": 900000}}
    operator = {"pattern": "^pq", "definition": {"max-length": 4, "message-ttl": 200000}}
    assert (await api.put("/api/policies/%2F/p", json=policy)).status_code == 201
    assert (await api.put("/api/operator-policies/%2F/op", json=operator)).status_code == 201
    queues = (await api.get("/api/queues")).json()
    assert [(q["name"], q["policy"], q["operator_policy"]) for q in queues] == [("pq2", "p", "op")]
    assert queues[0]["effective_policy_definition"] == {
        "expires": 900000,
        "max-length": 4,
        "message-ttl": 200000,
    }
    bodies = [str(i) for i in range(8)]
    await pika_do(admin_server, publish_all("pq2", bodies, arguments={"x-max-length": 10}))
    assert len(await pika_do(admin_server, drain("pq2"))) == 4


async def test_a_policy_dead_letter_exchange_dead_letters_rejected_messages(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    def setup(channel: Any) -> None:
        channel.queue_declare("dead")
        channel.queue_bind("dead", "amq.fanout")

    await pika_do(admin_server, setup)
    await pika_do(admin_server, publish_all("pq3", ["bad"]))
    body = {"pattern": "^pq3$", "definition": {"dead-letter-exchange": "amq.fanout"}}
    assert (await api.put("/api/policies/%2F/dlx", json=body)).status_code == 201

    def reject(channel: Any) -> None:
        method, _, _ = channel.basic_get("pq3")
        channel.basic_reject(method.delivery_tag, requeue=False)

    await pika_do(admin_server, reject)
    assert await pika_do(admin_server, drain("dead")) == [b"bad"]


async def test_a_policy_message_ttl_expires_messages(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    body = {"pattern": "^pq4$", "definition": {"message-ttl": 50}}
    assert (await api.put("/api/policies/%2F/ttl", json=body)).status_code == 201
    await pika_do(admin_server, publish_all("pq4", ["a", "b"]))

    async def empty() -> bool:
        return bool((await api.get("/api/queues/%2F/pq4")).json()["messages"] == 0)

    await wait_for(empty)
    assert await pika_do(admin_server, drain("pq4")) == []


async def test_an_exchange_shows_its_policy_and_routes_to_the_policy_alternate(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    def setup(channel: Any) -> None:
        channel.exchange_declare("px", "direct")
        channel.queue_declare("unrouted")
        channel.queue_bind("unrouted", "amq.fanout")

    await pika_do(admin_server, setup)
    body = {
        "pattern": "^px$",
        "definition": {"alternate-exchange": "amq.fanout"},
        "apply-to": "exchanges",
    }
    assert (await api.put("/api/policies/%2F/ae", json=body)).status_code == 201
    exchange = (await api.get("/api/exchanges/%2F/px")).json()
    assert exchange["policy"] == "ae"
    listed = (await api.get("/api/exchanges/%2F")).json()
    assert [x["name"] for x in listed if "policy" in x] == ["px"]
    await pika_do(admin_server, lambda ch: ch.basic_publish("px", "nowhere", b"lost"))
    assert await pika_do(admin_server, drain("unrouted")) == [b"lost"]


async def test_policies_need_policymaker_and_operator_policies_administrator(
    admin_server: Server,
) -> None:
    admin_server.users.add_user("pm", "pw", tags=("policymaker",))
    admin_server.users.add_user("mg", "pw", tags=("management",))
    for user in ("pm", "mg"):
        admin_server.permissions.set(Permission(user, "/", ".*", ".*", ".*"))
    statuses = []
    for user in ("pm", "mg"):
        async with httpx.AsyncClient(base_url=http_url(admin_server), auth=(user, "pw")) as c:
            statuses.append(
                (
                    (await c.put("/api/policies/%2F/p", json=POLICY)).status_code,
                    (await c.put("/api/operator-policies/%2F/p", json=POLICY)).status_code,
                )
            )
    assert statuses == [(201, 401), (401, 401)]


async def test_an_http_publish_refused_by_a_policy_limit_answers_as_rabbitmq(
    api: httpx.AsyncClient,
) -> None:
    await api.put("/api/queues/%2F/pq5", json={})
    body = {"pattern": "^pq5$", "definition": {"max-length": 1, "overflow": "reject-publish"}}
    assert (await api.put("/api/policies/%2F/cap", json=body)).status_code == 201
    message = {"properties": {}, "routing_key": "pq5", "payload": "x", "payload_encoding": "string"}
    replies = [await api.post("/api/exchanges/%2F/amq.default/publish", json=message) for _ in "ab"]
    assert [(r.status_code, r.json()) for r in replies] == [
        (200, {"routed": True}),
        (
            400,
            {
                "error": "bad_request",
                "reason": "rejected Unable to publish message. Check queue limits.",
            },
        ),
    ]


async def test_policy_changes_are_audit_events(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rapidmq.audit")
    await api.put("/api/policies/%2F/audited", json=POLICY)
    await api.delete("/api/policies/%2F/audited")
    await api.put("/api/operator-policies/%2F/cap", json=POLICY)
    events = [
        (r.event, r.actor, r.vhost, r.policy)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "rapidmq.audit" and "policy" in getattr(r, "event", "")
    ]
    assert events == [
        ("policy.set", "guest", "/", "audited"),
        ("policy.cleared", "guest", "/", "audited"),
        ("operator_policy.set", "guest", "/", "cap"),
    ]
