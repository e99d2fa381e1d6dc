"""/api/health/checks/* and /api/aliveness-test against a real broker, passing and failing."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest

from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio


def our_ports(server: Server) -> list[int]:
    return [port for port in server.ports.values() if port is not None]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_alarm_checks_pass_without_alarms(api: httpx.AsyncClient) -> None:
    for check in ("alarms", "local-alarms"):
        response = await api.get(f"/api/health/checks/{check}")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["cache-control"] == "no-cache"


async def test_alarm_checks_fail_with_rabbitmqs_body_under_a_memory_alarm(
    anyio_backend: str,
) -> None:
    async with serving(http_port=0, memory_high_watermark="1MB") as server:
        with anyio.fail_after(5):
            while not server.alarms.memory:
                await anyio.sleep(0.02)
        async with httpx.AsyncClient(base_url=http_url(server), auth=("guest", "guest")) as api:
            cluster = await api.get("/api/health/checks/alarms")
            local = await api.get("/api/health/checks/local-alarms")
    alarm = {"resource": "memory", "node": server.node_name}
    assert cluster.status_code == 503
    assert cluster.json() == {
        "status": "failed",
        "reason": "There are alarms in effect in the cluster",
        "alarms": [alarm],
    }
    assert local.status_code == 503
    assert local.json() == {
        "status": "failed",
        "reason": "There are alarms in effect on the node",
        "alarms": [alarm],
    }


async def test_a_disk_alarm_is_named_disk_space(anyio_backend: str) -> None:
    async with serving(http_port=0, disk_free_limit="1000000TB") as server:
        with anyio.fail_after(5):
            while not server.alarms.disk:
                await anyio.sleep(0.02)
        async with httpx.AsyncClient(base_url=http_url(server), auth=("guest", "guest")) as api:
            response = await api.get("/api/health/checks/alarms")
    assert response.status_code == 503
    assert response.json()["alarms"] == [{"resource": "disk space", "node": server.node_name}]


async def test_port_listener(api: httpx.AsyncClient, admin_server: Server) -> None:
    for port in our_ports(admin_server):
        response = await api.get(f"/api/health/checks/port-listener/{port}")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "port": port}
    missing = unused_port()
    response = await api.get(f"/api/health/checks/port-listener/{missing}")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed" and body["reason"] == "No active listener"
    assert body["missing"] == missing
    assert sorted(body["ports"]) == sorted(our_ports(admin_server))
    bad = await api.get("/api/health/checks/port-listener/amqp")
    assert bad.status_code == 400
    assert bad.json() == {"error": "bad_request", "reason": "Invalid port"}


async def test_protocol_listener(api: httpx.AsyncClient) -> None:
    for asked, protocol in (
        ("amqp", "amqp"),
        ("AMQP091", "amqp"),
        ("amqp0-9-1", "amqp"),
        ("mqtt", "mqtt"),
        ("mqtt311", "mqtt"),
        ("http", "http"),
    ):
        response = await api.get(f"/api/health/checks/protocol-listener/{asked}")
        assert response.status_code == 200, asked
        assert response.json() == {"status": "ok", "protocol": protocol}
    response = await api.get("/api/health/checks/protocol-listener/stomp")
    assert response.status_code == 503
    assert response.json() == {
        "status": "failed",
        "reason": "No active listener",
        "missing": "stomp",
        "protocols": ["amqp", "mqtt", "http"],
    }
    web = await api.get("/api/health/checks/protocol-listener/http%2Fweb-mqtt")
    assert web.status_code == 503 and web.json()["missing"] == "http/web-mqtt"


async def test_single_node_checks_pass(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/health/checks/virtual-hosts")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    for check in ("node-is-quorum-critical", "node-is-mirror-sync-critical"):
        response = await api.get(f"/api/health/checks/{check}")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "reason": "single node cluster"}


async def test_certificate_expiration(api: httpx.AsyncClient) -> None:
    ok = await api.get("/api/health/checks/certificate-expiration/1/months")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    unit = await api.get("/api/health/checks/certificate-expiration/1/fortnights")
    assert unit.status_code == 400
    assert unit.json()["reason"].startswith("Time unit not recognised")
    value = await api.get("/api/health/checks/certificate-expiration/x/days")
    assert value.json() == {"error": "bad_request", "reason": "Invalid expiration value."}


async def test_aliveness_test_round_trips_a_message(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    response = await api.get("/api/aliveness-test/%2F")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    vhost = admin_server.broker.vhost("/")
    assert vhost is not None
    queue = vhost.queues["aliveness-test"]
    assert queue.published == 1 and queue.delivered == 1 and queue.ready_count == 0
    # Its connection opened and closed within the request.
    assert admin_server.broker.statistics()["connections"] == 0
    assert (await api.get("/api/connections")).json() == []
    again = await api.get("/api/aliveness-test/%2F")
    assert again.status_code == 200 and queue.published == 2


async def test_aliveness_test_needs_an_existing_visible_vhost(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    missing = await api.get("/api/aliveness-test/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Object Not Found", "reason": "Not Found"}
    admin_server.broker.add_vhost("private")
    admin_server.users.add_user("carol", "pw", tags=("management",))
    admin_server.permissions.set(Permission("carol", "/"))
    async with httpx.AsyncClient(base_url=http_url(admin_server), auth=("carol", "pw")) as as_carol:
        assert (await as_carol.get("/api/aliveness-test/%2F")).status_code == 200
        refused = await as_carol.get("/api/aliveness-test/private")
        assert refused.status_code == 401
        assert (await as_carol.get("/api/health/checks/alarms")).status_code == 200
    private = admin_server.broker.vhost("private")
    assert private is not None and "aliveness-test" not in private.queues
