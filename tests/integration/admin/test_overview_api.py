"""/api/overview, /api/nodes, /api/cluster-name, auth and error bodies."""

from __future__ import annotations

import httpx
import pytest

from rapidmq.server import Server
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio


async def test_overview_counts_objects_and_names_the_node(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None
    response = await api.get("/api/overview")
    assert response.status_code == 200
    body = response.json()
    assert body["node"] == admin_server.node_name
    assert body["cluster_name"] == admin_server.node_name
    assert body["object_totals"] == {
        "channels": 0,
        "connections": 0,
        "consumers": 0,
        "exchanges": len(vhost.exchanges),
        "queues": 0,
    }
    assert body["message_stats"]["publish"] == 0
    assert body["message_stats"]["publish_details"] == {"rate": 0.0}
    assert {"protocol": "amqp", "port": admin_server.ports["amqp"]}.items() <= body["listeners"][
        0
    ].items()


async def test_nodes_report_memory_fds_and_alarms(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    [node] = (await api.get("/api/nodes")).json()
    assert node["name"] == admin_server.node_name
    assert node["running"] is True
    assert node["mem_used"] > 1_000_000
    assert node["mem_limit"] == admin_server.alarms.memory_limit_bytes
    assert node["mem_alarm"] is False and node["disk_free_alarm"] is False
    assert 0 < node["fd_used"] <= node["fd_total"]
    one = await api.get(f"/api/nodes/{admin_server.node_name}")
    assert one.status_code == 200 and one.json()["name"] == node["name"]
    assert (await api.get("/api/nodes/rapidmq@elsewhere")).status_code == 404


async def test_cluster_name_can_be_renamed(api: httpx.AsyncClient) -> None:
    assert (await api.put("/api/cluster-name", json={"name": "prod-eu"})).status_code == 204
    assert (await api.get("/api/cluster-name")).json() == {"name": "prod-eu"}
    assert (await api.get("/api/overview")).json()["cluster_name"] == "prod-eu"


async def test_bad_credentials_get_401_with_a_json_body(admin_server: Server) -> None:
    async with httpx.AsyncClient(base_url=http_url(admin_server)) as anonymous:
        for auth in (None, ("guest", "wrong"), ("nobody", "guest")):
            response = await anonymous.get("/api/overview", auth=auth)
            assert response.status_code == 401
            assert response.json() == {"error": "not_authorized", "reason": "Login failed"}
            assert response.headers["www-authenticate"].startswith("Basic ")


async def test_a_user_without_management_tags_is_refused(admin_server: Server) -> None:
    admin_server.users.add_user("app", "secret", tags=())
    async with httpx.AsyncClient(base_url=http_url(admin_server), auth=("app", "secret")) as app:
        response = await app.get("/api/overview")
    assert response.status_code == 401
    assert response.json() == {"error": "not_authorised", "reason": "Not management user"}


async def test_unknown_paths_and_methods_get_rabbitmq_error_bodies(
    api: httpx.AsyncClient,
) -> None:
    missing = await api.get("/api/no-such-thing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Object Not Found", "reason": "Not Found"}
    wrong_method = await api.delete("/api/overview")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "Method Not Allowed"
    not_json = await api.put("/api/cluster-name", content=b"{bad")
    assert not_json.status_code == 400
    assert not_json.json() == {"error": "bad_request", "reason": "not_json"}
