"""/api/bindings: listing, create, show and delete, and RabbitMQ's properties_key."""

from __future__ import annotations

import logging
from urllib.parse import unquote

import httpx
import pytest

from rapidmq.admin.resources import properties_key
from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio


def test_properties_key_follows_rabbitmq() -> None:
    # Keys without arguments are RabbitMQ's exactly (checked against RabbitMQ 3.10).
    assert properties_key("", {}) == "~"
    assert properties_key("orders.*", {}) == "orders.%2A"
    assert properties_key("a b/c~d.é", {}) == "a+b%2Fc%7Ed.%C3%A9"
    hashed = properties_key("", {"x": 1})
    assert hashed.startswith("~") and len(hashed) == 7
    assert properties_key("k", {"x": 1}) == "k" + hashed
    assert properties_key("k", {"x": 1}) != properties_key("k", {"x": 2})
    assert properties_key("k", {"a": 1, "b": 2}) == properties_key("k", {"b": 2, "a": 1})


async def test_implicit_bindings_of_the_default_exchange_are_listed(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.get("/api/bindings/%2F")).json() == []
    await api.put("/api/queues/%2F/alpha", json={})
    expected = {
        "source": "",
        "vhost": "/",
        "destination": "alpha",
        "destination_type": "queue",
        "routing_key": "alpha",
        "arguments": {},
        "properties_key": "alpha",
    }
    assert (await api.get("/api/bindings/%2F")).json() == [expected]
    assert (await api.get("/api/bindings")).json() == [expected]
    between = await api.get("/api/bindings/%2F/e/amq.default/q/alpha")
    assert between.json() == [expected]
    one = await api.get("/api/bindings/%2F/e/amq.default/q/alpha/alpha")
    assert one.status_code == 200 and one.json() == expected
    refused = await api.delete("/api/bindings/%2F/e/amq.default/q/alpha/alpha")
    assert refused.status_code == 401
    created = await api.post("/api/bindings/%2F/e/amq.default/q/alpha", json={})
    assert created.status_code == 401


async def test_queue_binding_lifecycle(api: httpx.AsyncClient, admin_server: Server) -> None:
    await api.put("/api/queues/%2F/orders", json={})
    await api.put("/api/exchanges/%2F/shop", json={"type": "topic"})
    created = await api.post(
        "/api/bindings/%2F/e/shop/q/orders", json={"routing_key": "order.*", "arguments": {}}
    )
    assert created.status_code == 201
    location = created.headers["location"]
    assert location == "orders/order.%252A"
    props = unquote(location.rsplit("/", 1)[1])
    assert props == "order.%2A"
    between = (await api.get("/api/bindings/%2F/e/shop/q/orders")).json()
    assert [(b["routing_key"], b["properties_key"]) for b in between] == [("order.*", props)]
    one = await api.get(f"/api/bindings/%2F/e/shop/q/orders/{location.rsplit('/', 1)[1]}")
    assert one.status_code == 200 and one.json()["destination_type"] == "queue"

    routed = await api.post(
        "/api/exchanges/%2F/shop/publish",
        json={
            "properties": {},
            "routing_key": "order.new",
            "payload": "p",
            "payload_encoding": "string",
        },
    )
    assert routed.json() == {"routed": True}
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None and vhost.queues["orders"].ready_count == 1

    deleted = await api.delete(f"/api/bindings/%2F/e/shop/q/orders/{location.rsplit('/', 1)[1]}")
    assert deleted.status_code == 204
    assert (await api.get("/api/bindings/%2F/e/shop/q/orders")).json() == []
    assert (await api.get("/api/bindings/%2F/e/shop/q/orders/order.%252A")).status_code == 404
    assert (await api.delete("/api/bindings/%2F/e/shop/q/orders/order.%252A")).status_code == 404
    assert not vhost.exchanges["shop"].bindings_out


async def test_bindings_with_arguments_are_told_apart_by_properties_key(
    api: httpx.AsyncClient,
) -> None:
    await api.put("/api/queues/%2F/q", json={})
    for args in ({"x-match": "all", "a": 1}, {"x-match": "any", "a": 1}):
        response = await api.post(
            "/api/bindings/%2F/e/amq.headers/q/q", json={"routing_key": "", "arguments": args}
        )
        assert response.status_code == 201
    listed = (await api.get("/api/bindings/%2F/e/amq.headers/q/q")).json()
    keys = {b["properties_key"] for b in listed}
    assert len(keys) == 2 and all(k.startswith("~") for k in keys)
    for b in listed:
        path = f"/api/bindings/%2F/e/amq.headers/q/q/{b['properties_key']}"
        assert (await api.get(path)).json()["arguments"] == b["arguments"]
    first = listed[0]
    path = f"/api/bindings/%2F/e/amq.headers/q/q/{first['properties_key']}"
    assert (await api.delete(path)).status_code == 204
    remaining = (await api.get("/api/bindings/%2F/e/amq.headers/q/q")).json()
    assert [b["arguments"] for b in remaining] == [listed[1]["arguments"]]


async def test_exchange_to_exchange_bindings(api: httpx.AsyncClient) -> None:
    await api.put("/api/exchanges/%2F/edge", json={"type": "fanout"})
    await api.put("/api/queues/%2F/sink", json={})
    await api.post("/api/bindings/%2F/e/edge/q/sink", json={})
    created = await api.post("/api/bindings/%2F/e/amq.direct/e/edge", json={"routing_key": "k"})
    assert created.status_code == 201 and created.headers["location"] == "edge/k"
    listed = (await api.get("/api/bindings/%2F/e/amq.direct/e/edge")).json()
    assert [(b["destination_type"], b["routing_key"]) for b in listed] == [("exchange", "k")]
    publish = {"properties": {}, "routing_key": "k", "payload": "x", "payload_encoding": "string"}
    routed = await api.post("/api/exchanges/%2F/amq.direct/publish", json=publish)
    assert routed.json() == {"routed": True}
    assert (await api.get("/api/queues/%2F/sink")).json()["messages"] == 1
    assert (await api.delete("/api/bindings/%2F/e/amq.direct/e/edge/k")).status_code == 204
    unrouted = await api.post("/api/exchanges/%2F/amq.direct/publish", json=publish)
    assert unrouted.json() == {"routed": False}
    everything = (await api.get("/api/bindings/%2F")).json()
    assert [(b["source"], b["destination"]) for b in everything] == [
        ("", "sink"),
        ("edge", "sink"),
    ]


async def test_binding_errors(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/q", json={})
    missing_source = await api.post("/api/bindings/%2F/e/nope/q/q", json={"routing_key": "k"})
    assert missing_source.status_code == 404
    assert missing_source.json() == {
        "error": "not_found",
        "reason": "no exchange 'nope' in vhost '/'",
    }
    missing_queue = await api.post("/api/bindings/%2F/e/amq.direct/q/nope", json={})
    assert missing_queue.status_code == 404
    assert missing_queue.json()["reason"] == "no queue 'nope' in vhost '/'"
    assert (await api.get("/api/bindings/%2F/e/nope/q/q")).status_code == 404
    assert (await api.get("/api/bindings/%2F/e/amq.direct/q/nope")).status_code == 404
    assert (await api.get("/api/bindings/nowhere")).status_code == 404
    not_json = await api.post("/api/bindings/%2F/e/amq.direct/q/q", content=b"{x")
    assert not_json.status_code == 400 and not_json.json()["reason"] == "not_json"
    bad_match = await api.post(
        "/api/bindings/%2F/e/amq.headers/q/q", json={"arguments": {"x-match": "some"}}
    )
    assert bad_match.status_code == 400


async def test_paging_and_sorting_bindings(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/q", json={})
    for key in ("c", "a", "b"):
        await api.post("/api/bindings/%2F/e/amq.direct/q/q", json={"routing_key": key})
    page = (
        await api.get("/api/bindings/%2F?page=1&page_size=2&sort=routing_key&sort_reverse=true")
    ).json()
    assert page["total_count"] == 4 and page["page_count"] == 2
    assert [b["routing_key"] for b in page["items"]] == ["q", "c"]


async def test_a_management_user_sees_and_changes_only_their_vhosts(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    admin_server.broker.add_vhost("team")
    admin_server.users.add_user("manager", "pw", tags=("management",))
    admin_server.permissions.set(Permission("manager", "team"))
    await api.put("/api/queues/%2F/hidden", json={})
    async with httpx.AsyncClient(
        base_url=http_url(admin_server), auth=("manager", "pw")
    ) as manager:
        assert (await manager.put("/api/queues/team/mine", json={})).status_code == 201
        created = await manager.post("/api/bindings/team/e/amq.direct/q/mine", json={})
        assert created.status_code == 201
        listed = (await manager.get("/api/bindings")).json()
        assert {b["vhost"] for b in listed} == {"team"} and len(listed) == 2
        assert (await manager.get("/api/bindings/%2F")).status_code == 401
        refused = await manager.post("/api/bindings/%2F/e/amq.direct/q/hidden", json={})
        assert refused.status_code == 401


async def test_changes_are_logged_with_the_user(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await api.put("/api/queues/%2F/q", json={})
    with caplog.at_level(logging.INFO, logger="rapidmq.admin"):
        await api.post("/api/bindings/%2F/e/amq.direct/q/q", json={"routing_key": "k"})
        await api.delete("/api/bindings/%2F/e/amq.direct/q/q/k")
    messages = [r.getMessage() for r in caplog.records if r.name == "rapidmq.admin"]
    assert (
        "user 'guest' bound queue 'q' to exchange 'amq.direct' with routing key 'k' "
        "in vhost '/'" in messages
    )
    assert (
        "user 'guest' unbound queue 'q' from exchange 'amq.direct' with routing key 'k' "
        "in vhost '/'" in messages
    )
