"""Quorum queues through real clients: confirms, restarts, returns and the management API."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest

from rapidmq.testing import BrokerProcess

Q = {"x-queue-type": "quorum"}


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", "--http-port", "0", data_dir=str(data_dir))


def _drain(channel: Any, queue: str) -> list[tuple[bytes, int | None, bool]]:
    out = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, props.delivery_mode, method.redelivered))


def test_confirmed_messages_of_a_quorum_queue_survive_sigkill_persistent_or_not(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    first = _broker(data_dir).start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(first.amqp_url))
        ch = connection.channel()
        ch.confirm_delivery()
        ch.queue_declare("qq", durable=True, arguments=Q)
        ch.queue_declare("cq", durable=True)
        for mode in (1, 2, 1):
            ch.basic_publish(
                "", "qq", f"mode {mode}".encode(), pika.BasicProperties(delivery_mode=mode)
            )
        ch.basic_publish("", "cq", b"classic transient", pika.BasicProperties(delivery_mode=1))
        connection.close()  # every publish above was confirmed
        assert first.stop(signal.SIGKILL) == -9
    finally:
        first.stop()
    with _broker(data_dir) as second:
        connection = pika.BlockingConnection(pika.URLParameters(second.amqp_url))
        ch = connection.channel()
        assert (_drain(ch, "qq"), _drain(ch, "cq")) == (
            [(b"mode 1", 1, False), (b"mode 2", 2, False), (b"mode 1", 1, False)],
            [],
        )
        connection.close()


def test_delivery_limit_over_amqp_dead_letters_after_the_last_return(tmp_path: Path) -> None:
    with _broker(tmp_path / "data") as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = connection.channel()
        ch.exchange_declare("dlx", "fanout")
        ch.queue_declare("dead")
        ch.queue_bind("dead", "dlx")
        ch.queue_declare(
            "qq",
            durable=True,
            arguments={**Q, "x-delivery-limit": 1, "x-dead-letter-exchange": "dlx"},
        )
        ch.basic_publish("", "qq", b"m")
        seen: list[tuple[bool, Any]] = []

        def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
            seen.append((method.redelivered, props.headers))
            channel.basic_nack(method.delivery_tag, requeue=True)

        ch.basic_consume("qq", on_message)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            connection.process_data_events(0.05)
            if ch.queue_declare("dead", passive=True).method.message_count:
                break
        method, props, _ = ch.basic_get("dead", auto_ack=True)
        assert method is not None
        assert (seen, props.headers["x-first-death-reason"]) == (
            [(False, None), (True, {"x-delivery-count": 1})],
            "delivery_limit",
        )
        connection.close()


def test_management_api_lists_a_quorum_queue_with_its_members(tmp_path: Path) -> None:
    with _broker(tmp_path / "data") as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        ch = connection.channel()
        ch.queue_declare("qq", durable=True, arguments=Q)
        ch.basic_publish("", "qq", b"abc")
        connection.close()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{broker.http_port}", auth=("guest", "guest")
        ) as api:
            body = api.get("/api/queues/%2F/qq").json()
        node = body["node"]
        assert {
            key: body[key]
            for key in (
                "type",
                "leader",
                "members",
                "online",
                "messages",
                "messages_ready",
                "messages_dlx",
                "message_bytes",
                "message_bytes_dlx",
                "single_active_consumer_ctag",
            )
        } == {
            "type": "quorum",
            "leader": node,
            "members": [node],
            "online": [node],
            "messages": 1,
            "messages_ready": 1,
            "messages_dlx": 0,
            "message_bytes": 3,
            "message_bytes_dlx": 0,
            "single_active_consumer_ctag": None,
        }
        assert "exclusive_consumer_tag" not in body


def test_quorum_queue_refusals_over_amqp(tmp_path: Path) -> None:
    with _broker(tmp_path / "data") as broker:
        connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        refusals = []
        for kwargs in (
            {"durable": True, "auto_delete": True, "arguments": Q},
            {"durable": True, "arguments": {**Q, "x-max-priority": 5}},
        ):
            ch = connection.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
                ch.queue_declare("qq", **kwargs)
            refusals.append((err.value.reply_code, err.value.reply_text))
        assert refusals == [
            (
                406,
                "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'qq' in vhost '/'",
            ),
            (
                406,
                "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'qq' in vhost '/' "
                "of queue type rabbit_quorum_queue",
            ),
        ]
        connection.close()


def test_at_least_once_dead_letters_with_nowhere_to_go_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    arguments = {
        **Q,
        "x-dead-letter-exchange": "missing",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    first = _broker(data_dir).start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(first.amqp_url))
        ch = connection.channel()
        ch.confirm_delivery()
        ch.queue_declare("qq", durable=True, arguments=arguments)
        ch.basic_publish("", "qq", b"dead letter")
        method, _, _ = ch.basic_get("qq")
        assert method is not None
        ch.basic_reject(method.delivery_tag, requeue=False)
        # A later confirmed publish: its sync covers the held dead letter's write.
        ch.basic_publish("", "qq", b"later")
        connection.close()
        assert first.stop(signal.SIGKILL) == -9
    finally:
        first.stop()
    with _broker(data_dir) as second:
        connection = pika.BlockingConnection(pika.URLParameters(second.amqp_url))
        ch = connection.channel()
        # Back as ready messages of the source queue, in store order: never lost.
        assert sorted(body for body, _, _ in _drain(ch, "qq")) == [b"dead letter", b"later"]
        connection.close()


def _sync_point(ch: Any) -> None:
    """A confirmed persistent publish: its sync covers every return the broker took before it."""
    ch.basic_publish("", "sync", b"", pika.BasicProperties(delivery_mode=2))


def _first_delivery(connection: Any, ch: Any, queue: str) -> tuple[bool, Any] | None:
    """(redelivered, headers) of the first delivery to a consumer, left unacked (tag 1)."""
    seen: list[tuple[bool, Any]] = []

    def on_message(channel: Any, method: Any, props: Any, body: bytes) -> None:
        seen.append((method.redelivered, props.headers))

    tag = ch.basic_consume(queue, on_message)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        connection.process_data_events(0.05)
    ch.basic_cancel(tag)
    return seen[0] if seen else None


def test_the_count_of_returns_and_the_delivery_limit_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    arguments = {**Q, "x-delivery-limit": 3, "x-dead-letter-exchange": "dlx"}
    first = _broker(data_dir).start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(first.amqp_url))
        ch = connection.channel()
        ch.confirm_delivery()
        ch.exchange_declare("dlx", "fanout", durable=True)
        ch.queue_declare("dead", durable=True)
        ch.queue_bind("dead", "dlx")
        ch.queue_declare("sync", durable=True)
        ch.queue_declare("qq", durable=True, arguments=arguments)
        ch.basic_publish("", "qq", b"m", pika.BasicProperties(headers={"a": 1}))
        gets = []
        for _ in range(2):
            method, props, _ = ch.basic_get("qq")
            assert method is not None
            gets.append((method.redelivered, props.headers))
            ch.basic_nack(method.delivery_tag, requeue=True)
        _sync_point(ch)
        connection.close()  # nothing is unacked: the close returns nothing
        assert first.stop(signal.SIGKILL) == -9
    finally:
        first.stop()
    second = _broker(data_dir).start()
    try:
        connection = pika.BlockingConnection(pika.URLParameters(second.amqp_url))
        ch = connection.channel()
        ch.confirm_delivery()
        method, props, _ = ch.basic_get("qq")
        assert method is not None
        got = (method.redelivered, props.headers)
        ch.basic_nack(method.delivery_tag, requeue=True)  # the third return
        _sync_point(ch)
        connection.close()
        assert second.stop(signal.SIGKILL) == -9
    finally:
        second.stop()
    with _broker(data_dir) as third:
        connection = pika.BlockingConnection(pika.URLParameters(third.amqp_url))
        ch = connection.channel()
        last = _first_delivery(connection, ch, "qq")
        ch.basic_nack(1, requeue=True)  # the fourth return: past the limit
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ch.queue_declare("dead", passive=True).method.message_count:
                break
            connection.process_data_events(0.05)
        method, props, body = ch.basic_get("dead", auto_ack=True)
        assert method is not None
        death = props.headers["x-death"][0]
        assert (gets, got, last) == (
            [(False, {"a": 1, "x-delivery-count": 0}), (True, {"a": 1, "x-delivery-count": 1})],
            (True, {"a": 1, "x-delivery-count": 2}),
            (True, {"a": 1, "x-delivery-count": 3}),
        )
        assert (
            body,
            "x-delivery-count" in props.headers,
            props.headers["x-first-death-reason"],
            (death["queue"], death["reason"], death["count"]),
            ch.queue_declare("qq", durable=True, arguments=arguments).method.message_count,
        ) == (b"m", False, "delivery_limit", ("qq", "delivery_limit", 1), 0)
        connection.close()


def test_a_clean_stop_counts_a_delivery_held_unacked_as_a_return(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _broker(data_dir) as first:
        connection = pika.BlockingConnection(pika.URLParameters(first.amqp_url))
        ch = connection.channel()
        ch.confirm_delivery()
        ch.queue_declare("qq", durable=True, arguments=Q)
        ch.basic_publish("", "qq", b"m")
        method, props, _ = ch.basic_get("qq")
        assert method is not None
        held = props.headers
        assert first.stop() == 0  # closes the connection: the held delivery comes back
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            connection.process_data_events(10)
    with _broker(data_dir) as second:
        connection = pika.BlockingConnection(pika.URLParameters(second.amqp_url))
        ch = connection.channel()
        method, props, _ = ch.basic_get("qq", auto_ack=True)
        assert method is not None
        assert (held, method.redelivered, props.headers) == (
            {"x-delivery-count": 0},
            True,
            {"x-delivery-count": 1},
        )
        connection.close()
