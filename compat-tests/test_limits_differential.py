"""Limits, RabbitMQ against RapidMQ: the same script, the same refusals.

Each scenario makes a vhost and a user named with a per-run token, sets a limit
through the management API, drives pika into it and returns the reply codes
and texts (and the API's answers) with the token replaced; the two brokers'
observations must be equal.  Everything made on the shared RabbitMQ is deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from management_support import (
    RABBITMQ_AMQP_PORT,
    RABBITMQ_API_URL,
    fresh_client,
    management_reachable,
    token,
)

from rapidmq.testing import BrokerProcess

pytestmark = pytest.mark.differential

Target = tuple[str, int]  # management URL, AMQP port
Scenario = Callable[[httpx.Client, int, str], dict[str, Any]]


@pytest.fixture(scope="module")
def rapidmq_target() -> Iterator[Target]:
    with BrokerProcess("--bind", "127.0.0.1", "--storage", "memory") as broker:
        assert broker.amqp_port is not None
        yield f"http://127.0.0.1:{broker.http_port}", broker.amqp_port


@pytest.fixture(scope="module")
def rabbitmq_target() -> Target:
    if not management_reachable():
        pytest.skip("the local RabbitMQ management API is not reachable")
    return RABBITMQ_API_URL, RABBITMQ_AMQP_PORT


@contextlib.contextmanager
def world(url: str, tok: str) -> Iterator[httpx.Client]:
    """A vhost ``tok`` with a user ``tok-u`` (password ``pw``) granted everything in it."""
    with fresh_client(url, timeout_s=10) as api:
        api.put(f"/api/vhosts/{tok}").raise_for_status()
        api.put(f"/api/users/{tok}-u", json={"password": "pw", "tags": ""}).raise_for_status()
        grant = {"configure": ".*", "write": ".*", "read": ".*"}
        api.put(f"/api/permissions/{tok}/{tok}-u", json=grant).raise_for_status()
        try:
            yield api
        finally:
            api.delete(f"/api/vhosts/{tok}")
            api.delete(f"/api/users/{tok}-u")


def _connect(port: int, tok: str) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1", port, tok, pika.PlainCredentials(f"{tok}-u", "pw"), connection_attempts=1
    )
    return pika.BlockingConnection(params)


def _refusal(err: BaseException) -> str:
    """The broker's code and text out of whichever pika error carried them."""
    inner: Any = err
    while inner is not None and not isinstance(inner, pika.exceptions.ConnectionClosedByBroker):
        args = getattr(inner, "args", ())
        inner = args[0] if args and isinstance(args[0], BaseException) else None
    if inner is not None:
        return f"{inner.reply_code} {inner.reply_text}"
    return str(err)


def max_queues(api: httpx.Client, port: int, tok: str) -> dict[str, Any]:
    put = api.put(f"/api/vhost-limits/{tok}/max-queues", json={"value": 1})
    shown = api.get(f"/api/vhost-limits/{tok}").json()
    conn = _connect(port, tok)
    try:
        ch = conn.channel()
        ch.queue_declare(f"{tok}-q1")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.queue_declare(f"{tok}-q2")
    finally:
        if conn.is_open:
            conn.close()
    refused = f"{info.value.reply_code} {info.value.reply_text}"
    return {"put": put.status_code, "shown": shown, "refused": refused}


def vhost_max_connections(api: httpx.Client, port: int, tok: str) -> dict[str, Any]:
    put = api.put(f"/api/vhost-limits/{tok}/max-connections", json={"value": 1})
    conn = _connect(port, tok)
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
            _connect(port, tok).close()
    finally:
        conn.close()
    return {"put": put.status_code, "refused": _refusal(info.value)}


def user_max_connections(api: httpx.Client, port: int, tok: str) -> dict[str, Any]:
    put = api.put(f"/api/user-limits/{tok}-u/max-connections", json={"value": 1})
    shown = api.get(f"/api/user-limits/{tok}-u").json()
    conn = _connect(port, tok)
    try:
        with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
            _connect(port, tok).close()
    finally:
        conn.close()
    return {"put": put.status_code, "shown": shown, "refused": _refusal(info.value)}


def user_max_channels(api: httpx.Client, port: int, tok: str) -> dict[str, Any]:
    put = api.put(f"/api/user-limits/{tok}-u/max-channels", json={"value": 1})
    conn = _connect(port, tok)
    try:
        conn.channel()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
            conn.channel()
    finally:
        if conn.is_open:
            conn.close()
    cleared = api.delete(f"/api/user-limits/{tok}-u/max-channels")
    shown = api.get(f"/api/user-limits/{tok}-u").json()
    refused = f"{info.value.reply_code} {info.value.reply_text}"
    return {
        "put": put.status_code,
        "refused": refused,
        "cleared": cleared.status_code,
        "shown": shown,
    }


def bad_requests(api: httpx.Client, port: int, tok: str) -> list[Any]:
    answers = []
    for path, body in (
        (f"/api/vhost-limits/{tok}/max-foo", {"value": 1}),
        (f"/api/vhost-limits/{tok}/max-queues", {"value": "x"}),
        (f"/api/vhost-limits/{tok}/max-queues", {"value": [1, 2]}),
        (f"/api/vhost-limits/{tok}/max-queues", {"value": {"a": 1}}),
        (f"/api/vhost-limits/{tok}/max-queues", {"value": True}),
        (f"/api/vhost-limits/{tok}/max-queues", {}),
        (f"/api/vhost-limits/{tok}-none/max-queues", {"value": 1}),
        (f"/api/user-limits/{tok}-none/max-channels", {"value": 1}),
        (f"/api/user-limits/{tok}-u/max-foo", {"value": 1}),
    ):
        reply = api.put(path, json=body)
        answers.append((path, body, reply.status_code, reply.json()))
    return answers


SCENARIOS: list[Scenario] = [
    max_queues,
    vhost_max_connections,
    user_max_connections,
    user_max_channels,
    bad_requests,
]


def observe(target: Target, scenario: Scenario) -> Any:
    url, port = target
    tok = token()
    with world(url, tok) as api:
        seen = scenario(api, port, tok)
    return _untoken(seen, tok)


def _untoken(value: Any, tok: str) -> Any:
    if isinstance(value, str):
        return value.replace(tok, "<T>")
    if isinstance(value, dict):
        return {_untoken(k, tok): _untoken(v, tok) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_untoken(v, tok) for v in value]
    return value


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_same_limits_behaviour(
    scenario: Scenario, rabbitmq_target: Target, rapidmq_target: Target
) -> None:
    assert observe(rapidmq_target, scenario) == observe(rabbitmq_target, scenario)
