"""A stream of 1,000,000 messages across a SIGKILL: every confirmed message is there,
and three readers resume exactly where they stopped.

A raw-socket publisher in confirm mode (the benchmarks' client: pika frames one
publish in about 40 microseconds, which alone would take the minute this test may
use) sends the million small messages (body = the number) and waits until every
one is confirmed; pika then publishes a marker with a confirm.  Three pika
consumers read from different offsets (first, the middle, the last chunk) with
manual acks and keep their place (last acked offset); the broker is SIGKILLed
under them, restarted on the same data dir, and each reader resumes from its
last acked offset + 1.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import pika_parameters

from rapidmq.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from amqp_persistent import Confirms
from amqp_raw import FRAME_END_BYTE, RawConnection, encode_publish_prefix
from pamqp import commands

pytestmark = pytest.mark.slow

MESSAGES = 1_000_000
STREAM = {"x-queue-type": "stream"}
READ_DEADLINE_S = 30.0
WINDOW = 20_000  # unconfirmed publishes in flight


def publish_confirmed(port: int, count: int) -> None:
    """Publish b"%07d" % i for i in range(count) to "s" and wait for every confirm."""
    conn = RawConnection.open("127.0.0.1", port)
    try:
        conn.rpc(commands.Confirm.Select(), commands.Confirm.SelectOk)
        prefix = encode_publish_prefix(conn.channel, "", "s", 7)
        confirms = Confirms()
        sock, buf = conn.sock, conn.buf
        sock.settimeout(READ_DEADLINE_S)
        sent = 0
        while confirms.settled < count:
            if sent < count and sent - confirms.settled < WINDOW:
                upto = min(sent + 1000, count)
                sock.sendall(
                    b"".join(prefix + b"%07d" % i + FRAME_END_BYTE for i in range(sent, upto))
                )
                sent = upto
                continue
            data = sock.recv(1 << 16)
            assert data, "the broker closed the publisher"
            buf += data
            del buf[: confirms.scan(buf)]
        assert confirms.nacked == 0
    finally:
        conn.close()


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
        publisher.channel().queue_declare("s", durable=True, arguments=STREAM)
        assert first.amqp_port is not None
        publish_confirmed(first.amqp_port, MESSAGES)
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
