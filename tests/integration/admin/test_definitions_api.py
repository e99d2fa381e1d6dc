"""/api/definitions: export, import, a round trip through a restart, RabbitMQ's files."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from pamqp import commands

from rapidmq.auth.permissions import Permission, TopicPermission
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url
from tests.integration.amqp_client import Client, connect
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"
RABBITMQ_EXPORT = FIXTURES / "rabbitmq-3.10-definitions.json"

TOP_LEVEL_KEYS = [
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
]


def client_for(server: Server, auth: tuple[str, str] = ("guest", "guest")) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=http_url(server), auth=auth, timeout=10.0)


async def amqp(server: Server, vhost: str = "/") -> Client:
    port = server.ports["amqp"]
    assert port is not None
    client = await connect(port, vhost=vhost)
    await client.open_channel(1)
    return client


async def build_topology(server: Server) -> None:
    """Users, a vhost, grants and a topology with arguments, made as operators and clients do."""
    server.broker.add_vhost("shop", description="orders and billing", tags=("prod", "eu"))
    server.users.add_user("alice", "alice-secret", tags=("management",))
    server.users.add_user("bob", "bob-secret", tags=("monitoring", "policymaker"))
    server.permissions.set(Permission("guest", "shop"))
    server.permissions.set(Permission("alice", "shop", "^alice-.*", ".*", "^orders"))
    server.permissions.set_topic(TopicPermission("alice", "shop", "amq.topic", "^a\\.", ".*"))
    client = await amqp(server, "shop")
    try:
        exchanges: list[tuple[str, str, dict[str, Any], bool]] = [
            ("unrouted", "fanout", {}, False),
            ("orders", "topic", {"alternate-exchange": "unrouted"}, False),
            ("events", "headers", {}, True),
        ]
        for exchange, type_, arguments, internal in exchanges:
            declare = commands.Exchange.Declare(
                exchange=exchange,
                exchange_type=type_,
                durable=True,
                internal=internal,
                arguments=arguments,
            )
            await client.rpc(1, declare, commands.Exchange.DeclareOk)
        queues: dict[str, dict[str, Any]] = {
            "orders.eu": {
                "x-message-ttl": 60000,
                "x-dead-letter-exchange": "unrouted",
                "x-max-length": 1000,
            },
            "dead": {},
        }
        for queue, arguments in queues.items():
            declare_q = commands.Queue.Declare(queue=queue, durable=True, arguments=arguments)
            await client.rpc(1, declare_q, commands.Queue.DeclareOk)
        binds = [
            commands.Queue.Bind(queue="orders.eu", exchange="orders", routing_key="order.eu.*"),
            commands.Queue.Bind(queue="dead", exchange="unrouted", routing_key=""),
            commands.Queue.Bind(
                queue="dead", exchange="events", arguments={"x-match": "any", "region": "eu"}
            ),
        ]
        for bind in binds:
            await client.rpc(1, bind, commands.Queue.BindOk)
        e2e = commands.Exchange.Bind(
            destination="events",
            source="orders",
            routing_key="order.#",
            arguments={"x-tag": "copy"},
        )
        await client.rpc(1, e2e, commands.Exchange.BindOk)
    finally:
        await client.aclose()


def topology_of(definitions: dict[str, Any]) -> dict[str, Any]:
    """The parts of an export that must survive a round trip, order-independent."""

    def ordered(items: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(item, sort_keys=True) for item in items)

    return {
        key: ordered(definitions[key])
        for key in (
            "users",
            "vhosts",
            "permissions",
            "topic_permissions",
            "queues",
            "exchanges",
            "bindings",
        )
    }


async def test_export_has_rabbitmq_shape_and_leaves_out_what_rabbitmq_does(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await build_topology(admin_server)
    client = await amqp(admin_server, "shop")
    try:
        exclusive = commands.Queue.Declare(queue="mine", exclusive=True)
        await client.rpc(1, exclusive, commands.Queue.DeclareOk)
        transient = commands.Queue.Declare(queue="scratch", durable=False)
        await client.rpc(1, transient, commands.Queue.DeclareOk)
        bind = commands.Queue.Bind(queue="mine", exchange="orders", routing_key="#")
        await client.rpc(1, bind, commands.Queue.BindOk)
        response = await api.get("/api/definitions")
    finally:
        await client.aclose()
    assert response.status_code == 200
    body = response.json()
    assert list(body) == TOP_LEVEL_KEYS
    assert body["product_name"] == "RapidMQ"
    alice = next(u for u in body["users"] if u["name"] == "alice")
    assert alice["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert alice["tags"] == ["management"]
    assert alice["limits"] == {}
    assert alice["password_hash"] == admin_server.users.get("alice").password_hash  # type: ignore[union-attr]
    shop = next(v for v in body["vhosts"] if v["name"] == "shop")
    assert shop["description"] == "orders and billing"
    assert shop["tags"] == ["prod", "eu"]
    assert {
        "user": "alice",
        "vhost": "shop",
        "configure": "^alice-.*",
        "write": ".*",
        "read": "^orders",
    } in body["permissions"]
    assert body["topic_permissions"] == [
        {"user": "alice", "vhost": "shop", "exchange": "amq.topic", "write": "^a\\.", "read": ".*"}
    ]
    assert {"name": "cluster_name", "value": admin_server.cluster_name} in body["global_parameters"]
    names = {(x["vhost"], x["name"]) for x in body["exchanges"]}
    assert names == {("shop", "unrouted"), ("shop", "orders"), ("shop", "events")}
    orders = next(x for x in body["exchanges"] if x["name"] == "orders")
    assert orders == {
        "name": "orders",
        "vhost": "shop",
        "type": "topic",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {"alternate-exchange": "unrouted"},
    }
    queue_names = {q["name"] for q in body["queues"]}
    assert queue_names == {"orders.eu", "dead", "scratch"}  # never the exclusive "mine"
    assert all(b["destination"] != "mine" for b in body["bindings"])
    assert {
        "source": "orders",
        "vhost": "shop",
        "destination": "events",
        "destination_type": "exchange",
        "routing_key": "order.#",
        "arguments": {"x-tag": "copy"},
    } in body["bindings"]
    assert all(b["source"] for b in body["bindings"])  # no default-exchange bindings


async def test_round_trip_restores_every_object_durably_across_a_restart(
    api: httpx.AsyncClient, admin_server: Server, tmp_path: Path
) -> None:
    await build_topology(admin_server)
    exported = (await api.get("/api/definitions")).json()
    data_dir = str(tmp_path / "data")
    async with serving(http_port=0, storage="rocksdb", data_dir=data_dir) as fresh:
        assert fresh.broker.vhost("shop") is None
        async with client_for(fresh) as fresh_api:
            response = await fresh_api.post("/api/definitions", json=exported)
            assert response.status_code == 204, response.text
            imported = (await fresh_api.get("/api/definitions")).json()
        assert imported["global_parameters"] == exported["global_parameters"]
    assert topology_of(imported) == topology_of(exported)
    async with serving(http_port=0, storage="rocksdb", data_dir=data_dir) as restarted:
        async with client_for(restarted) as restarted_api:
            after_restart = (await restarted_api.get("/api/definitions")).json()
        async with client_for(restarted, ("alice", "alice-secret")) as alice:
            assert (await alice.get("/api/overview")).status_code == 200
        queue = restarted.broker.vhost("shop").queues["orders.eu"]  # type: ignore[union-attr]
        assert queue.durable and queue.arguments["x-max-length"] == 1000
    assert topology_of(after_restart) == topology_of(exported)


async def test_a_rabbitmq_export_imports_and_its_users_log_in_with_their_passwords(
    api: httpx.AsyncClient, admin_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    definitions = json.loads(RABBITMQ_EXPORT.read_text())
    assert definitions["rabbitmq_version"].startswith("3.10")
    with caplog.at_level(logging.INFO, logger="rapidmq.admin"):
        response = await api.post("/api/definitions", json=definitions)
    assert response.status_code == 204, response.text
    async with client_for(admin_server, ("alice", "alice-secret")) as alice:
        assert (await alice.get("/api/overview")).status_code == 200
    async with client_for(admin_server, ("bob", "bob-secret")) as bob:
        assert (await bob.get("/api/nodes")).status_code == 200
    async with client_for(admin_server, ("alice", "wrong")) as wrong:
        assert (await wrong.get("/api/overview")).status_code == 401
    assert admin_server.users.get("bob").tags == ("monitoring", "policymaker")  # type: ignore[union-attr]
    shop = admin_server.broker.vhost("shop")
    assert shop is not None
    assert shop.queues["orders.eu"].arguments == {
        "x-dead-letter-exchange": "unrouted",
        "x-max-length": 1000,
        "x-message-ttl": 60000,
    }
    assert shop.exchanges["events"].internal is True
    assert shop.exchanges["orders"].arguments == {"alternate-exchange": "unrouted"}
    routes = {
        (b.destination.name, b.routing_key) for b in shop.exchanges["orders"].bindings_out.values()
    }
    assert routes == {("orders.eu", "order.eu.*"), ("events", "order.#")}
    assert admin_server.permissions.get("alice", "shop") == Permission(
        "alice", "shop", "^alice-.*", ".*", ".*"
    )
    # The imported alice reaches her vhost over AMQP with the same password.
    port = admin_server.ports["amqp"]
    assert port is not None
    client = await connect(port, user="alice", password="alice-secret", vhost="shop")
    await client.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "rapidmq.admin"]
    assert any("imported by guest" in m and "3 users" in m for m in messages), messages
    assert not any("policies ttl-policy" in m for m in messages), messages
    # The policy is imported and applies to the queues it matches.
    policy = shop.policies.get("ttl-policy")
    assert policy is not None and policy.as_json() == {
        "vhost": "shop",
        "name": "ttl-policy",
        "pattern": "^orders\\.",
        "apply-to": "queues",
        "definition": {"max-length": 5000},
        "priority": 1,
    }
    applied = shop.policies.of_queue("orders.eu")
    assert (applied.policy, shop.queues["orders.eu"].settings.max_length) == (policy, 1000)
    # RabbitMQ's vhost-limits parameter is applied, not skipped
    assert admin_server.limits.vhost_limits("shop") == {"max-connections": 100}
    assert shop.max_connections == 100
    assert not any("parameters limits" in m for m in messages), messages


async def test_import_adds_and_updates_but_never_deletes(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    admin_server.users.add_user("carol", "old", tags=("management",))
    keep = admin_server.broker.vhost("/")
    assert keep is not None
    first = {
        "users": [{"name": "carol", "password": "new", "tags": "administrator,monitoring"}],
        "vhosts": [{"name": "extra", "description": "imported"}],
        "queues": [{"name": "q1", "vhost": "extra", "durable": True, "arguments": {}}],
    }
    assert (await api.post("/api/definitions", json=first)).status_code == 204
    carol = admin_server.users.get("carol")
    assert carol is not None and carol.tags == ("administrator", "monitoring")
    async with client_for(admin_server, ("carol", "new")) as new_password:
        assert (await new_password.get("/api/definitions")).status_code == 200
    second = {
        "queues": [
            {"name": "q1", "vhost": "extra", "durable": True, "arguments": {}},
            {"name": "q2", "vhost": "extra", "durable": True, "auto_delete": False},
        ]
    }
    assert (await api.post("/api/definitions", json=second)).status_code == 204
    extra = admin_server.broker.vhost("extra")
    assert extra is not None and set(extra.queues) == {"q1", "q2"}
    assert extra.description == "imported"
    assert admin_server.users.get("guest") is not None


async def test_per_vhost_export_imports_into_another_vhost(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await build_topology(admin_server)
    response = await api.get("/api/definitions/shop")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "rabbit_version",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ]
    assert all(
        "vhost" not in item for key in ("queues", "exchanges", "bindings") for item in body[key]
    )
    admin_server.broker.add_vhost("staging")
    assert (await api.post("/api/definitions/staging", json=body)).status_code == 204
    staging = (await api.get("/api/definitions/staging")).json()
    assert staging == body
    missing = await api.post("/api/definitions/nowhere", json=body)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "reason": "vhost_not_found"}
    missing_get = await api.get("/api/definitions/nowhere")
    assert missing_get.status_code == 400
    assert missing_get.json() == {"error": "bad_request", "reason": "vhost_not_found"}


async def test_a_file_uploaded_from_the_web_form_is_imported(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    definitions = copy.deepcopy(json.loads(RABBITMQ_EXPORT.read_text()))
    files = {"file": ("definitions.json", json.dumps(definitions).encode(), "application/json")}
    response = await api.post("/api/definitions", files=files, data={"redirect": "../"})
    assert response.status_code == 204, response.text
    assert admin_server.users.get("alice") is not None
    assert admin_server.broker.vhost("shop") is not None


async def test_bad_bodies_get_400_with_rabbitmq_reasons(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    for raw in (b"{bad", b"[1, 2]", b'"text"'):
        response = await api.post("/api/definitions", content=raw)
        assert response.status_code == 400
        assert response.json() == {"error": "bad_request", "reason": "failed_to_parse_json"}
    assert (await api.post("/api/definitions", content=b"")).status_code == 204
    no_vhost = {"queues": [{"name": "q", "vhost": "absent", "durable": True, "arguments": {}}]}
    response = await api.post("/api/definitions", json=no_vhost)
    assert response.status_code == 400
    assert "absent" in response.json()["reason"]
    not_a_list = await api.post("/api/definitions", json={"queues": {"name": "q"}})
    assert not_a_list.status_code == 400
    dangling = {
        "bindings": [
            {
                "source": "amq.direct",
                "vhost": "/",
                "destination": "nowhere",
                "destination_type": "queue",
                "routing_key": "k",
                "arguments": {},
            }
        ]
    }
    response = await api.post("/api/definitions", json=dangling)
    assert response.status_code == 400
    assert "nowhere" in response.json()["reason"]
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None and "q" not in vhost.queues


async def test_only_administrators_may_export_or_import(admin_server: Server) -> None:
    admin_server.users.add_user("watcher", "pw", tags=("monitoring",))
    async with client_for(admin_server, ("watcher", "pw")) as watcher:
        for response in (
            await watcher.get("/api/definitions"),
            await watcher.post("/api/definitions", json={}),
            await watcher.get("/api/definitions/%2F"),
            await watcher.post("/api/definitions/%2F", json={}),
        ):
            assert response.status_code == 401
            assert response.json()["reason"] == "Not administrator user"
    async with client_for(admin_server, ("guest", "bad")) as bad_password:
        assert (await bad_password.get("/api/definitions")).status_code == 401


async def test_export_of_the_default_vhost_by_its_encoded_name(api: httpx.AsyncClient) -> None:
    queue = {"name": "root-q", "durable": True, "auto_delete": False, "arguments": {}}
    assert (await api.post("/api/definitions/%2F", json={"queues": [queue]})).status_code == 204
    body = (await api.get("/api/definitions/%2F")).json()
    assert body["queues"] == [queue]
