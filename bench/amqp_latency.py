"""Case 3: end-to-end latency at a steady publish rate (default 5,000 msgs/s for 10 s).

Each 16-byte body carries its send time (time.monotonic_ns(), CLOCK_MONOTONIC, which
is system-wide on Linux and so comparable between the publisher and the consumer
process) and a sequence number. The publisher paces itself against the clock without
spinning and stamps each message just before its sendall; the consumer (another
process, no-ack) stamps each recv and keeps receive - send for every message. The
first ``--warmup`` seconds are left out of the percentiles.

    .venv/bin/python bench/amqp_latency.py --target rabbitmq --rate 5000 --duration 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import struct
import time
from multiprocessing.connection import Connection
from typing import Any

from amqp_raw import (
    FRAME_END_BYTE,
    RawConnection,
    encode_publish_prefix,
    end_round,
    scan_timestamps,
    unique_queue,
    wait_reply,
)
from targets import TARGETS, Target, open_target

_STAMP = struct.Struct(">qq")


def _consume(host: str, port: int, queue: str, n: int, timeout_s: float, pipe: Connection) -> None:
    try:
        pipe.send(_consume_inner(host, port, queue, n, timeout_s, pipe))
    except BaseException as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def _consume_inner(
    host: str, port: int, queue: str, n: int, timeout_s: float, pipe: Connection
) -> dict[str, Any]:
    conn = RawConnection.open(host, port)
    try:
        conn.basic_consume(queue, "lat", no_ack=True)
        pipe.send("ready")
        sock = conn.sock
        sock.settimeout(0.5)
        buf = conn.buf
        sent_ns: list[int] = []
        latencies: list[int] = []
        deadline = time.monotonic() + timeout_s
        while len(latencies) < n and time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            now = time.monotonic_ns()
            if not chunk:
                raise ConnectionError("broker closed the consumer connection")
            buf += chunk
            del sent_ns[:]
            used = scan_timestamps(buf, sent_ns)
            del buf[:used]
            latencies.extend(now - s for s in sent_ns)
        return {"latencies_ns": latencies}
    finally:
        conn.sock.settimeout(5.0)
        conn.close()


def _pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    idx = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[idx] / 1e6


def run(
    target: Target,
    *,
    rate: int = 5000,
    duration_s: float = 10.0,
    warmup_s: float = 1.0,
) -> dict[str, Any]:
    total = int(rate * duration_s)
    skip = int(rate * warmup_s)
    queue = unique_queue("lat")
    admin = RawConnection.open(target.host, target.port)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    timeout_s = duration_s + 30.0
    proc = ctx.Process(
        target=_consume,
        args=(target.host, target.port, queue, total, timeout_s, child),
        daemon=True,
    )
    publisher: RawConnection | None = None
    try:
        admin.queue_declare(queue)
        proc.start()
        wait_reply(parent, proc, 30, "consumer start")
        publisher = RawConnection.open(target.host, target.port)
        publisher.sock.settimeout(10.0)
        prefix = encode_publish_prefix(publisher.channel, "", queue, _STAMP.size)
        pack = _STAMP.pack
        sendall = publisher.sock.sendall
        clock = time.monotonic_ns
        interval_ns = 1_000_000_000 / rate
        sent = 0
        sends = 0
        start = clock()
        hard_stop = start + int((duration_s + 10.0) * 1e9)
        while sent < total:
            now = clock()
            if now > hard_stop:
                raise TimeoutError("publisher fell far behind its schedule")
            due = min(total, int((now - start) / interval_ns) + 1)
            if due > sent:
                sendall(
                    b"".join(prefix + pack(now, seq) + FRAME_END_BYTE for seq in range(sent, due))
                )
                sent = due
                sends += 1
            else:
                wait_ns = start + sent * interval_ns - now
                if wait_ns > 0:
                    time.sleep(wait_ns / 1e9)
        elapsed_s = (clock() - start) / 1e9
        res = wait_reply(parent, proc, timeout_s, "consumer")
        proc.join(10)
        lat: list[int] = res["latencies_ns"]
        measured = sorted(lat[skip:])
        return {
            "case": "latency",
            "target": target.name,
            "rate_target": rate,
            "rate_achieved": sent / elapsed_s,
            "sent": sent,
            "received": len(lat),
            "measured": len(measured),
            "publisher_sendalls": sends,
            "p50_ms": _pct(measured, 0.50),
            "p99_ms": _pct(measured, 0.99),
            "p999_ms": _pct(measured, 0.999),
            "max_ms": measured[-1] / 1e6 if measured else float("nan"),
            "mean_ms": sum(measured) / len(measured) / 1e6 if measured else float("nan"),
        }
    finally:
        end_round(proc, publisher, admin, queue)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=TARGETS, default="rabbitmq")
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    with open_target(a.target, a.backend) as target:
        res = run(target, rate=a.rate, duration_s=a.duration, warmup_s=a.warmup)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
