"""Streams over AMQP 0-9-1: RabbitMQ's stream queue and RapidMQ's, in the same run.

Cases (1 KB bodies, raw-socket clients from amqp_raw):
  publish  one publisher in confirm mode, at most ``--window`` unconfirmed, publish
           only: confirmed messages/s (first send to last confirm), and the broker's
           peak RSS
  read     ``--read-messages`` are published with confirms first (not timed), then one
           consumer reads them from ``x-stream-offset: first`` with basic.qos
           ``--prefetch`` and one basic.ack(multiple) every ``--ack-every``:
           messages/s from the first delivery to the last, and the broker's peak RSS

RapidMQ runs as ``rapidmq serve`` on a fresh RocksDB data dir; each stream gets a
unique name and is deleted afterwards.

    .venv/bin/python bench/stream_bench.py
    .venv/bin/python bench/stream_bench.py --cases publish --publish-messages 200000
    .venv/bin/python bench/stream_bench.py --cases read --read-messages 1000000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from amqp_persistent import publish_confirmed
from amqp_raw import RawConnection, encode_ack, scan_deliveries, unique_queue
from pamqp import commands
from targets import TARGETS, Target, open_target

from rapidmq.testing import PeakResident

STREAM = {"x-queue-type": "stream"}


def declare_stream(conn: RawConnection, name: str) -> None:
    conn.rpc(
        commands.Queue.Declare(queue=name, durable=True, arguments=STREAM),
        commands.Queue.DeclareOk,
    )


def run_publish(target: Target, messages: int, window: int, timeout_s: float) -> dict[str, Any]:
    name = unique_queue("stream-publish")
    admin = RawConnection.open(target.host, target.port)
    publisher = RawConnection.open(target.host, target.port)
    try:
        declare_stream(admin, name)
        peak = PeakResident(target.pid) if target.pid else None
        result = publish_confirmed(publisher, name, messages, window, timeout_s)
        peak_bytes = peak.stop() if peak else None
        return {
            "case": "publish",
            "target": target.name,
            "messages": messages,
            "rate": messages / (result["span_ns"] / 1e9),
            "nacked": result["nacked"],
            "peak_rss_mb": None if peak_bytes is None else peak_bytes / 1e6,
        }
    finally:
        publisher.close(wait=False)
        admin.queue_delete(name)
        admin.close()


def read_first(
    conn: RawConnection, name: str, n: int, prefetch: int, ack_every: int, timeout_s: float
) -> tuple[int, int, int]:
    """Consume ``n`` deliveries from offset first; (count, first ns, last ns)."""
    conn.basic_qos(prefetch)
    conn.rpc(
        commands.Basic.Consume(
            queue=name, consumer_tag="bench", arguments={"x-stream-offset": "first"}
        ),
        commands.Basic.ConsumeOk,
    )
    sock = conn.sock
    sock.settimeout(1.0)
    buf = conn.buf
    count = first_ns = last_ns = 0
    next_ack = ack_every
    deadline = time.monotonic() + timeout_s
    while count < n and time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not chunk:
            raise ConnectionError("broker closed the consumer connection")
        now = time.monotonic_ns()
        buf += chunk
        used, got, tag = scan_deliveries(buf)
        del buf[:used]
        if got:
            first_ns = first_ns or now
            count += got
            last_ns = now
            if tag >= next_ack:
                sock.sendall(encode_ack(tag, True))
                next_ack = tag - tag % ack_every + ack_every
    return count, first_ns, last_ns


def run_read(
    target: Target, messages: int, window: int, prefetch: int, ack_every: int, timeout_s: float
) -> dict[str, Any]:
    name = unique_queue("stream-read")
    admin = RawConnection.open(target.host, target.port)
    try:
        declare_stream(admin, name)
        publisher = RawConnection.open(target.host, target.port)
        try:
            publish_confirmed(publisher, name, messages, window, timeout_s)
        finally:
            publisher.close(wait=False)
        peak = PeakResident(target.pid) if target.pid else None
        consumer = RawConnection.open(target.host, target.port)
        try:
            count, first_ns, last_ns = read_first(
                consumer, name, messages, prefetch, ack_every, timeout_s
            )
        finally:
            consumer.close(wait=False)
        peak_bytes = peak.stop() if peak else None
        span_s = (last_ns - first_ns) / 1e9
        return {
            "case": "read",
            "target": target.name,
            "messages": messages,
            "received": count,
            "rate": (count - 1) / span_s if span_s > 0 else 0.0,
            "peak_rss_mb": None if peak_bytes is None else peak_bytes / 1e6,
        }
    finally:
        admin.queue_delete(name)
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="both")
    parser.add_argument("--cases", default="publish,read")
    parser.add_argument("--publish-messages", type=int, default=200_000)
    parser.add_argument("--read-messages", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--prefetch", type=int, default=2000)
    parser.add_argument("--ack-every", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    targets = TARGETS if args.target == "both" else (args.target,)
    cases = args.cases.split(",")
    results: list[dict[str, Any]] = []
    for name in targets:
        with open_target(name) as target:
            for _ in range(args.runs):
                if "publish" in cases:
                    results.append(
                        run_publish(target, args.publish_messages, args.window, args.timeout)
                    )
                    print(json.dumps(results[-1]), flush=True)
                if "read" in cases:
                    results.append(
                        run_read(
                            target,
                            args.read_messages,
                            args.window,
                            args.prefetch,
                            args.ack_every,
                            args.timeout,
                        )
                    )
                    print(json.dumps(results[-1]), flush=True)
    print("| case | RabbitMQ msgs/s | RapidMQ msgs/s | RapidMQ / RabbitMQ |")
    print("|---|---:|---:|---:|")
    for case in cases:
        rates = {
            t: max((r["rate"] for r in results if (r["case"], r["target"]) == (case, t)), default=0)
            for t in TARGETS
        }
        ratio = rates["rapidmq"] / rates["rabbitmq"] if rates["rabbitmq"] else float("nan")
        print(f"| {case} | {rates['rabbitmq']:,.0f} | {rates['rapidmq']:,.0f} | {ratio:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
