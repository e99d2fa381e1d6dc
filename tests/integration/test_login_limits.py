"""Failed-login rate limiting through real clients: AMQP (pika), MQTT and HTTP share one count."""

from __future__ import annotations

import logging
import time

import anyio
import anyio.to_thread
import httpx
import pika
import pika.exceptions
import pytest

from rapidmq.auth.backends import RATE_LIMITED
from rapidmq.protocols.mqtt.packets import MQTT_3_1_1, ConnAck, Connect
from rapidmq.server import Server
from tests.integration.conftest import serving
from tests.integration.mqtt_fixtures import MQTTClient

pytestmark = pytest.mark.anyio


def port(server: Server, name: str) -> int:
    value = server.ports[name]
    assert value is not None
    return value


def amqp_login(server: Server, user: str, password: str) -> None:
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port(server, "amqp"),
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=10,
    )
    pika.BlockingConnection(params).close()


async def mqtt_connack(server: Server, user: str, password: bytes) -> ConnAck:
    stream = await anyio.connect_tcp("127.0.0.1", port(server, "mqtt"))
    client = MQTTClient(stream, MQTT_3_1_1)
    try:
        await client.send(Connect(MQTT_3_1_1, f"limit-{time.time_ns()}", True, 0, user, password))
        ack = await client.recv()
    finally:
        await client.aclose()
    assert isinstance(ack, ConnAck)
    return ack


async def http_status(server: Server, user: str, password: str) -> int:
    url = f"http://127.0.0.1:{port(server, 'http')}"
    async with httpx.AsyncClient(base_url=url, auth=(user, password), timeout=10) as client:
        return (await client.get("/api/whoami")).status_code


async def test_after_the_limit_every_protocol_is_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(login_failure_limit=3, mqtt_port=0, http_port=0) as server:
        with caplog.at_level(logging.INFO, logger="rapidmq"):
            await anyio.to_thread.run_sync(amqp_login, server, "guest", "guest")  # fine
            with pytest.raises(pika.exceptions.ProbableAuthenticationError):
                await anyio.to_thread.run_sync(amqp_login, server, "guest", "wrong")
            assert (await mqtt_connack(server, "guest", b"wrong")).reason_code == 5
            assert await http_status(server, "guest", "wrong") == 401
            # Three failures from 127.0.0.1 within the minute: now even the right password fails.
            with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
                await anyio.to_thread.run_sync(amqp_login, server, "guest", "guest")
            assert "(403)" in str(info.value)
            assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in (
                str(info.value)
            )
            assert (await mqtt_connack(server, "guest", b"guest")).reason_code == 5
            assert await http_status(server, "guest", "guest") == 401
        warnings = [r for r in caplog.records if getattr(r, "event", "") == "auth.rate_limited"]
        assert len(warnings) == 1  # one per address per window, not one per attempt
        failed = [r for r in caplog.records if getattr(r, "event", "") == "login.failed"]
        assert [getattr(r, "protocol") for r in failed] == [  # noqa: B009
            "amqp",
            "mqtt",
            "http",
            "amqp",
            "mqtt",
            "http",
        ]
        assert [getattr(r, "reason") == RATE_LIMITED for r in failed] == [  # noqa: B009
            False,
            False,
            False,
            True,
            True,
            True,
        ]
        succeeded = [r for r in caplog.records if getattr(r, "event", "") == "login.succeeded"]
        assert [getattr(r, "user") for r in succeeded] == ["guest"]  # noqa: B009


async def test_zero_turns_the_limit_off() -> None:
    async with serving(login_failure_limit=0, http_port=0) as server:
        for _ in range(15):
            assert await http_status(server, "guest", "wrong") == 401
        assert await http_status(server, "guest", "guest") == 200
        assert len(server.login_limiter) == 0
