"""/api/exchanges: listing, declare, delete, bindings, and publishing over HTTP."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping

import httpx
import pytest
from pamqp import commands

from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration import amqp_client
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port


async def test_default_and_predeclared_exchanges_are_listed(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/exchanges/%2F")
    assert response.status_code == 200
    by_name = {x["name"]: x for x in response.json()}
    assert set(by_name) >= {"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers"}
    assert by_name[""] == {
        "name": "",
        "vhost": "/",
        "type": "direct",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }
    everywhere = (await api.get("/api/exchanges")).json()
    assert {(x["vhost"], x["name"]) for x in everywhere} >= {("/", ""), ("/", "amq.topic")}
    page = (await api.get("/api/exchanges/%2F?page=1&page_size=2&name=amq.&sort=name")).json()
    assert page["item_count"] == 2 and page["filtered_count"] == 5
    assert [x["name"] for x in page["items"]] == ["amq.direct", "amq.fanout"]


async def test_declare_answers_201_then_204_and_400_when_inequivalent(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    body = {"type": "topic", "durable": True, "arguments": {"alternate-exchange": "ae"}}
    assert (await api.put("/api/exchanges/%2F/events", json=body)).status_code == 201
    assert (await api.put("/api/exchanges/%2F/events", json=body)).status_code == 204
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None
    exchange = vhost.exchanges["events"]
    assert (exchange.type, exchange.durable, exchange.alternate) == ("topic", True, "ae")
    other = await api.put("/api/exchanges/%2F/events", json={"type": "direct", "durable": True})
    assert other.status_code == 400
    assert other.json() == {
        "error": "bad_request",
        "reason": "inequivalent arg 'type' for exchange 'events' in vhost '/': "
        "received 'direct' but current is 'topic'",
    }
    shown = (await api.get("/api/exchanges/%2F/events")).json()
    assert shown["type"] == "topic" and shown["arguments"] == {"alternate-exchange": "ae"}
    assert shown["incoming"] == [] and shown["outgoing"] == []
    # An empty body declares a transient direct exchange, as RabbitMQ does.
    assert (await api.put("/api/exchanges/%2F/plain", content=b"")).status_code == 201
    assert vhost.exchanges["plain"].type == "direct"
    assert vhost.exchanges["plain"].durable is False


async def test_bad_declarations_are_refused(api: httpx.AsyncClient) -> None:
    bogus = await api.put("/api/exchanges/%2F/x1", json={"type": "bogus"})
    assert bogus.status_code == 400
    assert bogus.json()["reason"] == "unknown exchange type 'bogus'"
    not_json = await api.put("/api/exchanges/%2F/x1", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["reason"] == "not_json"
    reserved = await api.put("/api/exchanges/%2F/amq.mine", json={"type": "direct"})
    assert reserved.status_code == 401
    assert reserved.json() == {"error": "not_authorised", "reason": "Access refused."}
    missing_vhost = await api.put("/api/exchanges/nowhere/x1", json={"type": "direct"})
    assert missing_vhost.status_code == 404
    assert (await api.get("/api/exchanges/%2F/x1")).status_code == 404
    assert (await api.get("/api/exchanges/nowhere")).status_code == 404


async def test_the_default_exchange_is_amq_default_in_paths(api: httpx.AsyncClient) -> None:
    shown = await api.get("/api/exchanges/%2F/amq.default")
    assert shown.status_code == 200 and shown.json()["name"] == ""
    assert (await api.delete("/api/exchanges/%2F/amq.default")).status_code == 401
    assert (await api.delete("/api/exchanges/%2F/amq.direct")).status_code == 401


async def test_delete_honours_if_unused_and_404s_when_missing(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/exchanges/%2F/src", json={"type": "fanout"})
    created = await api.post("/api/bindings/%2F/e/src/e/amq.fanout", json={"routing_key": ""})
    assert created.status_code == 201
    in_use = await api.delete("/api/exchanges/%2F/src?if-unused=true")
    assert in_use.status_code == 400
    assert in_use.json()["reason"] == "exchange 'src' in vhost '/' in use"
    assert (await api.delete("/api/exchanges/%2F/src")).status_code == 204
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None and "src" not in vhost.exchanges
    assert not vhost.exchanges["amq.fanout"].bindings_in
    assert (await api.delete("/api/exchanges/%2F/src")).status_code == 404


async def test_bindings_as_source_and_destination(api: httpx.AsyncClient) -> None:
    await api.put("/api/exchanges/%2F/hub", json={"type": "topic"})
    await api.put("/api/queues/%2F/q1", json={})
    await api.post("/api/bindings/%2F/e/hub/q/q1", json={"routing_key": "a.*"})
    await api.post("/api/bindings/%2F/e/amq.topic/e/hub", json={"routing_key": "#"})
    source = (await api.get("/api/exchanges/%2F/hub/bindings/source")).json()
    assert source == [
        {
            "source": "hub",
            "vhost": "/",
            "destination": "q1",
            "destination_type": "queue",
            "routing_key": "a.*",
            "arguments": {},
            "properties_key": "a.%2A",
        }
    ]
    destination = (await api.get("/api/exchanges/%2F/hub/bindings/destination")).json()
    assert [(b["source"], b["routing_key"]) for b in destination] == [("amq.topic", "#")]
    implicit = (await api.get("/api/exchanges/%2F/amq.default/bindings/source")).json()
    assert [(b["source"], b["destination"], b["routing_key"]) for b in implicit] == [
        ("", "q1", "q1")
    ]
    assert (await api.get("/api/exchanges/%2F/nope/bindings/source")).status_code == 404


async def test_published_message_reaches_an_amqp_consumer_with_its_properties(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/queues/%2F/inbox", json={"durable": True})
    properties = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "correlation_id": "corr-1",
        "message_id": "msg-1",
        "reply_to": "replies",
        "type": "greeting",
        "app_id": "billing",
        "user_id": "guest",
        "expiration": "60000",
        "priority": 4,
        "timestamp": 1_700_000_000,
        "delivery_mode": 2,
        "headers": {"tenant": "acme", "n": 7, "nested": {"ok": True}, "list": [1, "two"]},
    }
    published = await api.post(
        "/api/exchanges/%2F/amq.default/publish",
        json={
            "properties": properties,
            "routing_key": "inbox",
            "payload": '{"hello": "world"}',
            "payload_encoding": "string",
        },
    )
    assert published.status_code == 200 and published.json() == {"routed": True}
    client = await amqp_client.connect(amqp_port(admin_server))
    try:
        await client.open_channel()
        await client.rpc(
            1, commands.Basic.Consume(queue="inbox", no_ack=True), commands.Basic.ConsumeOk
        )
        delivery = await client.next_delivery()
    finally:
        await client.aclose()
    assert delivery.body == b'{"hello": "world"}'
    assert delivery.method.routing_key == "inbox" and delivery.method.exchange == ""
    props = delivery.properties
    assert props.content_type == "application/json"
    assert props.correlation_id == "corr-1" and props.message_id == "msg-1"
    assert props.reply_to == "replies" and props.message_type == "greeting"
    assert props.app_id == "billing" and props.user_id == "guest"
    assert props.expiration == "60000" and props.priority == 4 and props.delivery_mode == 2
    assert props.timestamp is not None
    assert int(props.timestamp.timestamp()) == 1_700_000_000
    assert props.headers == {"tenant": "acme", "n": 7, "nested": {"ok": True}, "list": [1, "two"]}


async def test_a_persistent_publish_to_a_durable_queue_is_stored(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/queues/%2F/kept", json={"durable": True})
    await api.put("/api/queues/%2F/fleeting", json={"durable": False})
    for name in ("kept", "fleeting"):
        body = {
            "properties": {"delivery_mode": 2},
            "routing_key": name,
            "payload": "x",
            "payload_encoding": "string",
        }
        assert (await api.post("/api/exchanges/%2F/amq.default/publish", json=body)).json() == {
            "routed": True
        }
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None
    if admin_server.broker.persistence is None:
        pytest.skip("this broker keeps no message store")
    assert vhost.queues["kept"].persistent_count == 1
    assert vhost.queues["fleeting"].persistent_count == 0


async def test_base64_payloads_and_unroutable_messages(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/bin", json={})
    raw = bytes([0, 1, 2, 255, 254])
    body = {
        "properties": {},
        "routing_key": "bin",
        "payload": base64.b64encode(raw).decode(),
        "payload_encoding": "base64",
    }
    assert (await api.post("/api/exchanges/%2F/amq.default/publish", json=body)).json() == {
        "routed": True
    }
    got = await api.post(
        "/api/queues/%2F/bin/get",
        json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
    )
    [message] = got.json()
    assert message["payload_encoding"] == "base64"
    assert base64.b64decode(message["payload"]) == raw and message["payload_bytes"] == 5
    body["routing_key"] = "nobody-listens"
    unrouted = await api.post("/api/exchanges/%2F/amq.direct/publish", json=body)
    assert unrouted.status_code == 200 and unrouted.json() == {"routed": False}


async def test_bad_publishes_get_rabbitmq_reasons(api: httpx.AsyncClient) -> None:
    url = "/api/exchanges/%2F/amq.direct/publish"
    good = {"properties": {}, "routing_key": "k", "payload": "x", "payload_encoding": "string"}

    async def reason(body: Mapping[str, object], path: str = url) -> object:
        response = await api.post(path, json=body)
        assert response.status_code == 400, response.text
        return response.json()["reason"]

    for key in ("properties", "routing_key", "payload", "payload_encoding"):
        partial = {k: v for k, v in good.items() if k != key}
        assert await reason(partial) == f"[{{key_missing,{key}}}]"
    assert await reason({**good, "payload_encoding": "rot13"}) == ["unsupported_encoding", "rot13"]
    assert await reason({**good, "payload": "!!!", "payload_encoding": "base64"}) == [
        "not_base64",
        "!!!",
    ]
    assert await reason({**good, "properties": {"delivery_mode": "x"}}) == [
        "not_int",
        "delivery_mode",
    ]
    assert await reason({**good, "properties": {"user_id": "bob"}}) == (
        "406 PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"
    )
    assert await reason(good, "/api/exchanges/%2F/nope/publish") == (
        "404 NOT_FOUND - no exchange 'nope' in vhost '/'"
    )
    assert await reason({**good, "properties": {"message_id": "m" * 300}})
    not_json = await api.post(url, content=b"[1, 2]")
    assert not_json.status_code == 400 and not_json.json()["reason"] == "not_json"


async def test_a_management_user_sees_and_changes_only_their_vhosts(
    admin_server: Server,
) -> None:
    admin_server.broker.add_vhost("team")
    admin_server.users.add_user("manager", "pw", tags=("management",))
    admin_server.permissions.set(Permission("manager", "team"))
    async with httpx.AsyncClient(
        base_url=http_url(admin_server), auth=("manager", "pw")
    ) as manager:
        listed = (await manager.get("/api/exchanges")).json()
        assert {x["vhost"] for x in listed} == {"team"}
        refused = await manager.get("/api/exchanges/%2F")
        assert refused.status_code == 401
        assert (await manager.put("/api/exchanges/%2F/x", json={})).status_code == 401
        assert (await manager.put("/api/exchanges/team/x", json={})).status_code == 201
        assert (await manager.delete("/api/exchanges/team/x")).status_code == 204


async def test_changes_are_logged_with_the_user(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rapidmq.admin"):
        await api.put("/api/exchanges/%2F/audited", json={"type": "fanout"})
        await api.delete("/api/exchanges/%2F/audited")
    messages = [r.getMessage() for r in caplog.records if r.name == "rapidmq.admin"]
    assert "user 'guest' declared exchange 'audited' in vhost '/'" in messages
    assert "user 'guest' deleted exchange 'audited' in vhost '/'" in messages
