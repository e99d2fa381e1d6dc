"""Memory and disk alarms on a real broker process, driven by pika.

The broker idles at about 45 MB of resident memory; with a 150 MB watermark a
publisher sending 300 MB must be blocked (``connection.blocked``) rather than
grow the broker, and everything it sent must still be consumable, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from rapidmq.config import Settings
from rapidmq.server import Server
from rapidmq.testing import BrokerProcess, PeakResident

MB = 1000**2
WATERMARK_BYTES = 150 * MB
MESSAGE_BYTES = 64 * 1024
MESSAGES = 2 * WATERMARK_BYTES // MESSAGE_BYTES  # twice the memory budget


@dataclass
class Publisher:
    """A pika publisher in a thread, recording blocked/unblocked notifications."""

    url: str
    queue: str
    count: int
    delivery_mode: int
    sent: int = 0
    notifications: list[str] = field(default_factory=list)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.url))
            conn.add_on_connection_blocked_callback(lambda *_: self.notifications.append("blocked"))
            conn.add_on_connection_unblocked_callback(
                lambda *_: self.notifications.append("unblocked")
            )
            channel = conn.channel()
            properties = pika.BasicProperties(delivery_mode=self.delivery_mode)
            filler = b"x" * (MESSAGE_BYTES - 4)
            for i in range(self.count):
                channel.basic_publish("", self.queue, i.to_bytes(4, "big") + filler, properties)
                self.sent = i + 1
                if i % 50 == 0:
                    conn.process_data_events(0)  # deliver pika's connection callbacks
            conn.process_data_events(0)
            conn.close()
        except BaseException as err:  # reported by the test thread
            self.error = err

    def join(self, timeout_s: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"publisher stuck after {self.sent} messages"
        assert self.error is None, repr(self.error)


@pytest.fixture
def broker() -> Iterator[BrokerProcess]:
    with BrokerProcess("--memory-high-watermark", "150MB") as proc:
        yield proc


def wait_until_stalled(broker: BrokerProcess, publisher: Publisher, timeout_s: float) -> None:
    """Wait until the alarm is logged and the publisher stops making progress (or ends)."""
    deadline = time.monotonic() + timeout_s
    last = -1
    assert publisher.thread is not None
    while publisher.thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.3)
        alarmed = any("memory alarm set" in line for line in broker.output)
        if alarmed and publisher.sent == last:
            return
        last = publisher.sent


def drain_in_order(channel: BlockingChannel, queue: str, count: int) -> int:
    got = 0
    for method, _properties, body in channel.consume(queue, inactivity_timeout=15):
        if method is None:
            break
        assert len(body) == MESSAGE_BYTES
        assert int.from_bytes(body[:4], "big") == got
        got += 1
        channel.basic_ack(method.delivery_tag)
        if got == count:
            break
    channel.cancel()
    return got


def run_backlog(broker: BrokerProcess, *, durable: bool) -> Publisher:
    assert broker.proc is not None
    setup = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    setup.channel().queue_declare("backlog", durable=durable)
    setup.close()
    peak = PeakResident(broker.proc.pid)
    publisher = Publisher(broker.amqp_url, "backlog", MESSAGES, 2 if durable else 1)
    publisher.start()
    wait_until_stalled(broker, publisher, timeout_s=15)
    consumer = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = consumer.channel()
    channel.basic_qos(prefetch_count=50)
    assert drain_in_order(channel, "backlog", MESSAGES) == MESSAGES
    consumer.close()
    publisher.join(timeout_s=15)
    assert peak.stop() < 1.2 * WATERMARK_BYTES
    assert broker.proc.poll() is None
    return publisher


def test_persistent_backlog_of_twice_the_memory_budget_is_blocked_paged_and_all_consumable(
    broker: BrokerProcess,
) -> None:
    publisher = run_backlog(broker, durable=True)
    assert publisher.sent == MESSAGES
    assert "blocked" in publisher.notifications
    assert publisher.notifications[-1] == "unblocked"
    assert any("memory alarm cleared" in line for line in broker.output)


def test_transient_backlog_of_twice_the_memory_budget_is_paged_and_all_consumable(
    broker: BrokerProcess,
) -> None:
    publisher = run_backlog(broker, durable=False)
    assert publisher.sent == MESSAGES
    # Paged to the store as it comes, so a block (if any) did not last.
    assert publisher.notifications in ([], ["blocked", "unblocked"])


def test_disk_free_limit_above_free_space_blocks_the_first_publish_but_not_consumers() -> None:
    with BrokerProcess("--disk-free-limit", "1000TB") as broker:
        notifications: list[str] = []
        publisher = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        publisher.add_on_connection_blocked_callback(lambda *_: notifications.append("blocked"))
        publisher.add_on_connection_unblocked_callback(lambda *_: notifications.append("unblocked"))
        pub = publisher.channel()
        pub.queue_declare("q", durable=True)  # a connection that has not published is read
        pub.basic_publish("", "q", b"first", pika.BasicProperties(delivery_mode=2))
        deadline = time.monotonic() + 5
        while not notifications and time.monotonic() < deadline:
            publisher.process_data_events(0.1)
        assert notifications == ["blocked"]
        pub.basic_publish("", "q", b"second", pika.BasicProperties(delivery_mode=2))

        consumer = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        sub = consumer.channel()
        bodies = []
        for method, _properties, body in sub.consume("q", inactivity_timeout=1.0):
            if method is None:
                break
            bodies.append(body)
            sub.basic_ack(method.delivery_tag)
        sub.cancel()
        # The first publish was read before the block; the second waits unread.
        assert bodies == [b"first"]
        # The ack was read: after the channel closes nothing comes back.
        sub.close()
        again = consumer.channel()
        assert again.basic_get("q") == (None, None, None)
        consumer.close()
        assert any("disk alarm set" in line for line in broker.output)
        assert broker.proc is not None and broker.proc.poll() is None
        # The blocked publisher is not read, so it cannot close; stopping the broker does.
        assert broker.stop() == 0
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            publisher.process_data_events(2)


@pytest.mark.anyio
async def test_alarms_appear_in_the_server_statistics(tmp_path: Path) -> None:
    settings = Settings(
        amqp_port=0,
        mqtt_port=None,
        mqtt_ws_port=None,
        http_port=None,
        bind="127.0.0.1",
        storage="memory",
        data_dir=str(tmp_path),
        disk_free_limit="1000TB",
        memory_high_watermark="1GiB",
    )
    server = Server(settings)
    await server.start()
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        with anyio.fail_after(5):
            while not server.statistics()["alarms"]:
                await anyio.sleep(0.02)
        stats = server.statistics()
        await server.stop()
        tg.cancel_scope.cancel()
    assert (stats["alarms"], stats["memory_limit_bytes"], stats["disk_free_limit_bytes"]) == (
        ["disk"],
        1 << 30,
        1000 * 1000**4,
    )
    assert stats["queues"] == 0  # the core's figures are there too
