"""A stream of 1,000,000 messages across a SIGKILL: every confirmed message is there,
and three readers resume exactly where they stopped.

pika publishes the million small messages (body = the number) on one channel, then a
marker on a confirm channel of the same connection: the broker handles a
connection's publishes in order and its group commit syncs batches in order, so
the marker's confirm covers every message before it.  Three pika consumers read
from different offsets (first, the middle, the end) with manual acks and keep
their place (last acked offset); the broker is SIGKILLed under them, restarted on
the same data dir, and each reader resumes from its last acked offset + 1.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import pika_parameters

from rapidmq.testing import BrokerProcess

pytestmark = pytest.mark.slow

MESSAGES = 1_000_000
STREAM = {"x-queue-type": "stream"}
READ_DEADLINE_S = 30.0


@pytest.fixture
def watchdog_s() -> float:
    return 120.0


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess(
        "--bind", "127.0.0.1", "--http-port", "off", "--mqtt-port", "off", data_dir=str(data_dir)
    )


def _connect(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika_parameters(broker.amqp_url))


class Reader:
    """A pika consumer that acks what it reads and remembers its place."""

    def __init__(self, broker: BrokerProcess, start: Any) -> None:
        self.connection = _connect(broker)
        channel = self.connection.channel()
        channel.basic_qos(prefetch_count=500)
        self.read: list[tuple[int, bytes]] = []
        self.last_acked: int | None = None
        self._channel = channel
        channel.basic_consume("s", self._on_message, arguments={"x-stream-offset": start})

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        offset = props.headers["x-stream-offset"]
        self.read.append((offset, body))
        if len(self.read) % 100 == 0:
            channel.basic_ack(method.delivery_tag, multiple=True)
            self.last_acked = offset

    def until(self, count: int) -> Reader:
        deadline = time.monotonic() + READ_DEADLINE_S
        while len(self.read) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)
        return self

    def abandon(self) -> None:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            self.connection.close()


def _expected(start: int, count: int) -> list[tuple[int, bytes]]:
    return [(i, b"%07d" % i) for i in range(start, start + count)]


def test_a_million_message_stream_survives_sigkill_and_readers_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _broker(data_dir).start()
    try:
        publisher = _connect(first)
        bulk = publisher.channel()
        bulk.queue_declare("s", durable=True, arguments=STREAM)
        for i in range(MESSAGES):
            bulk.basic_publish("", "s", b"%07d" % i)
        marker = publisher.channel()
        marker.confirm_delivery()
        marker.basic_publish("", "s", b"end")  # confirmed: everything before it is synced
        readers = [Reader(first, "first"), Reader(first, 500_000), Reader(first, "last")]
        readers[0].until(20_000)
        readers[1].until(10_000)
        readers[2].until(1)
        assert first.stop(signal.SIGKILL) == -9
        for reader in readers:
            reader.abandon()
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            publisher.close()
    finally:
        first.stop()

    places = [reader.last_acked for reader in readers]
    assert readers[0].read[:20_000] == _expected(0, 20_000)
    assert readers[1].read[:10_000] == _expected(500_000, 10_000)
    assert (readers[2].read, places[2]) == ([(MESSAGES, b"end")], None)
    assert places[0] is not None and places[1] is not None

    with _broker(data_dir) as second:
        resumed = [
            Reader(second, places[0] + 1).until(20_000),
            Reader(second, places[1] + 1).until(10_000),
            Reader(second, MESSAGES - 5).until(6),
        ]
        try:
            assert resumed[0].read[:20_000] == _expected(places[0] + 1, 20_000)
            assert resumed[1].read[:10_000] == _expected(places[1] + 1, 10_000)
            assert resumed[2].read == [*_expected(MESSAGES - 5, 5), (MESSAGES, b"end")]
        finally:
            for reader in resumed:
                reader.abandon()
