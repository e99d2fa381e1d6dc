"""Paging on a real broker process with RocksDB, driven by pika.

A transient backlog twice the memory budget is held (its bodies paged to the
store) rather than blocking its publisher until a consumer comes; a restarted
broker leaves the bodies of a long recovered queue on disk; and a recovered
message's TTL counts from its publish.
"""

from __future__ import annotations

import tempfile
import threading
import time

import pika

from rapidmq.testing import BrokerProcess, PeakResident, resident_bytes

MB = 1000**2
WATERMARK_BYTES = 150 * MB
MESSAGE_BYTES = 64 * 1024
MESSAGES = 2 * WATERMARK_BYTES // MESSAGE_BYTES  # twice the memory budget


def publish(url: str, queue: str, count: int, delivery_mode: int, *, durable: bool) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.queue_declare(queue, durable=durable)
    properties = pika.BasicProperties(delivery_mode=delivery_mode)
    filler = b"x" * (MESSAGE_BYTES - 4)
    for i in range(count):
        channel.basic_publish("", queue, i.to_bytes(4, "big") + filler, properties)
    channel.queue_declare(queue, passive=True)  # a round trip: everything was read
    conn.close()


def drain_in_order(url: str, queue: str, count: int) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=100)
    got = 0
    for method, _properties, body in channel.consume(queue, inactivity_timeout=15):
        if method is None:
            break
        assert len(body) == MESSAGE_BYTES
        assert int.from_bytes(body[:4], "big") == got
        got += 1
        if got % 50 == 0 or got == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if got == count:
            break
    channel.cancel()
    conn.close()
    return got


def test_transient_backlog_of_twice_the_budget_is_paged_without_a_consumer() -> None:
    with BrokerProcess("--memory-high-watermark", "150MB") as broker:
        assert broker.proc is not None
        peak = PeakResident(broker.proc.pid)
        done = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                publish(broker.amqp_url, "backlog", MESSAGES, 1, durable=False)
            except BaseException as err:  # reported below
                errors.append(err)
            done.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # No consumer: paging alone must let the whole backlog in.
        assert done.wait(90), "the publisher stayed blocked"
        assert errors == []
        assert drain_in_order(broker.amqp_url, "backlog", MESSAGES) == MESSAGES
        assert peak.stop() < 1.2 * WATERMARK_BYTES


def test_restart_with_a_long_persistent_queue_keeps_bodies_on_disk() -> None:
    with tempfile.TemporaryDirectory(prefix="rapidmq-paging-") as data_dir:
        with BrokerProcess("--memory-high-watermark", "150MB", data_dir=data_dir) as broker:
            publish(broker.amqp_url, "long", MESSAGES, 2, durable=True)
        # A large watermark: nothing pages at run time, only recovery keeps bodies out.
        with BrokerProcess("--memory-high-watermark", "8GB", data_dir=data_dir) as broker:
            assert broker.proc is not None
            after_ready = resident_bytes(broker.proc.pid)
            assert after_ready < 0.4 * MESSAGES * MESSAGE_BYTES
            assert drain_in_order(broker.amqp_url, "long", MESSAGES) == MESSAGES


def test_a_recovered_message_ttl_counts_from_its_publish() -> None:
    with tempfile.TemporaryDirectory(prefix="rapidmq-paging-") as data_dir:
        with BrokerProcess(data_dir=data_dir) as broker:
            conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            channel = conn.channel()
            channel.queue_declare("ttl", durable=True)
            for body, ttl_ms in ((b"short", "4000"), (b"long", "600000")):
                channel.basic_publish(
                    "", "ttl", body, pika.BasicProperties(delivery_mode=2, expiration=ttl_ms)
                )
            channel.queue_declare("ttl", durable=True, passive=True)
            conn.close()
            published = time.monotonic()
            time.sleep(2.5)
        with BrokerProcess(data_dir=data_dir) as broker:
            # Counted from the restart, "short" would live until about 6.5 s after its publish.
            time.sleep(max(0.0, published + 5.0 - time.monotonic()))
            conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            channel = conn.channel()
            bodies = []
            while True:
                method, _properties, body = channel.basic_get("ttl", auto_ack=True)
                if method is None:
                    break
                bodies.append(body)
            conn.close()
            assert bodies == [b"long"]
