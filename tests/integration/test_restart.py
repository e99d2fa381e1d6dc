"""Durable topology survives a restart of ``rapidmq serve`` on the same RocksDB data dir.

Metadata writes are synced before the client's declare-ok, so SIGKILL loses
nothing a client was told about, just as a graceful SIGTERM does.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from rapidmq.testing import BrokerProcess

DQ_ARGS = {"x-max-length": 100, "x-message-ttl": 60_000, "x-dead-letter-exchange": "dlx"}
HEADERS_ARGS = {"x-match": "all", "kind": "report", "level": 3}
_RECOVERED = re.compile(
    r"recovered (\d+) vhosts, (\d+) users, (\d+) exchanges, (\d+) queues, (\d+) bindings, "
    r"\d+ policies in \d+ ms"
)


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir))


def _channel(broker: BrokerProcess) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    return connection, connection.channel()


def _refusal(
    channel: BlockingChannel, action: str, *args: object, **kwargs: object
) -> tuple[int, str]:
    """The (reply code, reply text) a channel is closed with."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as exc:
        getattr(channel, action)(*args, **kwargs)
    return (exc.value.reply_code, exc.value.reply_text)


def _recovered(broker: BrokerProcess) -> tuple[int, ...]:
    for line in broker.output:
        found = _RECOVERED.search(line)
        if found:
            return tuple(int(n) for n in found.groups())
    raise AssertionError("no recovery line in:\n" + "\n".join(broker.output))


def _drain(channel: BlockingChannel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_durable_topology_survives_restart_and_transient_does_not(
    data_dir: Path, stop_signal: signal.Signals
) -> None:
    first = _broker(data_dir).start()
    try:
        assert _recovered(first) == (0, 0, 0, 0, 0)
        connection, ch = _channel(first)
        ch.exchange_declare("dx", "topic", durable=True)
        ch.exchange_declare("dx2", "fanout", durable=True)
        ch.exchange_declare("hx", "headers", durable=True)
        ch.exchange_declare("tx", "direct")
        ch.queue_declare("dq", durable=True, arguments=DQ_ARGS)
        ch.queue_declare("eq", durable=True)
        ch.queue_declare("hq", durable=True)
        ch.queue_declare("tq")
        ch.queue_declare("", exclusive=True, durable=True)
        ch.queue_bind("dq", "dx", "a.*")
        ch.exchange_bind("dx2", "dx", "b.#")
        ch.queue_bind("eq", "dx2")
        ch.queue_bind("hq", "hx", arguments=HEADERS_ARGS)
        ch.queue_bind("tq", "dx", "#")
        ch.queue_bind("dq", "tx", "t")
        connection.close()
        assert first.stop(stop_signal) == (0 if stop_signal == signal.SIGTERM else -9)
    finally:
        first.stop()

    with _broker(data_dir) as second:
        assert _recovered(second) == (1, 1, 3, 3, 4)
        connection, ch = _channel(second)
        for exchange in ("dx", "dx2", "hx"):
            ch.exchange_declare(exchange, passive=True)
        for queue in ("dq", "eq", "hq"):
            assert ch.queue_declare(queue, passive=True).method.message_count == 0
        ch.queue_declare("dq", durable=True, arguments=DQ_ARGS)
        ch.exchange_declare("dx", "topic", durable=True)
        assert _refusal(ch, "exchange_declare", "tx", passive=True) == (
            404,
            "NOT_FOUND - no exchange 'tx' in vhost '/'",
        )
        ch = connection.channel()
        assert _refusal(ch, "queue_declare", "tq", passive=True) == (
            404,
            "NOT_FOUND - no queue 'tq' in vhost '/'",
        )
        ch = connection.channel()
        assert _refusal(
            ch, "queue_declare", "dq", durable=True, arguments={**DQ_ARGS, "x-max-length": 5}
        ) == (
            406,
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'dq' in vhost '/': "
            "received '5' but current is '100'",
        )
        ch = connection.channel()
        ch.basic_publish("dx", "a.one", b"to dq")
        ch.basic_publish("dx", "b.two", b"to eq")
        ch.basic_publish("hx", "", b"report", pika.BasicProperties(headers=HEADERS_ARGS))
        ch.basic_publish("hx", "", b"other", pika.BasicProperties(headers={"kind": "report"}))
        assert (_drain(ch, "dq"), _drain(ch, "eq"), _drain(ch, "hq")) == (
            [b"to dq"],
            [b"to eq"],
            [b"report"],
        )
        connection.close()


def test_deletions_survive_restart(data_dir: Path) -> None:
    with _broker(data_dir) as first:
        connection, ch = _channel(first)
        ch.exchange_declare("kept", "direct", durable=True)
        ch.exchange_declare("gone", "direct", durable=True)
        ch.queue_declare("q", durable=True)
        ch.queue_declare("deleted", durable=True)
        ch.queue_bind("q", "kept", "k1")
        ch.queue_bind("q", "kept", "k2")
        ch.queue_bind("q", "gone", "k")
        ch.queue_bind("deleted", "kept", "k1")
        ch.queue_unbind("q", "kept", "k2")
        ch.exchange_delete("gone")
        ch.queue_delete("deleted")
        connection.close()

    with _broker(data_dir) as second:
        assert _recovered(second) == (1, 1, 1, 1, 1)
        connection, ch = _channel(second)
        assert _refusal(ch, "exchange_declare", "gone", passive=True)[0] == 404
        ch = connection.channel()
        assert _refusal(ch, "queue_declare", "deleted", passive=True)[0] == 404
        ch = connection.channel()
        for key in ("k1", "k2"):
            ch.basic_publish("kept", key, key.encode())
        assert _drain(ch, "q") == [b"k1"]
        connection.close()


def test_users_and_their_password_hashes_survive_restart(data_dir: Path) -> None:
    # The first start creates its default user; later starts find users in the store
    # and create none, as RabbitMQ creates guest only on first boot.
    first = BrokerProcess(
        "--bind",
        "127.0.0.1",
        "--default-user",
        "alice",
        "--default-pass",
        "s3cret",
        data_dir=str(data_dir),
    ).start()
    first.stop(signal.SIGKILL)
    second = BrokerProcess(
        "--bind",
        "127.0.0.1",
        "--default-user",
        "bob",
        "--default-pass",
        "other",
        data_dir=str(data_dir),
    ).start()
    try:
        port = second.amqp_port
        alice = pika.BlockingConnection(
            pika.ConnectionParameters(
                "127.0.0.1", port, "/", pika.PlainCredentials("alice", "s3cret")
            )
        )
        alice.close()
        for user, password in (("bob", "other"), ("alice", "wrong")):
            params = pika.ConnectionParameters(
                "127.0.0.1", port, "/", pika.PlainCredentials(user, password)
            )
            with pytest.raises(pika.exceptions.ProbableAuthenticationError):
                pika.BlockingConnection(params)
        assert _recovered(second)[1] == 1  # one user: alice
    finally:
        second.stop()


def test_vhosts_survive_restart(data_dir: Path) -> None:
    # The first start creates its default vhost; later starts restore the stored ones
    # and create no other, as RabbitMQ does.
    first = BrokerProcess(
        "--bind", "127.0.0.1", "--default-vhost", "prod", data_dir=str(data_dir)
    ).start()
    first.stop(signal.SIGKILL)
    second = BrokerProcess(
        "--bind", "127.0.0.1", "--default-vhost", "staging", data_dir=str(data_dir)
    ).start()
    try:
        port = second.amqp_port
        credentials = pika.PlainCredentials("guest", "guest")
        prod = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", port, "prod", credentials)
        )
        prod.channel().queue_declare("in-prod")
        prod.close()
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            pika.BlockingConnection(
                pika.ConnectionParameters("127.0.0.1", port, "staging", credentials)
            )
        assert _recovered(second)[0] == 1  # one vhost: prod
    finally:
        second.stop()
