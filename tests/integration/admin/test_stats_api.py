"""Exchange and queue message statistics, and the endpoints tools probe for."""

from __future__ import annotations

import httpx
import pytest

from rapidmq.server import Server

pytestmark = pytest.mark.anyio


async def publish(api: httpx.AsyncClient, exchange: str, routing_key: str) -> None:
    body = {"routing_key": routing_key, "payload": "x", "payload_encoding": "string"}
    body["properties"] = {}
    path = f"/api/exchanges/%2F/{exchange or 'amq.default'}/publish"
    response = await api.post(path, json=body)
    assert response.status_code == 200


async def test_exchange_message_stats_count_messages_in_and_copies_out(
    api: httpx.AsyncClient,
) -> None:
    await api.put("/api/exchanges/%2F/fan", json={"type": "fanout"})
    await api.put("/api/exchanges/%2F/quiet", json={"type": "direct"})
    for queue in ("q1", "q2"):
        await api.put(f"/api/queues/%2F/{queue}", json={})
        await api.post(f"/api/bindings/%2F/e/fan/q/{queue}", json={"routing_key": ""})
    for _ in range(3):
        await publish(api, "fan", "")
    await publish(api, "amq.direct", "nowhere")
    fan = (await api.get("/api/exchanges/%2F/fan")).json()
    listed = {x["name"]: x for x in (await api.get("/api/exchanges/%2F")).json()}
    assert fan["message_stats"] == {
        "publish_in": 3,
        "publish_in_details": {"rate": 0.0},
        "publish_out": 6,
        "publish_out_details": {"rate": 0.0},
    }
    assert (listed["fan"]["message_stats"], listed["amq.direct"]["message_stats"]) == (
        fan["message_stats"],
        {
            "publish_in": 1,
            "publish_in_details": {"rate": 0.0},
            "publish_out": 0,
            "publish_out_details": {"rate": 0.0},
        },
    )
    assert "message_stats" not in listed["quiet"]


async def test_queue_message_stats_split_deliveries_by_kind(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/q", json={})
    for _ in range(3):
        await publish(api, "", "q")
    get = "/api/queues/%2F/q/get"
    await api.post(get, json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    await api.post(get, json={"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
    await api.post(get, json={"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"})
    stats = (await api.get("/api/queues/%2F/q")).json()["message_stats"]
    assert {k: v for k, v in stats.items() if not k.endswith("_details")} == {
        "publish": 3,
        "deliver_get": 3,
        "deliver": 0,
        "deliver_no_ack": 0,
        "get": 1,
        "get_no_ack": 2,
        "get_empty": 1,
        "ack": 0,
        "redeliver": 0,
    }


async def test_feature_flags_name_what_rapidmq_does(api: httpx.AsyncClient) -> None:
    flags = (await api.get("/api/feature-flags")).json()
    assert [(f["name"], f["state"], f["stability"]) for f in flags] == [
        ("implicit_default_bindings", "enabled", "stable"),
        ("quorum_queue", "enabled", "stable"),
        ("user_limits", "enabled", "stable"),
        ("virtual_host_metadata", "enabled", "stable"),
    ]


async def test_parameters_list_vhost_limits_read_only(api: httpx.AsyncClient) -> None:
    assert (await api.put("/api/vhosts/limited")).status_code == 201
    await api.put("/api/vhost-limits/limited/max-queues", json={"value": 5})
    limits = {"value": {"max-queues": 5}, "vhost": "limited", "component": "vhost-limits"}
    limits["name"] = "limits"
    replies = [
        await api.get("/api/parameters"),
        await api.get("/api/parameters/vhost-limits/limited"),
        await api.get("/api/parameters/shovel/limited"),
        await api.get("/api/parameters/vhost-limits/limited/limits"),
        await api.get("/api/parameters/vhost-limits/absent"),
        await api.put("/api/parameters/vhost-limits/limited/limits", json={"value": {}}),
    ]
    assert [(r.status_code, r.json()) for r in replies[:5]] == [
        (200, [limits]),
        (200, [limits]),
        (200, []),
        (200, limits),
        (404, {"error": "Object Not Found", "reason": "Not Found"}),
    ]
    assert replies[5].status_code == 405


async def test_global_parameters_show_the_cluster_name(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    listed = (await api.get("/api/global-parameters")).json()
    one = (await api.get("/api/global-parameters/cluster_name")).json()
    assert [p["name"] for p in listed] == ["cluster_name", "internal_cluster_id"]
    assert one == {"name": "cluster_name", "value": admin_server.cluster_name}
    assert listed[1]["value"].startswith("rapidmq-cluster-id-")
    assert (await api.get("/api/global-parameters/other")).status_code == 404


async def test_queue_actions_accept_sync_and_refuse_the_rest(api: httpx.AsyncClient) -> None:
    await api.put("/api/queues/%2F/q", json={"durable": True})
    path = "/api/queues/%2F/q/actions"
    replies = [
        await api.post(path, json={"action": "sync"}),
        await api.post(path, json={"action": "cancel_sync"}),
        await api.post(path, json={"action": "purge"}),
        await api.post(path, json={}),
        await api.post("/api/queues/%2F/absent/actions", json={"action": "sync"}),
    ]
    assert [(r.status_code, r.content and r.json()) for r in replies] == [
        (204, b""),
        (204, b""),
        (400, {"error": "bad_request", "reason": ["unknown", "purge"]}),
        (400, {"error": "bad_request", "reason": "[{key_missing,action}]"}),
        (404, {"error": "Object Not Found", "reason": "Not Found"}),
    ]
