"""Direct reply-to with pika against an in-process broker: an RPC client and server."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pika
import pika.exceptions
import pytest

from rapidmq.server import Server

from .conftest import amqp_port

pytestmark = pytest.mark.anyio

REPLY_QUEUE = "amq.rabbitmq.reply-to"
WAIT_S = 5.0


def _connect(server: Server) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1", amqp_port(server), connection_attempts=1, socket_timeout=5
    )
    return pika.BlockingConnection(params)


def _rpc_round_trip(server: Server) -> dict[str, Any]:
    """Two requests from a client to an RPC server consumer, answered via direct reply-to."""
    client, rpc = _connect(server), _connect(server)
    try:
        ch, server_ch = client.channel(), rpc.channel()
        server_ch.queue_declare("rpc")
        server_ch.confirm_delivery()
        seen_reply_to: list[str] = []

        def serve(c: Any, method: Any, props: Any, body: bytes) -> None:
            seen_reply_to.append(props.reply_to)
            answer = pika.BasicProperties(correlation_id=props.correlation_id)
            c.basic_publish("", props.reply_to, body.upper(), answer)
            c.basic_ack(method.delivery_tag)

        server_ch.basic_consume("rpc", serve)
        replies: list[tuple[str, int, str, bytes]] = []

        def on_reply(c: Any, method: Any, props: Any, body: bytes) -> None:
            replies.append((method.consumer_tag, method.delivery_tag, props.correlation_id, body))

        tag = ch.basic_consume(REPLY_QUEUE, on_reply, auto_ack=True, consumer_tag="replies")
        for n, body in enumerate((b"ping", b"pong")):
            props = pika.BasicProperties(reply_to=REPLY_QUEUE, correlation_id=f"c{n}")
            ch.basic_publish("", "rpc", body, props)
        deadline = time.monotonic() + WAIT_S
        while len(replies) < 2 and time.monotonic() < deadline:
            rpc.process_data_events(time_limit=0.02)
            client.process_data_events(time_limit=0.02)
        return {
            "tag": tag,
            "replies": replies,
            "reply_to": seen_reply_to,
            "capability": client._impl.server_capabilities.get("direct_reply_to"),
        }
    finally:
        client.close()
        rpc.close()


async def test_rpc_replies_reach_the_client_through_direct_reply_to(server: Server) -> None:
    seen = await anyio.to_thread.run_sync(_rpc_round_trip, server)
    assert seen["capability"] is True
    assert seen["tag"] == "replies"
    assert seen["replies"] == [("replies", 1, "c0", b"PING"), ("replies", 1, "c1", b"PONG")]
    first, second = seen["reply_to"]
    assert first == second
    assert first.startswith(REPLY_QUEUE + ".") and len(first) > len(REPLY_QUEUE) + 32


def _refusals(server: Server) -> list[tuple[int, str]]:
    out = []
    with _connect(server) as conn:
        ch = conn.channel()
        try:
            ch.basic_consume(REPLY_QUEUE, lambda *a: None, auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as err:
            out.append((err.reply_code, err.reply_text))
        ch = conn.channel()
        ch.queue_declare("rpc")
        ch.basic_publish("", "rpc", b"x", pika.BasicProperties(reply_to=REPLY_QUEUE))
        try:
            ch.basic_qos(prefetch_count=1)
        except pika.exceptions.ChannelClosedByBroker as err:
            out.append((err.reply_code, err.reply_text))
    return out


async def test_ack_mode_consume_and_requests_without_consumer_are_refused(server: Server) -> None:
    assert await anyio.to_thread.run_sync(_refusals, server) == [
        (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge"),
        (406, "PRECONDITION_FAILED - fast reply consumer does not exist"),
    ]
