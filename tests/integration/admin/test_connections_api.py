"""/api/connections, /api/channels and /api/consumers against real pika, paho and pamqp clients."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pamqp import commands

from rapidmq.admin.connections import sample_connections
from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration import amqp_client
from tests.integration.admin.conftest import http_url
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio

TIMEOUT_S = 5.0


def q(name: str) -> str:
    """A connection or channel name as one path segment."""
    return quote(name, safe="")


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port


async def eventually(check: Callable[[], Any], timeout_s: float = TIMEOUT_S) -> None:
    """Wait until the async ``check`` returns true."""
    with anyio.fail_after(timeout_s):
        while not await check():
            await anyio.sleep(0.02)


class Pika:
    """A pika BlockingConnection driven from worker threads, one call at a time."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, port: int, **client_properties: Any) -> Pika:
        params = pika.ConnectionParameters(
            "127.0.0.1", port, heartbeat=0, client_properties=client_properties or None
        )
        return cls(await anyio.to_thread.run_sync(pika.BlockingConnection, params))

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn)

    async def close(self) -> None:
        if self.connection.is_open:
            await self.run(self.connection.close)


@pytest.fixture
async def pika_client(admin_server: Server) -> AsyncIterator[Pika]:
    client = await Pika.open(amqp_port(admin_server), connection_name="orders-api")
    try:
        yield client
    finally:
        await client.close()


class MQTTPeer:
    """A paho client on its own network thread."""

    def __init__(self, client_id: str, *, v5: bool = False) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        )
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: self.disconnected.set()

    def connect(self, port: int, keepalive: int = 30) -> None:
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT_S)

    def subscribe(self, topic_filter: str, qos: int) -> None:
        self.client.subscribe(topic_filter, qos)
        assert self.subscribed.wait(TIMEOUT_S)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def only_connection(api: httpx.AsyncClient) -> dict[str, Any]:
    async def one() -> bool:
        return len((await api.get("/api/connections")).json()) == 1

    await eventually(one)
    [conn] = (await api.get("/api/connections")).json()
    return conn


async def test_an_amqp_connection_shows_its_client_channels_and_consumers(
    api: httpx.AsyncClient, admin_server: Server, pika_client: Pika
) -> None:
    def set_up() -> None:
        ch1 = pika_client.connection.channel()
        ch1.basic_qos(prefetch_count=5)
        ch1.confirm_delivery()
        ch1.queue_declare("orders")
        ch1.basic_consume(
            "orders", lambda *a: None, consumer_tag="ctag-1", arguments={"x-priority": 3}
        )
        ch1.basic_publish("", "orders", b"one")
        ch1.basic_publish("", "orders", b"two")
        ch2 = pika_client.connection.channel()
        ch2.tx_select()

    await pika_client.run(set_up)
    conn = await only_connection(api)
    port = amqp_port(admin_server)
    assert conn["name"] == f"127.0.0.1:{conn['peer_port']} -> 127.0.0.1:{port}"
    assert conn["protocol"] == "AMQP 0-9-1"
    assert conn["type"] == "network"
    assert (conn["user"], conn["vhost"], conn["node"]) == ("guest", "/", admin_server.node_name)
    assert (conn["host"], conn["port"], conn["peer_host"]) == ("127.0.0.1", port, "127.0.0.1")
    assert conn["state"] == "running"
    assert conn["channels"] == 2
    assert conn["frame_max"] == 131072 and conn["timeout"] == 0
    assert conn["client_properties"]["connection_name"] == "orders-api"
    assert conn["client_properties"]["product"] == "Pika Python Client Library"
    assert conn["client_properties"]["capabilities"]["publisher_confirms"] is True
    assert conn["user_provided_name"] == "orders-api"
    assert conn["recv_oct"] > 0 and conn["send_oct"] > 0
    assert conn["recv_oct_details"] == {"rate": 0.0}
    assert conn["ssl"] is False and conn["ssl_protocol"] is None
    assert conn["auth_mechanism"] == "PLAIN"
    assert conn["connected_at"] > 1_600_000_000_000

    one = await api.get(f"/api/connections/{q(conn['name'])}")
    assert one.status_code == 200 and one.json()["name"] == conn["name"]

    channels = (await api.get(f"/api/connections/{q(conn['name'])}/channels")).json()
    assert [c["number"] for c in channels] == [1, 2]
    ch1, ch2 = channels
    assert ch1["name"] == f"{conn['name']} (1)"
    assert ch1["connection_details"] == {
        "name": conn["name"],
        "peer_host": "127.0.0.1",
        "peer_port": conn["peer_port"],
    }
    assert (ch1["confirm"], ch1["transactional"]) == (True, False)
    assert (ch2["confirm"], ch2["transactional"]) == (False, True)
    assert (ch1["consumer_count"], ch2["consumer_count"]) == (1, 0)
    assert ch1["prefetch_count"] == 5 and ch1["global_prefetch_count"] == 0
    assert ch1["messages_unacknowledged"] == 2
    assert ch1["messages_unconfirmed"] == 0
    assert ch1["message_stats"]["publish"] == 2
    assert ch1["message_stats"]["deliver_get"] == 2
    assert ch1["message_stats"]["publish_details"] == {"rate": 0.0}
    assert ch1["state"] == "running" and ch1["user"] == "guest" and ch1["vhost"] == "/"
    assert (await api.get("/api/channels")).json() == channels
    assert (await api.get("/api/vhosts/%2F/channels")).json() == channels

    detail = (await api.get(f"/api/channels/{q(ch1['name'])}")).json()
    assert [c["consumer_tag"] for c in detail["consumer_details"]] == ["ctag-1"]
    assert detail["deliveries"] == [] and detail["publishes"] == []

    [consumer] = (await api.get("/api/consumers")).json()
    assert consumer == {
        "consumer_tag": "ctag-1",
        "queue": {"name": "orders", "vhost": "/"},
        "channel_details": {
            "connection_name": conn["name"],
            "name": ch1["name"],
            "node": admin_server.node_name,
            "number": 1,
            "peer_host": "127.0.0.1",
            "peer_port": conn["peer_port"],
            "user": "guest",
        },
        "ack_required": True,
        "prefetch_count": 5,
        "exclusive": False,
        "active": True,
        "activity_status": "up",
        "arguments": {"x-priority": 3},
    }
    assert (await api.get("/api/consumers/%2F")).json() == [consumer]
    assert [c["name"] for c in (await api.get("/api/vhosts/%2F/connections")).json()] == [
        conn["name"]
    ]


async def test_missing_objects_and_vhosts_are_404(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    admin_server.broker.add_vhost("empty")
    for path in (
        "/api/connections/127.0.0.1%3A1%20-%3E%20127.0.0.1%3A2",
        "/api/connections/nope/channels",
        "/api/channels/nope%20(1)",
        "/api/vhosts/nope/connections",
        "/api/vhosts/nope/channels",
        "/api/consumers/nope",
    ):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert (await api.delete("/api/connections/nope")).status_code == 404
    assert (await api.get("/api/vhosts/empty/connections")).json() == []
    assert (await api.get("/api/consumers/empty")).json() == []


async def test_delete_closes_an_amqp_connection_with_320_and_the_reason(
    api: httpx.AsyncClient, pika_client: Pika, caplog: pytest.LogCaptureFixture
) -> None:
    await pika_client.run(pika_client.connection.channel)
    conn = await only_connection(api)
    with caplog.at_level(logging.INFO, logger="rapidmq.admin"):
        response = await api.delete(
            f"/api/connections/{q(conn['name'])}", headers={"X-Reason": "maintenance window"}
        )
    assert response.status_code == 204

    def wait_for_close() -> BaseException | None:
        try:
            pika_client.connection.process_data_events(time_limit=TIMEOUT_S)
        except pika.exceptions.ConnectionClosedByBroker as closed:
            return closed
        return None

    closed = await pika_client.run(wait_for_close)
    assert isinstance(closed, pika.exceptions.ConnectionClosedByBroker)
    assert closed.reply_code == 320
    assert closed.reply_text == "CONNECTION_FORCED - maintenance window"
    assert any(
        r.name == "rapidmq.admin" and "'guest'" in r.getMessage() and conn["name"] in r.getMessage()
        for r in caplog.records
    )

    async def gone() -> bool:
        return (await api.get("/api/connections")).json() == []

    await eventually(gone)


async def test_delete_without_a_reason_uses_rabbitmqs_text(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    client = await amqp_client.connect(amqp_port(admin_server))
    try:
        conn = await only_connection(api)
        assert (await api.delete(f"/api/connections/{q(conn['name'])}")).status_code == 204
        close = await client.expect(commands.Connection.Close)
        assert close.reply_code == 320
        assert close.reply_text == "CONNECTION_FORCED - Closed via management plugin"
        await client.send(0, commands.Connection.CloseOk())
    finally:
        await client.aclose()


@pytest.mark.parametrize(("v5", "protocol"), [(False, "MQTT 3.1.1"), (True, "MQTT 5.0")])
async def test_an_mqtt_client_is_a_connection_and_its_subscription_a_consumer(
    api: httpx.AsyncClient, admin_server: Server, v5: bool, protocol: str
) -> None:
    port = admin_server.ports["mqtt"]
    assert port is not None
    peer = MQTTPeer("sensor-7", v5=v5)
    await anyio.to_thread.run_sync(peer.connect, port, 42)
    try:
        await anyio.to_thread.run_sync(peer.subscribe, "room/+/temp", 1)
        conn = await only_connection(api)
        assert conn["protocol"] == protocol
        assert conn["name"] == f"127.0.0.1:{conn['peer_port']} -> 127.0.0.1:{port}"
        assert conn["client_properties"] == {"client_id": "sensor-7"}
        assert conn["timeout"] == 42
        assert (conn["user"], conn["vhost"], conn["channels"]) == ("guest", "/", 1)
        [channel] = (await api.get("/api/channels")).json()
        assert channel["name"] == f"{conn['name']} (1)"
        assert channel["consumer_count"] == 1
        [consumer] = (await api.get("/api/consumers")).json()
        assert consumer["queue"] == {"name": "mqtt-session-sensor-7", "vhost": "/"}
        assert consumer["channel_details"]["connection_name"] == conn["name"]
        assert consumer["ack_required"] is True

        assert (await api.delete(f"/api/connections/{q(conn['name'])}")).status_code == 204
        assert await anyio.to_thread.run_sync(peer.disconnected.wait, TIMEOUT_S)

        async def gone() -> bool:
            return (await api.get("/api/connections")).json() == []

        await eventually(gone)
    finally:
        await anyio.to_thread.run_sync(peer.stop)


async def test_a_management_user_sees_and_closes_only_their_own_connections(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    admin_server.users.add_user("alice", "pw", tags=("management",))
    admin_server.permissions.set(Permission("alice", "/"))
    admin_server.users.add_user("mona", "pw", tags=("monitoring",))
    port = amqp_port(admin_server)
    guest = await amqp_client.connect(port)
    alice = await amqp_client.connect(port, user="alice", password="pw")
    try:
        for client in (guest, alice):
            await client.open_channel(1)
            await client.rpc(
                1, commands.Queue.Declare(queue="", exclusive=True), commands.Queue.DeclareOk
            )
            await client.rpc(1, commands.Basic.Consume(queue=""), commands.Basic.ConsumeOk)

        async def both() -> bool:
            return len((await api.get("/api/connections")).json()) == 2

        await eventually(both)
        everyone = {c["user"]: c["name"] for c in (await api.get("/api/connections")).json()}
        base = http_url(admin_server)
        async with (
            httpx.AsyncClient(base_url=base, auth=("alice", "pw")) as as_alice,
            httpx.AsyncClient(base_url=base, auth=("mona", "pw")) as as_mona,
        ):
            mine = (await as_alice.get("/api/connections")).json()
            assert [c["user"] for c in mine] == ["alice"]
            vhost_mine = (await as_alice.get("/api/vhosts/%2F/connections")).json()
            assert [c["user"] for c in vhost_mine] == ["alice"]
            assert [c["user"] for c in (await as_alice.get("/api/channels")).json()] == ["alice"]
            consumers = (await as_alice.get("/api/consumers")).json()
            assert [c["channel_details"]["user"] for c in consumers] == ["alice"]
            theirs = await as_alice.get(f"/api/connections/{q(everyone['guest'])}")
            assert theirs.status_code == 401
            assert theirs.json() == {
                "error": "not_authorised",
                "reason": "User not authorised to access object",
            }
            their_channel = await as_alice.get(f"/api/channels/{q(everyone['guest'] + ' (1)')}")
            assert their_channel.status_code == 401
            refused = await as_alice.delete(f"/api/connections/{q(everyone['guest'])}")
            assert refused.status_code == 401

            # Monitoring sees everyone's, but only an administrator closes someone else's.
            seen = {c["user"] for c in (await as_mona.get("/api/connections")).json()}
            assert seen == {"guest", "alice"}
            assert len((await as_mona.get("/api/consumers")).json()) == 2
            mona_delete = await as_mona.delete(f"/api/connections/{q(everyone['alice'])}")
            assert mona_delete.status_code == 401

            own = await as_alice.delete(f"/api/connections/{q(everyone['alice'])}")
            assert own.status_code == 204
        close = await alice.expect(commands.Connection.Close)
        assert close.reply_code == 320
        # guest's connection is untouched by the refused deletes
        qos_ok = await guest.rpc(1, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk)
        assert isinstance(qos_ok, commands.Basic.QosOk)
    finally:
        await guest.aclose()
        await alice.aclose()


async def test_lists_page_and_sort(api: httpx.AsyncClient, admin_server: Server) -> None:
    port = amqp_port(admin_server)
    clients = [await amqp_client.connect(port) for _ in range(3)]
    try:

        async def three() -> bool:
            return len((await api.get("/api/connections")).json()) == 3

        await eventually(three)
        names = sorted(c["name"] for c in (await api.get("/api/connections")).json())
        page = (await api.get("/api/connections?page=2&page_size=2&sort=name")).json()
        assert (page["total_count"], page["page_count"], page["item_count"]) == (3, 2, 1)
        assert [c["name"] for c in page["items"]] == names[2:]
        reverse = (await api.get("/api/connections?sort=peer_port&sort_reverse=true")).json()
        ports = [c["peer_port"] for c in reverse]
        assert ports == sorted(ports, reverse=True)
        only = (await api.get("/api/connections?columns=name,user")).json()
        assert only[0].keys() == {"name", "user"}
        for index, client in enumerate(clients):
            await client.open_channel(1)
            if index:
                await client.open_channel(2)
        channels = (await api.get("/api/channels?page=1&page_size=10")).json()
        assert channels["total_count"] == 5
        assert (await api.get("/api/consumers?page=1")).json()["total_count"] == 0
    finally:
        for client in clients:
            await client.aclose()


async def test_connections_under_a_memory_alarm_are_blocking_then_blocked(
    anyio_backend: str,
) -> None:
    async with serving(http_port=0, memory_high_watermark="1MB") as server:

        async def alarmed() -> bool:
            return server.alarms.memory

        await eventually(alarmed)
        client = await amqp_client.connect(amqp_port(server))
        try:
            await client.open_channel(1)
            async with httpx.AsyncClient(base_url=http_url(server), auth=("guest", "guest")) as api:
                conn = await only_connection(api)
                assert conn["state"] == "blocking"
                await client.publish(1, "", "nowhere", b"x")

                async def blocked() -> bool:
                    [c] = (await api.get("/api/connections")).json()
                    return c["state"] == "blocked"

                await eventually(blocked)
        finally:
            await client.aclose()


async def test_connection_and_channel_rates_come_from_sampled_counters(
    api: httpx.AsyncClient, admin_server: Server, pika_client: Pika
) -> None:
    conn = await only_connection(api)
    channel = await pika_client.run(pika_client.connection.channel)
    await pika_client.run(lambda: channel.queue_declare("rated"))
    # A sample two seconds ago, taken now: what follows is the traffic since.
    rates = admin_server.rates
    rates.take(sample_connections(admin_server), now=rates.clock() - 2.0)
    for _ in range(20):
        await pika_client.run(lambda: channel.basic_publish("", "rated", b"x" * 1000))
    await pika_client.run(lambda: channel.queue_declare("rated", passive=True))
    shown = (await api.get(f"/api/connections/{q(conn['name'])}")).json()
    assert shown["recv_oct"] > 20_000
    assert shown["recv_oct_details"]["rate"] > 5_000  # > 20,000 octets over ~2 s
    [chan] = (await api.get(f"/api/connections/{q(conn['name'])}/channels")).json()
    stats = chan["message_stats"]
    assert stats["publish"] == 20
    assert 5.0 <= stats["publish_details"]["rate"] <= 10.0  # 20 messages over ~2 s
