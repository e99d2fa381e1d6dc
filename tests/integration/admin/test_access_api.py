"""Vhosts, users, permissions, topic permissions and whoami over the management API.

Shapes, status codes and error bodies are those RabbitMQ 3.10.8 answered to the
same requests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import httpx
import pika
import pika.exceptions
import pytest
from pamqp import commands

from rapidmq.auth.users import hash_password
from rapidmq.server import Server
from tests.integration import amqp_client
from tests.integration.admin.conftest import http_url

pytestmark = pytest.mark.anyio

# guest's hash as `rabbitmqctl export_definitions` printed it on RabbitMQ 3.10.8.
RABBITMQ_GUEST_HASH = "4+yH4cp+Cu8K4VcQoNPwQoIjbCg0YB9VrEb4Sgu/lIN0TJRA"
NOT_ADMINISTRATOR = {"error": "not_authorised", "reason": "Not administrator user"}
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


def client_for(server: Server, user: str, password: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=http_url(server), auth=(user, password), timeout=10.0)


async def login_status(server: Server, user: str, password: str) -> int:
    async with client_for(server, user, password) as client:
        return (await client.get("/api/whoami")).status_code


def pika_declare_and_publish(port: int, user: str, password: str, vhost: str) -> int:
    """Log in with pika, declare ``q``, publish one message to it; the queue's depth."""
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("q")
        channel.basic_publish("", "q", b"hello")
        depth = channel.queue_declare("q", passive=True).method.message_count
        return int(depth)
    finally:
        connection.close()


async def pika_login(server: Server, user: str, password: str, vhost: str = "/") -> int:
    port = server.ports["amqp"]
    assert port is not None
    return await anyio.to_thread.run_sync(pika_declare_and_publish, port, user, password, vhost)


@pytest.fixture
async def alice(api: httpx.AsyncClient, admin_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A plain management user with a permission in the vhost ``tenant-a`` only."""
    for vhost in ("tenant-a", "tenant-b"):
        assert (await api.put(f"/api/vhosts/{vhost}")).status_code == 201
    body = {"password": "alice-pw", "tags": "management"}
    assert (await api.put("/api/users/alice", json=body)).status_code == 201
    grant = {"configure": ".*", "write": ".*", "read": ".*"}
    assert (await api.put("/api/permissions/tenant-a/alice", json=grant)).status_code == 201
    async with client_for(admin_server, "alice", "alice-pw") as client:
        yield client


# -- whoami --------------------------------------------------------------------------------


async def test_whoami_names_the_logged_in_user_and_their_tags(
    api: httpx.AsyncClient, alice: httpx.AsyncClient
) -> None:
    assert (await api.get("/api/whoami")).json() == {"name": "guest", "tags": ["administrator"]}
    assert (await alice.get("/api/whoami")).json() == {"name": "alice", "tags": ["management"]}


# -- vhosts --------------------------------------------------------------------------------


async def test_a_vhost_is_created_described_updated_and_deleted(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    created = await api.put("/api/vhosts/dev", json={"description": "d1", "tags": "a, b"})
    assert created.status_code == 201
    body = (await api.get("/api/vhosts/dev")).json()
    assert {k: body[k] for k in ("name", "description", "tags", "metadata")} == {
        "name": "dev",
        "description": "d1",
        "tags": ["a", "b"],
        "metadata": {"description": "d1", "tags": ["a", "b"]},
    }
    assert body["default_queue_type"] == "classic"
    assert body["tracing"] is False
    assert body["cluster_state"] == {admin_server.node_name: "running"}
    assert body["messages"] == 0 and body["messages_details"] == {"rate": 0.0}
    assert body["message_stats"]["publish"] == 0
    # The creator may use the vhost at once, as on RabbitMQ.
    guest_grant = (await api.get("/api/permissions/dev/guest")).json()
    assert guest_grant == {
        "user": "guest",
        "vhost": "dev",
        "configure": ".*",
        "write": ".*",
        "read": ".*",
    }

    updated = await api.put("/api/vhosts/dev", json={"description": "d2", "tags": ["x"]})
    assert updated.status_code == 204
    vhost = admin_server.broker.vhost("dev")
    assert vhost is not None and vhost.description == "d2" and vhost.tags == ("x",)
    # A PUT without a body clears description and tags, as RabbitMQ 3.10 does.
    assert (await api.put("/api/vhosts/dev")).status_code == 204
    assert (await api.get("/api/vhosts/dev")).json()["tags"] == []

    names = [v["name"] for v in (await api.get("/api/vhosts")).json()]
    assert names == ["/", "dev"]

    assert (await api.delete("/api/vhosts/dev")).status_code == 204
    assert admin_server.broker.vhost("dev") is None
    assert admin_server.permissions.get("guest", "dev") is None
    missing = await api.get("/api/vhosts/dev")
    assert missing.status_code == 404 and missing.json() == NOT_FOUND
    assert (await api.delete("/api/vhosts/dev")).status_code == 404


async def test_vhost_paths_decode_the_default_vhost(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/vhosts/%2F")).json()
    assert body["name"] == "/"
    [grant] = (await api.get("/api/vhosts/%2F/permissions")).json()
    assert grant["user"] == "guest" and grant["vhost"] == "/"
    assert (await api.get("/api/vhosts/%2F/topic-permissions")).json() == []
    assert (await api.get("/api/vhosts/nowhere/permissions")).status_code == 404


async def test_a_bad_vhost_body_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.put("/api/vhosts/dev", json={"tags": 5})
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    response = await api.put("/api/vhosts/dev", content=b"[1]")
    assert response.status_code == 400 and response.json()["reason"] == "not_json"
    assert (await api.get("/api/vhosts/dev")).status_code == 404


async def test_a_vhost_created_over_the_api_serves_amqp_and_shows_its_messages(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    assert (await api.put("/api/vhosts/shop")).status_code == 201
    assert await pika_login(admin_server, "guest", "guest", "shop") == 1
    body = (await api.get("/api/vhosts/shop")).json()
    assert body["messages"] == 1 and body["messages_ready"] == 1
    assert body["messages_unacknowledged"] == 0
    assert body["message_stats"]["publish"] == 1
    listed = (await api.get("/api/vhosts", params={"name": "shop"})).json()
    assert [v["messages"] for v in listed] == [1]
    assert (await api.get("/api/vhosts/%2F")).json()["messages"] == 0


async def test_deleting_a_vhost_closes_its_connections_and_refuses_new_ones(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    assert (await api.put("/api/vhosts/doomed")).status_code == 201
    port = admin_server.ports["amqp"]
    assert port is not None
    client = await amqp_client.connect(port, vhost="doomed")
    try:
        await client.open_channel(1)
        assert (await api.delete("/api/vhosts/doomed")).status_code == 204
        close = await client.expect(commands.Connection.Close)
        assert close.reply_code == 320
        assert "doomed" in close.reply_text
    finally:
        await client.aclose()
    with pytest.raises(amqp_client.ConnectionClosed) as refused:
        await amqp_client.connect(port, vhost="doomed")
    assert refused.value.reply_code == 530


# -- users ---------------------------------------------------------------------------------


async def test_a_user_created_over_the_api_logs_in_over_http_and_amqp(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    body = {"password": "s3cret", "tags": "management,monitoring"}
    assert (await api.put("/api/users/bob", json=body)).status_code == 201
    shown = (await api.get("/api/users/bob")).json()
    assert set(shown) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert shown["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert shown["tags"] == ["management", "monitoring"] and shown["limits"] == {}
    assert "s3cret" not in (await api.get("/api/users")).text

    async with client_for(admin_server, "bob", "s3cret") as bob:
        assert (await bob.get("/api/whoami")).json()["name"] == "bob"
    assert await login_status(admin_server, "bob", "wrong") == 401
    grant = {"configure": ".*", "write": ".*", "read": ".*"}
    assert (await api.put("/api/permissions/%2F/bob", json=grant)).status_code == 201
    assert await pika_login(admin_server, "bob", "s3cret") == 1

    # Tags change in place; a PUT without password leaves one who cannot log in.
    update = {"password": "n3w", "tags": ["administrator"]}
    assert (await api.put("/api/users/bob", json=update)).status_code == 204
    assert (await api.get("/api/users/bob")).json()["tags"] == ["administrator"]
    assert await login_status(admin_server, "bob", "s3cret") == 401
    assert await login_status(admin_server, "bob", "n3w") == 200


async def test_a_rabbitmq_password_hash_logs_in_with_its_password(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    exported = {
        "password_hash": RABBITMQ_GUEST_HASH,
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": "management",
    }
    assert (await api.put("/api/users/migrated", json=exported)).status_code == 201
    assert (await api.get("/api/users/migrated")).json()["password_hash"] == RABBITMQ_GUEST_HASH
    assert await login_status(admin_server, "migrated", "guest") == 200
    assert await login_status(admin_server, "migrated", "other") == 401

    made_here = {"password_hash": hash_password("tea-pot"), "tags": ["management"]}
    assert (await api.put("/api/users/kettle", json=made_here)).status_code == 201
    assert await login_status(admin_server, "kettle", "tea-pot") == 200


async def test_a_user_without_password_cannot_log_in(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    assert (await api.put("/api/users/nopass", json={"tags": "management"})).status_code == 201
    assert (await api.get("/api/users/nopass")).json()["password_hash"] == ""
    assert await login_status(admin_server, "nopass", "") == 401
    with_pw = {"password": "pw", "tags": "management"}
    assert (await api.put("/api/users/nopass", json=with_pw)).status_code == 204
    assert await login_status(admin_server, "nopass", "pw") == 200
    # As on RabbitMQ 3.10, a PUT with tags only clears the password.
    assert (await api.put("/api/users/nopass", json={"tags": "management"})).status_code == 204
    assert await login_status(admin_server, "nopass", "pw") == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"password": "x"}, "tags_not_present"),
        (
            {"password": "x", "password_hash": "", "tags": ""},
            "both_password_and_password_hash_are_provided",
        ),
        ({"password_hash": "abc", "tags": ""}, ["not_base64", "abc"]),
        ({"password": 5, "tags": ""}, "password must be a string"),
        (
            {"password": "x", "tags": {"a": 1}},
            "tags must be a comma-separated string or a list of strings",
        ),
    ],
)
async def test_a_bad_user_body_is_refused(
    api: httpx.AsyncClient, body: dict[str, object], reason: object
) -> None:
    response = await api.put("/api/users/broken", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "reason": reason}
    assert (await api.get("/api/users/broken")).status_code == 404


async def test_an_unsupported_hashing_algorithm_is_refused(api: httpx.AsyncClient) -> None:
    body = {
        "password_hash": hash_password("x"),
        "hashing_algorithm": "rabbit_password_hashing_md5",
        "tags": "",
    }
    response = await api.put("/api/users/md5", json=body)
    assert response.status_code == 400
    assert "rabbit_password_hashing_md5" in response.json()["reason"]
    assert (await api.get("/api/users/md5")).status_code == 404
    not_json = await api.put("/api/users/md5", content=b"nope")
    assert not_json.status_code == 400 and not_json.json()["reason"] == "not_json"


async def test_a_deleted_user_cannot_log_in_and_loses_their_permissions(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    assert (await api.put("/api/users/carol", json={"password": "pw", "tags": ""})).status_code
    grant = {"configure": ".*", "write": ".*", "read": ".*"}
    await api.put("/api/permissions/%2F/carol", json=grant)
    topic = {"exchange": "amq.topic", "write": "^a", "read": ".*"}
    await api.put("/api/topic-permissions/%2F/carol", json=topic)
    assert await pika_login(admin_server, "carol", "pw") == 1

    assert (await api.delete("/api/users/carol")).status_code == 204
    assert (await api.get("/api/users/carol")).status_code == 404
    assert (await api.delete("/api/users/carol")).status_code == 404
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        await pika_login(admin_server, "carol", "pw")
    users = {p["user"] for p in (await api.get("/api/permissions")).json()}
    assert "carol" not in users
    assert (await api.get("/api/topic-permissions")).json() == []
    # A new user of the same name starts with nothing.
    assert (await api.put("/api/users/carol", json={"password": "pw", "tags": ""})).status_code
    assert (await api.get("/api/permissions/%2F/carol")).status_code == 404


async def test_users_are_bulk_deleted_in_order_up_to_a_missing_one(
    api: httpx.AsyncClient,
) -> None:
    for name in ("u1", "u2", "u3"):
        await api.put(f"/api/users/{name}", json={"password": "pw", "tags": ""})
    ok = await api.post("/api/users/bulk-delete", json={"users": ["u1", "u2"]})
    assert ok.status_code == 204
    stopped = await api.post("/api/users/bulk-delete", json={"users": ["nobody", "u3"]})
    assert stopped.status_code == 400
    assert stopped.json() == {"error": "bad_request", "reason": ["no_such_user", "nobody"]}
    names = [u["name"] for u in (await api.get("/api/users")).json()]
    assert names == ["guest", "u3"]
    missing = await api.post("/api/users/bulk-delete", json={})
    assert missing.json() == {"error": "bad_request", "reason": "[{key_missing,users}]"}


async def test_users_list_pages_and_finds_those_without_permissions(
    api: httpx.AsyncClient,
) -> None:
    for name in ("dave", "erin"):
        await api.put(f"/api/users/{name}", json={"password": "pw", "tags": ""})
    grant = {"configure": "", "write": "", "read": ".*"}
    await api.put("/api/permissions/%2F/erin", json=grant)
    without = (await api.get("/api/users/without-permissions")).json()
    assert [u["name"] for u in without] == ["dave"]
    page = (await api.get("/api/users", params={"page": 2, "page_size": 1})).json()
    assert page["total_count"] == 3 and [u["name"] for u in page["items"]] == ["erin"]
    assert [p["vhost"] for p in (await api.get("/api/users/erin/permissions")).json()] == ["/"]
    assert (await api.get("/api/users/erin/topic-permissions")).json() == []
    assert (await api.get("/api/users/nobody/permissions")).status_code == 404
    assert (await api.get("/api/users/nobody/topic-permissions")).status_code == 404


# -- permissions ---------------------------------------------------------------------------


async def test_permissions_are_granted_read_replaced_and_cleared(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    await api.put("/api/users/frank", json={"password": "pw", "tags": ""})
    grant = {"configure": "^f", "write": "^w", "read": ""}
    assert (await api.put("/api/permissions/%2F/frank", json=grant)).status_code == 201
    expected = {"user": "frank", "vhost": "/", **grant}
    assert (await api.get("/api/permissions/%2F/frank")).json() == expected
    assert expected in (await api.get("/api/permissions")).json()
    assert expected in (await api.get("/api/vhosts/%2F/permissions")).json()
    assert (await api.get("/api/users/frank/permissions")).json() == [expected]

    again = {"configure": ".*", "write": ".*", "read": ".*"}
    assert (await api.put("/api/permissions/%2F/frank", json=again)).status_code == 204
    stored = admin_server.permissions.get("frank", "/")
    assert stored is not None and stored.read == ".*"

    assert (await api.delete("/api/permissions/%2F/frank")).status_code == 204
    assert (await api.get("/api/permissions/%2F/frank")).status_code == 404
    assert (await api.delete("/api/permissions/%2F/frank")).status_code == 404
    assert (await api.get("/api/permissions/%2F/nobody")).json() == NOT_FOUND
    assert (await api.get("/api/permissions/nowhere/guest")).status_code == 404


async def test_bad_permissions_are_refused(api: httpx.AsyncClient) -> None:
    await api.put("/api/users/gina", json={"password": "pw", "tags": ""})
    full = {"configure": ".*", "write": ".*", "read": ".*"}
    for path in ("/api/permissions/%2F/nobody", "/api/permissions/nowhere/gina"):
        response = await api.put(path, json=full)
        assert response.status_code == 400
        assert response.json() == {"error": "bad_request", "reason": "vhost_or_user_not_found"}
    invalid = await api.put("/api/permissions/%2F/gina", json={**full, "configure": "("})
    assert invalid.status_code == 400 and "(" in invalid.json()["reason"]
    partial = await api.put("/api/permissions/%2F/gina", json={"configure": ".*"})
    assert partial.json() == {
        "error": "bad_request",
        "reason": "[{key_missing,write},{key_missing,read}]",
    }
    assert (await api.get("/api/permissions/%2F/gina")).status_code == 404


async def test_topic_permissions_are_granted_listed_and_cleared(api: httpx.AsyncClient) -> None:
    await api.put("/api/users/hank", json={"password": "pw", "tags": ""})
    first = {"exchange": "amq.topic", "write": "^a", "read": ".*"}
    second = {"exchange": "events", "write": "^e", "read": "x"}
    assert (await api.put("/api/topic-permissions/%2F/hank", json=first)).status_code == 201
    assert (await api.put("/api/topic-permissions/%2F/hank", json=second)).status_code == 204
    replaced = {**first, "write": "^b"}
    assert (await api.put("/api/topic-permissions/%2F/hank", json=replaced)).status_code == 204
    expected = [
        {"user": "hank", "vhost": "/", **replaced},
        {"user": "hank", "vhost": "/", **second},
    ]
    assert (await api.get("/api/topic-permissions/%2F/hank")).json() == expected
    assert (await api.get("/api/topic-permissions")).json() == expected
    assert (await api.get("/api/vhosts/%2F/topic-permissions")).json() == expected
    assert (await api.get("/api/users/hank/topic-permissions")).json() == expected

    # As on RabbitMQ 3.10, DELETE clears them all, whatever the body names.
    cleared = await api.request(
        "DELETE", "/api/topic-permissions/%2F/hank", json={"exchange": "events"}
    )
    assert cleared.status_code == 204
    assert (await api.get("/api/topic-permissions/%2F/hank")).status_code == 404
    assert (await api.delete("/api/topic-permissions/%2F/hank")).status_code == 404


async def test_bad_topic_permissions_are_refused(api: httpx.AsyncClient) -> None:
    await api.put("/api/users/ivy", json={"password": "pw", "tags": ""})
    good = {"exchange": "amq.topic", "write": ".*", "read": ".*"}
    for path in ("/api/topic-permissions/%2F/nobody", "/api/topic-permissions/nowhere/ivy"):
        response = await api.put(path, json=good)
        assert response.json() == {"error": "bad_request", "reason": "vhost_or_user_not_found"}
    invalid = await api.put("/api/topic-permissions/%2F/ivy", json={**good, "read": "[z-a]"})
    assert invalid.status_code == 400
    missing = await api.put("/api/topic-permissions/%2F/ivy", json={"write": ".*", "read": ".*"})
    assert missing.json() == {"error": "bad_request", "reason": "[{key_missing,exchange}]"}
    assert (await api.get("/api/topic-permissions/%2F/ivy")).status_code == 404
    assert (await api.get("/api/topic-permissions/nowhere/ivy")).status_code == 404


# -- who may do what -----------------------------------------------------------------------


async def test_a_management_user_sees_only_their_vhosts(
    alice: httpx.AsyncClient, admin_server: Server
) -> None:
    names = [v["name"] for v in (await alice.get("/api/vhosts")).json()]
    assert names == ["tenant-a"]
    # RabbitMQ 3.10 answers a single vhost, and every grant, to administrators only.
    for path in (
        "/api/vhosts/tenant-a",
        "/api/vhosts/tenant-b",
        "/api/vhosts/tenant-b/permissions",
        "/api/users",
        "/api/users/alice",
        "/api/users/without-permissions",
        "/api/permissions",
        "/api/permissions/tenant-b/alice",
        "/api/topic-permissions",
    ):
        response = await alice.get(path)
        assert response.status_code == 401, path
        assert response.json() == NOT_ADMINISTRATOR


async def test_a_management_user_sees_only_their_vhosts_queues(
    api: httpx.AsyncClient, alice: httpx.AsyncClient, admin_server: Server
) -> None:
    await pika_login(admin_server, "guest", "guest", "tenant-a")
    await pika_login(admin_server, "guest", "guest", "tenant-b")
    queues = (await alice.get("/api/queues")).json()
    assert [(q["vhost"], q["name"]) for q in queues] == [("tenant-a", "q")]
    assert (await alice.get("/api/queues/tenant-a/q")).status_code == 200
    assert (await alice.get("/api/queues/tenant-b/q")).status_code in (401, 404)
    assert (await alice.get("/api/queues/tenant-b")).status_code in (401, 404)
    assert len((await api.get("/api/queues")).json()) == 2


async def test_only_administrators_change_vhosts_users_and_grants(
    alice: httpx.AsyncClient, admin_server: Server
) -> None:
    full = {"configure": ".*", "write": ".*", "read": ".*"}
    topic = {"exchange": "amq.topic", "write": ".*", "read": ".*"}
    attempts = [
        alice.put("/api/vhosts/mine"),
        alice.delete("/api/vhosts/tenant-a"),
        alice.put("/api/users/mallory", json={"password": "x", "tags": "administrator"}),
        alice.delete("/api/users/guest"),
        alice.post("/api/users/bulk-delete", json={"users": ["guest"]}),
        alice.put("/api/permissions/tenant-b/alice", json=full),
        alice.delete("/api/permissions/tenant-a/alice"),
        alice.put("/api/topic-permissions/tenant-a/alice", json=topic),
        alice.delete("/api/topic-permissions/tenant-a/alice"),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 401
        assert response.json() == NOT_ADMINISTRATOR
    assert admin_server.broker.vhost("mine") is None
    assert admin_server.broker.vhost("tenant-a") is not None
    assert "mallory" not in admin_server.users and "guest" in admin_server.users
    assert admin_server.permissions.get("alice", "tenant-b") is None
    assert admin_server.permissions.get("alice", "tenant-a") is not None


# -- audit log -----------------------------------------------------------------------------


async def test_changes_are_logged_with_the_actor_and_never_a_password(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rapidmq.admin")
    await api.put("/api/vhosts/audit")
    await api.put("/api/users/jill", json={"password": "hunter2-secret", "tags": "management"})
    password_hash = (await api.get("/api/users/jill")).json()["password_hash"]
    grant = {"configure": "^c", "write": ".*", "read": ".*"}
    await api.put("/api/permissions/audit/jill", json=grant)
    await api.delete("/api/permissions/audit/jill")
    await api.delete("/api/users/jill")
    await api.delete("/api/vhosts/audit")
    lines = [r.getMessage() for r in caplog.records if r.name == "rapidmq.admin"]
    text = "\n".join(lines)
    assert "vhost 'audit' created by user 'guest'" in text
    assert "user 'jill' created by user 'guest'" in text
    assert "permissions of user 'jill' in vhost 'audit' set by user 'guest'" in text
    assert "permissions of user 'jill' in vhost 'audit' cleared by user 'guest'" in text
    assert "user 'jill' and their permissions deleted by user 'guest'" in text
    assert "vhost 'audit' deleted by user 'guest'" in text
    assert "hunter2-secret" not in text and password_hash not in text


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


async def test_deleting_a_vhost_disconnects_its_mqtt_clients(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    port = admin_server.ports["mqtt"]
    assert port is not None
    variable = _mqtt_string("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
    payload = _mqtt_string("doomed-client") + _mqtt_string("guest") + _mqtt_string("guest")
    body = variable + payload
    connect = bytes([0x10, len(body)]) + body
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(connect)
        with anyio.fail_after(5):
            connack = await stream.receive()
        assert connack[:4] == b"\x20\x02\x00\x00"
        assert (await api.delete("/api/vhosts/%2F")).status_code == 204
        with anyio.fail_after(5):
            while True:
                try:
                    await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    with anyio.fail_after(5):
        while admin_server.protocol_connections():
            await anyio.sleep(0.01)
