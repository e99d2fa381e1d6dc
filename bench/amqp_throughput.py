"""Cases 1 and 2: transient 16-byte messages, 1 publisher -> 1 queue -> 1 consumer.

The publisher (this process) sends pre-encoded basic.publish frames, ``--batch``
messages per socket.sendall. The consumer runs in another process and counts
basic.deliver frames with a minimal frame walker; in ack mode it sets a prefetch and
sends one pre-encoded basic.ack(multiple) every ``--ack-every`` deliveries.

The end-to-end rate is measured at the consumer, from its first to its last message.

    .venv/bin/python bench/amqp_throughput.py --target rabbitmq --messages 200000
    .venv/bin/python bench/amqp_throughput.py --target rabbitmq --ack
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from typing import Any

from amqp_raw import (
    RawConnection,
    encode_ack,
    encode_publish,
    end_round,
    scan_deliveries,
    unique_queue,
    wait_reply,
)
from targets import TARGETS, Target, open_target

BODY = b"0123456789abcdef"  # 16 bytes


def _consume(
    host: str,
    port: int,
    queue: str,
    n: int,
    ack: bool,
    prefetch: int,
    ack_every: int,
    timeout_s: float,
    nap_s: float,
    pipe: Connection,
) -> None:
    try:
        pipe.send(
            _consume_inner(host, port, queue, n, ack, prefetch, ack_every, timeout_s, nap_s, pipe)
        )
    except BaseException as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def _consume_inner(
    host: str,
    port: int,
    queue: str,
    n: int,
    ack: bool,
    prefetch: int,
    ack_every: int,
    timeout_s: float,
    nap_s: float,
    pipe: Connection,
) -> dict[str, Any]:
    conn = RawConnection.open(host, port)
    try:
        if ack:
            conn.basic_qos(prefetch)
        conn.basic_consume(queue, "bench", no_ack=not ack)
        pipe.send("ready")
        sock = conn.sock
        sock.settimeout(1.0)
        buf = conn.buf
        count = 0
        acked = 0
        last_tag = 0
        first_ns = last_ns = 0
        next_ack = ack_every
        deadline = time.monotonic() + timeout_s
        recv_calls = 0
        cpu0 = time.process_time()
        while count < n:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                if time.monotonic() > deadline:
                    break
                continue
            now = time.monotonic_ns()
            if not chunk:
                raise ConnectionError("broker closed the consumer connection")
            recv_calls += 1
            if nap_s and len(chunk) < 65536:
                # Let small reads pile up into larger ones: fewer syscalls, less CPU
                # taken from the broker on a small machine.
                time.sleep(nap_s)
            buf += chunk
            used, got, tag = scan_deliveries(buf)
            del buf[:used]
            if got:
                if not count:
                    first_ns = now
                count += got
                last_ns = now
                last_tag = tag
                if ack and last_tag >= next_ack:
                    sock.sendall(encode_ack(last_tag, True))
                    acked = last_tag
                    next_ack = last_tag - last_tag % ack_every + ack_every
            if recv_calls & 63 == 0 and time.monotonic() > deadline:
                break
        if ack and last_tag > acked:
            sock.sendall(encode_ack(last_tag, True))
        return {
            "received": count,
            "first_ns": first_ns,
            "last_ns": last_ns,
            "recv_calls": recv_calls,
            "cpu_s": time.process_time() - cpu0,
        }
    finally:
        conn.sock.settimeout(5.0)
        conn.close()


def run(
    target: Target,
    *,
    messages: int = 200_000,
    ack: bool = False,
    prefetch: int = 1000,
    ack_every: int = 100,
    batch: int = 1000,
    timeout_s: float = 120.0,
    nap_us: int = 0,
) -> dict[str, Any]:
    """One throughput run; returns the figures as a dict."""
    queue = unique_queue("ack" if ack else "noack")
    admin = RawConnection.open(target.host, target.port)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_consume,
        args=(
            target.host,
            target.port,
            queue,
            messages,
            ack,
            prefetch,
            ack_every,
            timeout_s,
            nap_us / 1e6,
            child,
        ),
        daemon=True,
    )
    publisher: RawConnection | None = None
    try:
        admin.queue_declare(queue)
        proc.start()
        wait_reply(parent, proc, 30, "consumer start")
        publisher = RawConnection.open(target.host, target.port)
        publisher.sock.settimeout(timeout_s)
        one = encode_publish(publisher.channel, "", queue, BODY)
        block = one * batch
        full, rest = divmod(messages, batch)
        sendall = publisher.sock.sendall
        pub_deadline = time.monotonic() + timeout_s
        cpu0 = time.process_time()
        t0 = time.monotonic_ns()
        for i in range(full):
            sendall(block)
            if i & 15 == 0 and time.monotonic() > pub_deadline:
                raise TimeoutError("publishing did not finish in time")
        if rest:
            sendall(one * rest)
        t1 = time.monotonic_ns()
        pub_cpu_s = time.process_time() - cpu0
        res = wait_reply(parent, proc, timeout_s + 10, "consumer")
        proc.join(10)
        received = res["received"]
        span_s = (res["last_ns"] - res["first_ns"]) / 1e9
        return {
            "case": "throughput-ack" if ack else "throughput-noack",
            "target": target.name,
            "messages": messages,
            "received": received,
            "publish_rate": messages / ((t1 - t0) / 1e9),
            "consume_rate": (received - 1) / span_s if span_s > 0 and received > 1 else 0.0,
            # Cross-check that bursty delivery cannot flatter: publish start to last delivery.
            "publish_to_last_rate": received / ((res["last_ns"] - t0) / 1e9)
            if res["last_ns"] > t0
            else 0.0,
            "first_delivery_after_publish_start_ms": (res["first_ns"] - t0) / 1e6,
            "drain_after_last_publish_ms": (res["last_ns"] - t1) / 1e6,
            "consumer_recv_calls": res["recv_calls"],
            # CPU seconds the load generator spent, against the wall time it ran:
            # well under 1.0 means it was not the bottleneck.
            "consumer_cpu_per_wall": res["cpu_s"] / span_s if span_s > 0 else None,
            "publisher_cpu_per_wall": pub_cpu_s / ((t1 - t0) / 1e9),
            "ack": ack,
            "prefetch": prefetch if ack else None,
            "ack_every": ack_every if ack else None,
            "consumer_nap_us": nap_us,
        }
    finally:
        end_round(proc, publisher, admin, queue)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=TARGETS, default="rabbitmq")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--ack", action="store_true", help="manual acks (case 2)")
    p.add_argument("--prefetch", type=int, default=1000)
    p.add_argument("--ack-every", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000, help="messages per sendall")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument(
        "--nap-us", type=int, default=0, help="consumer sleeps this long after a small read"
    )
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    with open_target(a.target, a.backend) as target:
        res = run(
            target,
            messages=a.messages,
            ack=a.ack,
            prefetch=a.prefetch,
            ack_every=a.ack_every,
            batch=a.batch,
            timeout_s=a.timeout,
            nap_us=a.nap_us,
        )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
