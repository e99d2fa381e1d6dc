"""/api/queues: listing, declare, delete, purge, bindings and get over HTTP."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import httpx
import pytest
from pamqp import commands

from rapidmq.auth.permissions import Permission
from rapidmq.core.api import ClientInfo
from rapidmq.server import Server
from tests.integration import amqp_client
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port


async def publish(api: httpx.AsyncClient, queue: str, *payloads: str) -> None:
    for payload in payloads:
        body = {
            "properties": {"headers": {"n": payload}},
            "routing_key": queue,
            "payload": payload,
            "payload_encoding": "string",
        }
        response = await api.post("/api/exchanges/%2F/amq.default/publish", json=body)
        assert response.json() == {"routed": True}


async def get(api: httpx.AsyncClient, queue: str, **body: Any) -> list[dict[str, Any]]:
    response = await api.post(f"/api/queues/%2F/{queue}/get", json={"encoding": "auto", **body})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def test_declare_answers_201_then_204_and_400_when_inequivalent(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    body = {"durable": True, "arguments": {"x-max-length": 10}}
    assert (await api.put("/api/queues/%2F/orders", json=body)).status_code == 201
    assert (await api.put("/api/queues/%2F/orders", json=body)).status_code == 204
    other = await api.put("/api/queues/%2F/orders", json={"durable": False})
    assert other.status_code == 400
    assert other.json() == {
        "error": "bad_request",
        "reason": "inequivalent arg 'durable' for queue 'orders' in vhost '/': "
        "received 'false' but current is 'true'",
    }
    bad_arg = await api.put("/api/queues/%2F/q2", json={"arguments": {"x-max-length": "abc"}})
    assert bad_arg.status_code == 400
    assert bad_arg.json()["reason"].startswith("invalid arg 'x-max-length' for queue 'q2'")
    assert (await api.put("/api/queues/%2F/q2", content=b"{bad")).json()["reason"] == "not_json"
    assert (await api.put("/api/queues/%2F/amq.q", json={})).status_code == 401
    assert (await api.put("/api/queues/nowhere/q", json={})).status_code == 404
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None and vhost.queues["orders"].durable is True
    assert "q2" not in vhost.queues


async def test_a_queue_shows_live_counts_rates_and_idle_since(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/queues/%2F/work", json={"durable": True})
    await publish(api, "work", "a", "b", "c")
    shown = await api.get("/api/queues/%2F/work")
    assert shown.status_code == 200
    queue = shown.json()
    assert {k: queue[k] for k in ("name", "vhost", "durable", "auto_delete", "exclusive")} == {
        "name": "work",
        "vhost": "/",
        "durable": True,
        "auto_delete": False,
        "exclusive": False,
    }
    assert queue["node"] == admin_server.node_name
    assert (queue["state"], queue["type"], queue["policy"]) == ("running", "classic", None)
    assert (queue["messages"], queue["messages_ready"], queue["messages_unacknowledged"]) == (
        3,
        3,
        0,
    )
    assert queue["messages_details"] == {"rate": 0.0}
    assert queue["message_bytes"] == 3 and queue["consumers"] == 0
    assert queue["message_stats"]["publish"] == 3
    assert queue["message_stats"]["publish_details"] == {"rate": 0.0}
    assert queue["exclusive_consumer_tag"] is None and queue["consumer_details"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", queue["idle_since"])
    assert time.strftime("%Y-%m-%d", time.gmtime()) == queue["idle_since"][:10]
    await get(api, "work", count=2, ackmode="ack_requeue_false")
    after = (await api.get("/api/queues/%2F/work")).json()
    assert after["messages"] == 1 and after["message_stats"]["deliver_get"] == 2
    assert (await api.get("/api/queues/%2F/missing")).status_code == 404
    assert (await api.get("/api/queues/nowhere/work")).status_code == 404


async def test_consumers_are_detailed_on_the_single_queue(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/queues/%2F/jobs", json={})
    await publish(api, "jobs", "one")
    client = await amqp_client.connect(amqp_port(admin_server))
    try:
        await client.open_channel(1)
        ok = await client.rpc(
            1,
            commands.Basic.Consume(queue="jobs", consumer_tag="worker-1", exclusive=True),
            commands.Basic.ConsumeOk,
        )
        assert ok.consumer_tag == "worker-1"
        delivery = await client.next_delivery()
        assert delivery.body == b"one"
        queue = (await api.get("/api/queues/%2F/jobs")).json()
        assert queue["consumers"] == 1 and "idle_since" not in queue
        assert queue["messages_unacknowledged"] == 1 and queue["messages_ready"] == 0
        assert queue["exclusive_consumer_tag"] == "worker-1"
        [consumer] = queue["consumer_details"]
        assert consumer["consumer_tag"] == "worker-1" and consumer["ack_required"] is True
        assert consumer["queue"] == {"name": "jobs", "vhost": "/"}
        assert consumer["channel_details"]["number"] == 1
        assert consumer["channel_details"]["user"] == "guest"
        assert consumer["channel_details"]["peer_host"] == "127.0.0.1"
    finally:
        await client.aclose()


async def test_delete_honours_if_empty_and_if_unused(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/queues/%2F/full", json={})
    await publish(api, "full", "x")
    not_empty = await api.delete("/api/queues/%2F/full?if-empty=true")
    assert not_empty.status_code == 400
    assert not_empty.json()["reason"] == "queue 'full' in vhost '/' not empty"
    assert (await api.delete("/api/queues/%2F/full?if-unused=true")).status_code == 204
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None and "full" not in vhost.queues
    assert (await api.delete("/api/queues/%2F/full")).status_code == 404

    await api.put("/api/queues/%2F/busy", json={})
    client = await amqp_client.connect(amqp_port(admin_server))
    try:
        await client.open_channel()
        await client.rpc(1, commands.Basic.Consume(queue="busy"), commands.Basic.ConsumeOk)
        in_use = await api.delete("/api/queues/%2F/busy?if-unused=true")
        assert in_use.status_code == 400
        assert in_use.json()["reason"] == "queue 'busy' in vhost '/' in use"
        assert (await api.delete("/api/queues/%2F/busy")).status_code == 204
        cancel = await client.expect(commands.Basic.Cancel)
        assert cancel.consumer_tag
    finally:
        await client.aclose()


async def test_purge_empties_the_queue(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/pile", json={})
    await publish(api, "pile", "1", "2", "3")
    assert (await api.delete("/api/queues/%2F/pile/contents")).status_code == 204
    assert (await api.get("/api/queues/%2F/pile")).json()["messages"] == 0
    assert (await api.delete("/api/queues/%2F/missing/contents")).status_code == 404


async def test_queue_bindings_include_the_default_exchange(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/bound", json={})
    await api.post("/api/bindings/%2F/e/amq.direct/q/bound", json={"routing_key": "rk"})
    bindings = (await api.get("/api/queues/%2F/bound/bindings")).json()
    assert [(b["source"], b["routing_key"], b["properties_key"]) for b in bindings] == [
        ("", "bound", "bound"),
        ("amq.direct", "rk", "rk"),
    ]
    assert (await api.get("/api/queues/%2F/missing/bindings")).status_code == 404


async def test_get_with_requeue_keeps_the_order_and_flags_redelivery(
    api: httpx.AsyncClient,
) -> None:
    await api.put("/api/queues/%2F/fifo", json={})
    await publish(api, "fifo", "m1", "m2", "m3")
    first = await get(api, "fifo", count=2, ackmode="ack_requeue_true")
    assert [(m["payload"], m["redelivered"], m["message_count"]) for m in first] == [
        ("m1", False, 2),
        ("m2", False, 1),
    ]
    assert first[0] == {
        "payload_bytes": 2,
        "redelivered": False,
        "exchange": "",
        "routing_key": "fifo",
        "message_count": 2,
        "properties": {"headers": {"n": "m1"}},
        "payload": "m1",
        "payload_encoding": "string",
    }
    second = await get(api, "fifo", count=5, ackmode="reject_requeue_true")
    assert [(m["payload"], m["redelivered"]) for m in second] == [
        ("m1", True),
        ("m2", True),
        ("m3", False),
    ]
    third = await get(api, "fifo", count=1, ackmode="reject_requeue_false")
    assert [m["payload"] for m in third] == ["m1"]
    fourth = await get(api, "fifo", count=10, ackmode="ack_requeue_false")
    assert [(m["payload"], m["redelivered"]) for m in fourth] == [("m2", True), ("m3", True)]
    assert await get(api, "fifo", count=1, ackmode="ack_requeue_true") == []
    queue = (await api.get("/api/queues/%2F/fifo")).json()
    assert queue["messages"] == 0 and queue["message_stats"]["redeliver"] >= 5


async def test_get_truncates_and_encodes_as_asked(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/text", json={})
    await publish(api, "text", "hello world")
    [short] = await get(api, "text", count=1, ackmode="ack_requeue_true", truncate=5)
    assert short["payload"] == "hello" and short["payload_bytes"] == 11
    [encoded] = await get(api, "text", count=1, ackmode="ack_requeue_true", encoding="base64")
    assert encoded["payload"] == "aGVsbG8gd29ybGQ=" and encoded["payload_encoding"] == "base64"


async def test_bad_gets_are_refused(api: httpx.AsyncClient) -> None:
    url = "/api/queues/%2F/q/get"
    await api.put("/api/queues/%2F/q", json={})
    body = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
    missing = await api.post("/api/queues/%2F/none/get", json=body)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "reason": "NOT_FOUND - no queue 'none' in vhost '/'",
    }
    no_count = await api.post(url, json={"ackmode": "ack_requeue_true", "encoding": "auto"})
    assert no_count.status_code == 400 and no_count.json()["reason"] == "[{key_missing,count}]"
    bad_mode = await api.post(url, json={"count": 1, "ackmode": "keep", "encoding": "auto"})
    assert bad_mode.status_code == 400
    bad_encoding = await api.post(
        url, json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "hex"}
    )
    assert bad_encoding.status_code == 400
    assert bad_encoding.json()["reason"] == "Unsupported encoding. Please use auto or base64."
    assert (await api.post(url, content=b"nope")).json()["reason"] == "not_json"


async def test_exclusive_queues_of_other_connections_are_locked(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    client = await amqp_client.connect(amqp_port(admin_server))
    try:
        await client.open_channel()
        await client.rpc(
            1, commands.Queue.Declare(queue="private", exclusive=True), commands.Queue.DeclareOk
        )
        shown = (await api.get("/api/queues/%2F/private")).json()
        assert shown["exclusive"] is True
        locked = "cannot obtain exclusive access to locked queue 'private' in vhost '/'"
        for response in (
            await api.delete("/api/queues/%2F/private"),
            await api.delete("/api/queues/%2F/private/contents"),
            await api.put("/api/queues/%2F/private", json={}),
        ):
            assert response.status_code == 400
            assert response.json()["reason"].startswith(locked)
        got = await api.post(
            "/api/queues/%2F/private/get",
            json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        )
        assert got.status_code == 400
        assert got.json()["reason"].startswith("405 RESOURCE_LOCKED - " + locked)
        vhost = admin_server.broker.vhost("/")
        assert vhost is not None and "private" in vhost.queues
    finally:
        await client.aclose()


async def test_ten_thousand_queues_page_sort_and_filter_quickly(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    broker = admin_server.broker
    vhost = broker.vhost("/")
    assert vhost is not None
    connection = broker.connect("/", ClientInfo(protocol="test", peer="test"))
    for i in range(10_000):
        vhost.declare_queue(connection, f"q{i:05d}")
    connection.close()
    await publish(api, "q04242", "a", "b", "c")
    await publish(api, "q00007", "a")

    started = time.perf_counter()
    first = await api.get("/api/queues?page=1&page_size=100")
    elapsed = time.perf_counter() - started
    assert first.status_code == 200
    assert elapsed < 2.0
    page = first.json()
    assert (page["total_count"], page["filtered_count"], page["item_count"]) == (10_000,) * 2 + (
        100,
    )
    assert page["page_count"] == 100
    assert [q["name"] for q in page["items"][:2]] == ["q00000", "q00001"]

    last = (await api.get("/api/queues/%2F?page=100&page_size=100")).json()
    assert last["items"][-1]["name"] == "q09999"
    busiest = (
        await api.get("/api/queues/%2F?page=1&page_size=2&sort=messages&sort_reverse=true")
    ).json()
    assert [(q["name"], q["messages"]) for q in busiest["items"]] == [
        ("q04242", 3),
        ("q00007", 1),
    ]
    filtered = (await api.get("/api/queues/%2F?page=1&page_size=100&name=q0424")).json()
    assert filtered["filtered_count"] == 10 and filtered["total_count"] == 10_000
    assert all(q["name"].startswith("q0424") for q in filtered["items"])
    regex = (
        await api.get("/api/queues/%2F?page=1&page_size=100&name=%5Eq0000%5B12%5D$&use_regex=true")
    ).json()
    assert [q["name"] for q in regex["items"]] == ["q00001", "q00002"]
    columns = (await api.get("/api/queues/%2F?page=2&page_size=3&columns=name,messages")).json()
    assert columns["items"] == [
        {"name": "q00003", "messages": 0},
        {"name": "q00004", "messages": 0},
        {"name": "q00005", "messages": 0},
    ]


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
        assert [q["name"] for q in (await manager.get("/api/queues")).json()] == ["mine"]
        for response in (
            await manager.get("/api/queues/%2F"),
            await manager.get("/api/queues/%2F/hidden"),
            await manager.delete("/api/queues/%2F/hidden"),
            await manager.delete("/api/queues/%2F/hidden/contents"),
            await manager.put("/api/queues/%2F/other", json={}),
        ):
            assert response.status_code == 401
        assert (await manager.delete("/api/queues/team/mine")).status_code == 204
    assert (await api.get("/api/queues/%2F/hidden")).status_code == 200


async def test_changes_are_logged_with_the_user(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rapidmq.admin"):
        await api.put("/api/queues/%2F/q1", json={})
        await api.delete("/api/queues/%2F/q1")
    messages = [r.getMessage() for r in caplog.records if r.name == "rapidmq.admin"]
    assert "user 'guest' declared queue 'q1' in vhost '/'" in messages
    assert "user 'guest' deleted queue 'q1' in vhost '/'" in messages
