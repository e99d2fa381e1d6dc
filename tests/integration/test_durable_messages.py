"""Persistent messages in durable queues survive restarts of ``rapidmq serve`` (RocksDB).

A publisher confirm for a persistent message routed to a durable queue goes
out only after the group commit synced it, so SIGKILL loses no confirmed
message; transient messages and non-durable queues are never stored.
"""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from rapidmq.testing import BrokerProcess

PERSISTENT = pika.BasicProperties(delivery_mode=2)
_RECOVERED = re.compile(r"recovered (\d+) messages in (\d+) queues in \d+ ms")


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir))


def _channel(broker: BrokerProcess) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    return connection, connection.channel()


def _recovered(broker: BrokerProcess) -> tuple[int, int]:
    for line in broker.output:
        found = _RECOVERED.search(line)
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError("no message recovery line in:\n" + "\n".join(broker.output))


def _close_after_kill(connection: pika.BlockingConnection) -> None:
    """Release the client's socket to a broker that was killed under it."""
    with contextlib.suppress(pika.exceptions.AMQPError):
        connection.close()


def _drain(channel: BlockingChannel, queue: str) -> list[tuple[bytes, bool]]:
    """(body, redelivered) of every ready message, acked."""
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((body, method.redelivered))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_confirmed_persistent_messages_survive_and_transient_do_not(
    data_dir: Path, stop_signal: signal.Signals
) -> None:
    first = _broker(data_dir).start()
    try:
        assert _recovered(first) == (0, 0)
        connection, ch = _channel(first)
        ch.confirm_delivery()
        ch.queue_declare("dq", durable=True)
        ch.queue_declare("other", durable=True)
        ch.queue_declare("tq")
        ch.exchange_declare("fan", "fanout", durable=True)
        ch.queue_bind("dq", "fan")
        ch.queue_bind("other", "fan")
        for i in range(50):
            ch.basic_publish("", "dq", f"p{i}".encode(), PERSISTENT)
        ch.basic_publish("", "dq", b"transient")
        ch.basic_publish("", "tq", b"persistent in a transient queue", PERSISTENT)
        ch.basic_publish(
            "fan", "", b"fanned", pika.BasicProperties(delivery_mode=2, headers={"h": 1})
        )
        ch.basic_publish("", "dq", b"last", PERSISTENT)
        connection.close()
        assert first.stop(stop_signal) == (0 if stop_signal == signal.SIGTERM else -9)
    finally:
        first.stop()

    with _broker(data_dir) as second:
        assert _recovered(second) == (53, 2)
        connection, ch = _channel(second)
        expected = [(f"p{i}".encode(), False) for i in range(50)]
        assert _drain(ch, "dq") == [*expected, (b"fanned", False), (b"last", False)]
        method, props, body = ch.basic_get("other", auto_ack=True)
        assert (body, props.delivery_mode, props.headers, method.exchange) == (
            b"fanned",
            2,
            {"h": 1},
            "fan",
        )
        ch.queue_declare("tq")  # gone with the restart, so declared anew and empty
        assert _drain(ch, "tq") == []
        connection.close()

    with _broker(data_dir) as third:
        assert _recovered(third) == (0, 0)  # the gets with auto-ack removed them


def test_unacked_come_back_redelivered_and_acked_do_not_after_kill(data_dir: Path) -> None:
    first = _broker(data_dir).start()
    try:
        connection, ch = _channel(first)
        ch.confirm_delivery()
        ch.queue_declare("work", durable=True)
        for i in range(6):
            ch.basic_publish("", "work", f"m{i}".encode(), PERSISTENT)
        consumer = connection.channel()
        tags = []
        for _ in range(4):  # delivered and not acked: marked delivered in the store
            method, _props, _body = consumer.basic_get("work", auto_ack=False)
            assert method is not None
            tags.append(method.delivery_tag)
        consumer.basic_ack(tags[0])
        consumer.basic_ack(tags[1])
        consumer.basic_nack(tags[2], requeue=False)
        # The settlements went in the same batch as a later confirmed publish.
        ch.basic_publish("", "work", b"after", PERSISTENT)
        assert first.stop(signal.SIGKILL) == -9
        _close_after_kill(connection)
    finally:
        first.stop()

    with _broker(data_dir) as second:
        assert _recovered(second) == (4, 1)
        connection, ch = _channel(second)
        assert _drain(ch, "work") == [
            (b"m3", True),
            (b"m4", False),
            (b"m5", False),
            (b"after", False),
        ]
        connection.close()


def test_purged_and_deleted_queues_lose_their_messages(data_dir: Path) -> None:
    with _broker(data_dir) as first:
        connection, ch = _channel(first)
        ch.confirm_delivery()
        ch.queue_declare("purged", durable=True)
        ch.queue_declare("deleted", durable=True)
        for queue in ("purged", "deleted"):
            ch.basic_publish("", queue, b"x", PERSISTENT)
        ch.queue_purge("purged")
        ch.queue_delete("deleted")
        ch.queue_declare("deleted", durable=True)
        ch.basic_publish("", "deleted", b"new", PERSISTENT)
        connection.close()

    with _broker(data_dir) as second:
        assert _recovered(second) == (1, 1)
        connection, ch = _channel(second)
        assert (_drain(ch, "purged"), _drain(ch, "deleted")) == ([], [(b"new", False)])
        connection.close()


def test_tx_commit_of_persistent_messages_survives_kill(data_dir: Path) -> None:
    first = _broker(data_dir).start()
    try:
        connection, ch = _channel(first)
        ch.queue_declare("txq", durable=True)
        ch.tx_select()
        ch.basic_publish("", "txq", b"a", PERSISTENT)
        ch.basic_publish("", "txq", b"b", PERSISTENT)
        ch.tx_commit()
        ch.basic_publish("", "txq", b"rolled back", PERSISTENT)
        ch.tx_rollback()
        assert first.stop(signal.SIGKILL) == -9
        _close_after_kill(connection)
    finally:
        first.stop()

    with _broker(data_dir) as second:
        connection, ch = _channel(second)
        assert _drain(ch, "txq") == [(b"a", False), (b"b", False)]
        connection.close()
