"""Two tenants on one broker: a user of vhost A can neither see nor touch vhost B."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pika
import pika.exceptions
import pytest

from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio

NOT_AUTHORISED = {"error": "not_authorised", "reason": "User not authorised to access virtual host"}


@pytest.fixture
async def tenants(anyio_backend: str) -> AsyncIterator[Server]:
    """Vhosts ``tenant-a`` and ``tenant-b``, each with a queue ``shared``; alice owns A."""
    async with serving(http_port=0) as srv:
        async with httpx.AsyncClient(base_url=http_url(srv), auth=("guest", "guest")) as api:
            for vhost in ("tenant-a", "tenant-b"):
                assert (await api.put(f"/api/vhosts/{vhost}")).status_code == 201
                response = await api.put(f"/api/queues/{vhost}/shared", json={})
                assert response.status_code == 201
            response = await api.put(
                "/api/users/alice", json={"password": "pw", "tags": "management"}
            )
            assert response.status_code == 201
            response = await api.put(
                "/api/permissions/tenant-a/alice",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
            assert response.status_code == 201
        yield srv


def publish_and_get(port: int, user: str, password: str, vhost: str, body: bytes) -> Any:
    """Publish ``body`` to the vhost's ``shared`` queue, then get the first message there."""
    params = pika.ConnectionParameters(
        "127.0.0.1", port, vhost, pika.PlainCredentials(user, password), connection_attempts=1
    )
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "shared", body)
        method, _, got = channel.basic_get("shared", auto_ack=True)
        return got, method.message_count
    finally:
        connection.close()


async def test_a_tenant_sees_only_its_own_vhost_in_the_api(tenants: Server) -> None:
    async with httpx.AsyncClient(base_url=http_url(tenants), auth=("alice", "pw")) as alice:
        vhosts = (await alice.get("/api/vhosts")).json()
        assert [v["name"] for v in vhosts] == ["tenant-a"]
        queues = (await alice.get("/api/queues")).json()
        assert [(q["vhost"], q["name"]) for q in queues] == [("tenant-a", "shared")]
        exchanges = (await alice.get("/api/exchanges")).json()
        assert {x["vhost"] for x in exchanges} == {"tenant-a"}
        bindings = (await alice.get("/api/bindings")).json()
        assert {b["vhost"] for b in bindings} == {"tenant-a"}
        # The same listings of B, and B's own objects, are refused as RabbitMQ does.
        for path in (
            "/api/queues/tenant-b",
            "/api/queues/tenant-b/shared",
            "/api/exchanges/tenant-b",
        ):
            response = await alice.get(path)
            assert (response.status_code, response.json()) == (401, NOT_AUTHORISED), path
        # RabbitMQ 3.10 answers a single vhost to administrators only.
        response = await alice.get("/api/vhosts/tenant-b")
        assert response.status_code == 401
        assert response.json()["reason"] == "Not administrator user"


async def test_a_tenant_cannot_touch_the_other_vhost(tenants: Server) -> None:
    async with httpx.AsyncClient(base_url=http_url(tenants), auth=("alice", "pw")) as alice:
        put = await alice.put("/api/queues/tenant-b/mine", json={})
        delete = await alice.delete("/api/queues/tenant-b/shared")
        purge = await alice.delete("/api/queues/tenant-b/shared/contents")
        get = await alice.post(
            "/api/queues/tenant-b/shared/get",
            json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
        )
    for response in (put, delete, purge, get):
        assert (response.status_code, response.json()) == (401, NOT_AUTHORISED)
    tenant_b = tenants.broker.vhost("tenant-b")
    assert tenant_b is not None
    assert sorted(tenant_b.queues) == ["shared"]
    port = tenants.ports["amqp"]
    assert port is not None
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        await anyio.to_thread.run_sync(publish_and_get, port, "alice", "pw", "tenant-b", b"x")
    assert "access to vhost 'tenant-b' refused for user 'alice'" in str(info.value)


async def test_the_same_queue_name_in_two_vhosts_is_two_queues(tenants: Server) -> None:
    port = tenants.ports["amqp"]
    assert port is not None
    tenants.permissions.set(Permission("guest", "tenant-b"))
    got_b = await anyio.to_thread.run_sync(
        publish_and_get, port, "guest", "guest", "tenant-b", b"for b"
    )
    got_a = await anyio.to_thread.run_sync(
        publish_and_get, port, "alice", "pw", "tenant-a", b"for a"
    )
    assert got_b == (b"for b", 0)
    assert got_a == (b"for a", 0)  # B's message never reached A's queue
    a, b = tenants.broker.vhost("tenant-a"), tenants.broker.vhost("tenant-b")
    assert a is not None and b is not None
    assert a.queues["shared"] is not b.queues["shared"]
