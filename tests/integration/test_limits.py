"""Vhost and user limits with real clients: pika and paho against an in-process broker.

Each limit is set through the management API as an operator would, and the
refusal is checked with RabbitMQ 3.10.8's reply code and text (taken from the
local RabbitMQ; compat-tests/test_limits_differential.py compares them live).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.server import Server
from tests.integration.conftest import serving

pytestmark = pytest.mark.anyio


# -- clients -------------------------------------------------------------------------------


def _params(server: Server, vhost: str = "/", user: str = "guest", password: str = "guest") -> Any:
    return pika.ConnectionParameters(
        "127.0.0.1",
        server.ports["amqp"],
        vhost,
        pika.PlainCredentials(user, password),
        connection_attempts=1,
    )


@contextmanager
def amqp(
    server: Server, vhost: str = "/", user: str = "guest", password: str = "guest"
) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(_params(server, vhost, user, password))
    try:
        yield conn
    finally:
        if conn.is_open:
            conn.close()


def open_close(server: Server, vhost: str = "/") -> None:
    """A connection that must be accepted: open a channel, close it all."""
    with amqp(server, vhost) as conn:
        conn.channel()


def refused_text(server: Server, vhost: str = "/", user: str = "guest", pw: str = "guest") -> str:
    """Open a connection that must be refused; the broker's close text."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        pika.BlockingConnection(_params(server, vhost, user, pw)).close()
    return str(info.value)


class MQTT:
    """A paho client kept connected until closed; ``code`` is its CONNACK's."""

    def __init__(
        self, server: Server, client_id: str, user: str = "guest", *, clean: bool = True
    ) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.username_pw_set(user, "guest")
        self.codes: list[int] = []
        self.reason = ""
        done = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            # paho reports MQTT 3.1.1's CONNACK 5 as "Not authorized" (value 135)
            self.codes.append(int(reason.value))
            self.reason = str(reason)
            done.set()

        self.client.on_connect = on_connect
        port = server.ports["mqtt"]
        assert port is not None
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert done.wait(10), "no CONNACK"
        self.code = self.codes[0]

    def close(self) -> None:
        if self.code == 0:
            self.client.disconnect()
        self.client.loop_stop()


async def run(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


@pytest.fixture
async def broker(anyio_backend: str) -> AsyncIterator[Server]:
    async with serving(http_port=0, mqtt_port=0) as srv:
        yield srv


@pytest.fixture
async def api(broker: Server) -> AsyncIterator[httpx.AsyncClient]:
    url = f"http://127.0.0.1:{broker.ports['http']}"
    async with httpx.AsyncClient(base_url=url, auth=("guest", "guest"), timeout=10) as client:
        yield client


async def put_limit(api: httpx.AsyncClient, path: str, value: Any) -> httpx.Response:
    return await api.put(f"/api/{path}", json={"value": value})


# -- vhost limits --------------------------------------------------------------------------


async def test_vhost_max_connections_refuses_the_next_amqp_connection(
    broker: Server, api: httpx.AsyncClient
) -> None:
    assert (await api.put("/api/vhosts/capped")).status_code == 201
    assert (await put_limit(api, "vhost-limits/capped/max-connections", 1)).status_code == 204

    def scenario() -> str:
        with amqp(broker, "capped"):
            return refused_text(broker, "capped")

    text = await run(scenario)
    assert "530" in text
    assert (
        "NOT_ALLOWED - access to vhost 'capped' refused for user 'guest': "
        "connection limit (1) is reached"
    ) in text
    # the first connection has gone: there is room again
    await run(lambda: open_close(broker, "capped"))


async def test_vhost_max_connections_counts_mqtt_and_amqp_together(
    broker: Server, api: httpx.AsyncClient
) -> None:
    assert (await put_limit(api, "vhost-limits/%2F/max-connections", 1)).status_code == 204

    def scenario() -> tuple[int, str, int]:
        first = MQTT(broker, "limits-first")
        try:
            second = MQTT(broker, "limits-second")
            second.close()
            amqp_text = refused_text(broker)
        finally:
            first.close()
        with amqp(broker):
            third = MQTT(broker, "limits-third")
            third.close()
        return second.code, amqp_text, third.code

    mqtt_code, amqp_text, after_amqp = await run(scenario)
    assert first_code_refused(mqtt_code)
    assert "connection limit (1) is reached" in amqp_text
    assert first_code_refused(after_amqp)


async def test_a_persistent_mqtt_session_counts_only_while_its_client_is_connected(
    broker: Server, api: httpx.AsyncClient
) -> None:
    assert (await put_limit(api, "vhost-limits/%2F/max-connections", 1)).status_code == 204

    def scenario() -> tuple[int, str]:
        MQTT(broker, "limits-persistent", clean=False).close()  # the session stays
        with amqp(broker):  # the one connection the vhost allows is free
            resumed = MQTT(broker, "limits-persistent", clean=False)
            resumed.close()
        again = MQTT(broker, "limits-persistent", clean=False)
        again.close()
        return resumed.code, str(again.code)

    refused_while_amqp_is_open, after = await run(scenario)
    assert first_code_refused(refused_while_amqp_is_open)
    assert after == "0"


def first_code_refused(code: int) -> bool:
    """MQTT 3.1.1's CONNACK 5 (not authorized, 135 in paho's terms), as RabbitMQ answers."""
    return code == 135


async def test_vhost_max_queues_refuses_a_new_queue_but_not_a_redeclare(
    broker: Server, api: httpx.AsyncClient
) -> None:
    assert (await put_limit(api, "vhost-limits/%2F/max-queues", 2)).status_code == 204

    def scenario() -> str:
        with amqp(broker) as conn:
            ch = conn.channel()
            ch.queue_declare("q1")
            ch.queue_declare("q2")
            ch.queue_declare("q1")  # an existing queue is no new queue
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                ch.queue_declare("q3")
            conn.channel().queue_delete("q1")
            conn.channel().queue_declare("q3")  # room again
            return f"{info.value.reply_code} {info.value.reply_text}"

    assert await run(scenario) == (
        "406 PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '/' (2) "
        "is reached"
    )


# -- user limits ---------------------------------------------------------------------------


async def make_user(api: httpx.AsyncClient, name: str) -> None:
    assert (await api.put(f"/api/users/{name}", json={"password": "guest", "tags": ""})).is_success
    grant = {"configure": ".*", "write": ".*", "read": ".*"}
    assert (await api.put(f"/api/permissions/%2F/{name}", json=grant)).is_success


async def test_user_max_connections(broker: Server, api: httpx.AsyncClient) -> None:
    await make_user(api, "ann")
    assert (await put_limit(api, "user-limits/ann/max-connections", 2)).status_code == 204

    def scenario() -> tuple[str, int]:
        with amqp(broker, user="ann"), amqp(broker, user="ann"), amqp(broker):
            text = refused_text(broker, user="ann")
            mqtt = MQTT(broker, "ann-mqtt", user="ann")
            mqtt.close()
        return text, mqtt.code

    text, mqtt_code = await run(scenario)
    assert "530" in text
    assert (
        "NOT_ALLOWED - connection refused for user 'ann': user connection limit (2) is reached"
        in (text)
    )
    assert first_code_refused(mqtt_code)


async def test_user_max_channels_counts_over_all_connections(
    broker: Server, api: httpx.AsyncClient
) -> None:
    await make_user(api, "bob")
    assert (await put_limit(api, "user-limits/bob/max-channels", 2)).status_code == 204

    def scenario() -> str:
        with amqp(broker, user="bob") as one, amqp(broker, user="bob") as two:
            one.channel()
            two.channel()
            with amqp(broker) as other:
                other.channel()  # guest is not limited
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
                two.channel()
            return f"{info.value.reply_code} {info.value.reply_text}"

    assert await run(scenario) == (
        "530 NOT_ALLOWED - number of channels opened for user 'bob' has reached the maximum "
        "allowed user limit of (2)"
    )


# -- the API ---------------------------------------------------------------------------------


async def test_limits_are_listed_replaced_and_cleared_through_the_api(
    broker: Server, api: httpx.AsyncClient
) -> None:
    await make_user(api, "cat")
    await put_limit(api, "vhost-limits/%2F/max-queues", 5)
    await put_limit(api, "vhost-limits/%2F/max-connections", 0)
    await put_limit(api, "user-limits/cat/max-channels", 3)
    assert (await api.get("/api/vhost-limits")).json() == [
        {"vhost": "/", "value": {"max-connections": 0, "max-queues": 5}}
    ]
    assert (await api.get("/api/user-limits/cat")).json() == [
        {"user": "cat", "value": {"max-channels": 3}}
    ]
    assert (await api.get("/api/user-limits")).json() == [
        {"user": "cat", "value": {"max-channels": 3}}
    ]
    assert (await api.get("/api/users/cat")).json()["limits"] == {"max-channels": 3}
    text = await run(lambda: refused_text(broker))
    assert "connection limit (0) is reached" in text
    # -1 is no limit, and is shown back as RabbitMQ does
    assert (await put_limit(api, "vhost-limits/%2F/max-connections", -1)).status_code == 204
    assert (await api.get("/api/vhost-limits/%2F")).json()[0]["value"]["max-connections"] == -1
    await run(lambda: open_close(broker))
    assert (await api.delete("/api/vhost-limits/%2F/max-connections")).status_code == 204
    assert (await api.delete("/api/vhost-limits/%2F/max-queues")).status_code == 204
    assert (await api.delete("/api/vhost-limits/%2F/max-queues")).status_code == 204
    assert (await api.get("/api/vhost-limits/%2F")).json() == []
    assert (await api.delete("/api/user-limits/cat/max-channels")).status_code == 204
    assert (await api.get("/api/user-limits")).json() == []
    assert broker.broker.user_max_channels == {}


async def test_the_api_refuses_bad_limits_with_rabbitmqs_answers(api: httpx.AsyncClient) -> None:
    r = await put_limit(api, "vhost-limits/%2F/max-foo", 1)
    assert (r.status_code, r.json()["reason"]) == (
        400,
        'Validation failed\n\nUnrecognised terms [{<<"max-foo">>,1}] in limits\n',
    )
    r = await put_limit(api, "vhost-limits/%2F/max-queues", "x")
    assert (r.status_code, r.json()["reason"]) == (
        400,
        'Validation failed\n\nmax-queues should be a number, actually was <<"x">>\n',
    )
    r = await api.put("/api/vhost-limits/%2F/max-queues", json={})
    assert (r.status_code, r.json()["reason"]) == (400, "[{key_missing,value}]")
    r = await put_limit(api, "vhost-limits/nowhere/max-queues", 1)
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    r = await put_limit(api, "user-limits/nobody/max-channels", 1)
    assert (r.status_code, r.json()["reason"]) == (400, ["no_such_user", "nobody"])
    r = await put_limit(api, "user-limits/guest/max-foo", 1)
    assert r.json()["reason"] == 'Unrecognised terms [{<<"max-foo">>,1}] in user-limits'
    assert (await api.get("/api/user-limits/nobody")).status_code == 404
    assert (await api.get("/api/vhost-limits/nowhere")).status_code == 404


async def test_limits_go_with_their_vhost_and_user(broker: Server, api: httpx.AsyncClient) -> None:
    await api.put("/api/vhosts/gone")
    await put_limit(api, "vhost-limits/gone/max-queues", 1)
    await make_user(api, "dan")
    await put_limit(api, "user-limits/dan/max-connections", 1)
    await api.delete("/api/vhosts/gone")
    await api.delete("/api/users/dan")
    assert (await api.get("/api/vhost-limits")).json() == []
    assert (await api.get("/api/user-limits")).json() == []
    await api.put("/api/vhosts/gone")
    vhost = broker.broker.vhost("gone")
    assert vhost is not None and vhost.max_queues is None


# -- durability and definitions --------------------------------------------------------------


async def test_limits_survive_a_restart(anyio_backend: str, tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "storage": "rocksdb",
        "data_dir": str(tmp_path),
        "http_port": 0,
    }
    async with serving(**options) as srv:
        url = f"http://127.0.0.1:{srv.ports['http']}"
        async with httpx.AsyncClient(base_url=url, auth=("guest", "guest")) as client:
            await client.put("/api/users/eve", json={"password": "pw", "tags": ""})
            await put_limit(client, "user-limits/eve/max-channels", 4)
            await put_limit(client, "vhost-limits/%2F/max-queues", 0)
            await put_limit(client, "vhost-limits/%2F/max-connections", 7)
            await client.delete("/api/vhost-limits/%2F/max-connections")
    async with serving(**options) as srv:
        url = f"http://127.0.0.1:{srv.ports['http']}"
        async with httpx.AsyncClient(base_url=url, auth=("guest", "guest")) as client:
            assert (await client.get("/api/vhost-limits")).json() == [
                {"vhost": "/", "value": {"max-queues": 0}}
            ]
            assert (await client.get("/api/user-limits")).json() == [
                {"user": "eve", "value": {"max-channels": 4}}
            ]

        def declare() -> str:
            with amqp(srv) as conn, pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                conn.channel().queue_declare("after-restart")
            return str(info.value.reply_text)

        assert "queue limit in vhost '/' (0) is reached" in await run(declare)
        assert srv.broker.user_max_channels == {"eve": 4}


async def test_limits_are_exported_and_imported_with_definitions(
    broker: Server, api: httpx.AsyncClient
) -> None:
    await api.put("/api/vhosts/exported")
    await make_user(api, "fay")
    await put_limit(api, "vhost-limits/exported/max-queues", 9)
    await put_limit(api, "user-limits/fay/max-connections", 2)
    exported = (await api.get("/api/definitions")).json()
    assert {
        "value": {"max-queues": 9},
        "vhost": "exported",
        "component": "vhost-limits",
        "name": "limits",
    } in exported["parameters"]
    fay = next(u for u in exported["users"] if u["name"] == "fay")
    assert fay["limits"] == {"max-connections": 2}
    one = (await api.get("/api/definitions/exported")).json()
    assert one["parameters"][0]["value"] == {"max-queues": 9}

    async with serving(http_port=0) as other:
        url = f"http://127.0.0.1:{other.ports['http']}"
        async with httpx.AsyncClient(base_url=url, auth=("guest", "guest")) as client:
            assert (await client.post("/api/definitions", json=exported)).status_code == 204
            assert (await client.get("/api/vhost-limits/exported")).json() == [
                {"vhost": "exported", "value": {"max-queues": 9}}
            ]
            assert (await client.get("/api/user-limits/fay")).json() == [
                {"user": "fay", "value": {"max-connections": 2}}
            ]
            # a vhost's own file brings its limits into whichever vhost it is loaded into
            await client.put("/api/vhosts/copy")
            assert (await client.post("/api/definitions/copy", json=one)).status_code == 204
            assert (await client.get("/api/vhost-limits/copy")).json()[0]["value"] == {
                "max-queues": 9
            }
        vhost = other.broker.vhost("exported")
        assert vhost is not None and vhost.max_queues == 9
