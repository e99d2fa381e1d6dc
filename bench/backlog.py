"""A backlog larger than memory: messages past the memory watermark.

Publishes ``--backlog-mb`` of persistent 64 KB messages into a durable queue (with
``--transient``: transient messages into a non-durable queue) of a
RapidMQ started with ``--memory-high-watermark`` (512 MB by default), with no
consumer, sampling the broker's resident memory every 20 ms; then drains the
queue and checks every message came back in order.  The target of the storage
work: RSS never above 1.2 x the watermark for a 2 GB backlog.

    .venv/bin/python bench/backlog.py [--backlog-mb 2000] [--watermark-mb 512] [--transient]
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time

import pika

from rapidmq.testing import BrokerProcess, PeakResident

MB = 1000**2
MESSAGE_BYTES = 64 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog-mb", type=int, default=2000)
    parser.add_argument("--watermark-mb", type=int, default=512)
    parser.add_argument(
        "--transient",
        action="store_true",
        help="transient messages into a non-durable queue (paged as pages of the store)",
    )
    args = parser.parse_args()
    count = args.backlog_mb * MB // MESSAGE_BYTES
    watermark = args.watermark_mb * MB
    with tempfile.TemporaryDirectory(prefix="rapidmq-backlog-") as data_dir:
        broker = BrokerProcess(
            "--bind",
            "127.0.0.1",
            "--memory-high-watermark",
            f"{args.watermark_mb}MB",
            data_dir=data_dir,
        ).start()
        assert broker.proc is not None
        sampler = PeakResident(broker.proc.pid)
        blocked = 0
        try:
            conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))

            def on_blocked(*_: object) -> None:
                nonlocal blocked
                blocked += 1

            conn.add_on_connection_blocked_callback(on_blocked)
            ch = conn.channel()
            ch.queue_declare("backlog", durable=not args.transient)
            props = pika.BasicProperties(delivery_mode=1 if args.transient else 2)
            filler = b"x" * (MESSAGE_BYTES - 8)
            started = time.monotonic()
            for i in range(count):
                ch.basic_publish("", "backlog", struct.pack(">Q", i) + filler, props)
            conn.process_data_events(0)
            published_s = time.monotonic() - started
            ch.basic_qos(prefetch_count=200)
            expected = 0
            started = time.monotonic()
            for method, _props, body in ch.consume("backlog", inactivity_timeout=30):
                if method is None:
                    break
                number = struct.unpack_from(">Q", body)[0]
                assert number == expected, (number, expected)
                expected += 1
                if expected % 100 == 0 or expected == count:
                    ch.basic_ack(method.delivery_tag, multiple=True)
                if expected == count:
                    break
            drained_s = time.monotonic() - started
            conn.close()
        finally:
            peak = sampler.stop()
            broker.stop()
    result = {
        "messages_kind": "transient" if args.transient else "persistent",
        "backlog_mb": args.backlog_mb,
        "messages": count,
        "watermark_mb": args.watermark_mb,
        "peak_rss_mb": round(peak / MB, 1),
        "peak_over_watermark": round(peak / watermark, 3),
        "connection_blocked_notifications": blocked,
        "publish_s": round(published_s, 1),
        "drain_s": round(drained_s, 1),
        "consumed_in_order": expected,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
