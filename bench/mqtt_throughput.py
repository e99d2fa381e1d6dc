"""MQTT cases 1 and 2: 16-byte messages, 1 publisher -> 1 subscriber on one topic.

The publisher (this process) sends pre-encoded MQTT 3.1.1 PUBLISH packets, ``--batch``
per socket.sendall. At QoS 1 it keeps at most ``--window`` PUBLISHes un-PUBACKed (so
it never overruns the broker's receive maximum) and counts every PUBACK. The
subscriber runs in another process, walks the packets with a few byte reads and, at
QoS 1, answers every PUBLISH with a PUBACK (all of one read in one send).

The end-to-end rate is measured at the subscriber, from its first to its last message.
At QoS 0 a broker may drop messages for a subscriber that falls behind (Mosquitto
does, past max_queued_messages); the subscriber then stops after ``--idle`` seconds
without data, and the loss is reported.

    .venv/bin/python bench/mqtt_throughput.py --target mosquitto --messages 200000
    .venv/bin/python bench/mqtt_throughput.py --target rapidmq --qos 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from amqp_raw import wait_reply
from mqtt_raw import MQTTClosed, RawMQTT, encode_publish, scan_packets, unique_topic
from mqtt_targets import MQTT_TARGETS, MQTTTarget, open_mqtt_target

BODY = b"0123456789abcdef"  # 16 bytes
# Packet ids cycle through 1..PID_SPAN; a multiple of every batch size used here.
PID_SPAN = 64000


def subscriber(
    host: str,
    port: int,
    topic: str,
    qos: int,
    sockets: int,
    expected: int,
    idle_s: float,
    timeout_s: float,
    pipe: Connection,
) -> None:
    """Process entry point: ``sockets`` subscriptions to ``topic``; counts PUBLISHes
    until each socket has ``expected`` or nothing arrived for ``idle_s``."""
    try:
        pipe.send(_subscriber(host, port, topic, qos, sockets, expected, idle_s, timeout_s, pipe))
    except BaseException as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def _subscriber(
    host: str,
    port: int,
    topic: str,
    qos: int,
    sockets: int,
    expected: int,
    idle_s: float,
    timeout_s: float,
    pipe: Connection,
) -> dict[str, Any]:
    conns: list[RawMQTT] = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(sockets):
            c = RawMQTT.open(host, port, timeout=15.0)
            conns.append(c)
            granted = c.subscribe(topic, qos)
            if granted != qos:
                raise MQTTClosed(f"asked for QoS {qos}, granted {granted}")
        for c in conns:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
        counts = {c.sock.fileno(): 0 for c in conns}
        pipe.send("ready")
        total_expected = expected * sockets
        count = 0
        first_ns = last_ns = 0
        recv_calls = 0
        acks = bytearray()
        done = 0
        cpu0 = time.process_time()
        deadline = time.monotonic() + timeout_s
        select = sel.select
        while done < sockets:
            events = select(0.2)
            now = time.monotonic_ns()
            if not events:
                if count and (now - last_ns) / 1e9 > idle_s:
                    break
                if time.monotonic() > deadline:
                    break
                continue
            for key, _ in events:
                c = key.data
                try:
                    chunk = c.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise MQTTClosed("broker closed a subscriber connection")
                recv_calls += 1
                buf = c.buf
                buf += chunk
                used, got, _, _ = scan_packets(buf, acks if qos else None)
                del buf[:used]
                if acks:
                    c.sock.setblocking(True)
                    c.sock.sendall(acks)
                    c.sock.setblocking(False)
                    acks.clear()
                if got:
                    if not count:
                        first_ns = now
                    count += got
                    last_ns = now
                    fd = c.sock.fileno()
                    before = counts[fd]
                    counts[fd] = before + got
                    if before < expected <= before + got:
                        done += 1
            if recv_calls & 255 == 0 and time.monotonic() > deadline:
                break
        return {
            "received": count,
            "expected": total_expected,
            "first_ns": first_ns,
            "last_ns": last_ns,
            "recv_calls": recv_calls,
            "cpu_s": time.process_time() - cpu0,
            "min_per_socket": min(counts.values()),
            "max_per_socket": max(counts.values()),
        }
    finally:
        sel.close()
        for c in conns:
            c.close(wait=False)


def start_subscribers(
    target: MQTTTarget,
    topic: str,
    qos: int,
    processes: int,
    sockets_per_process: int,
    expected: int,
    idle_s: float,
    timeout_s: float,
) -> list[tuple[Any, Connection]]:
    ctx = mp.get_context("spawn")
    procs: list[tuple[Any, Connection]] = []
    for _ in range(processes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=subscriber,
            args=(
                target.host,
                target.port,
                topic,
                qos,
                sockets_per_process,
                expected,
                idle_s,
                timeout_s,
                child,
            ),
            daemon=True,
        )
        proc.start()
        procs.append((proc, parent))
    for proc, parent in procs:
        wait_reply(parent, proc, 60, "subscriber start")
    return procs


def stop_subscribers(procs: list[tuple[Any, Connection]]) -> None:
    for proc, _ in procs:
        if proc.is_alive():
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def publish(
    pub: RawMQTT,
    topic: str,
    messages: int,
    qos: int,
    batch: int,
    window: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Send ``messages`` PUBLISHes on ``pub``; at QoS 1 wait for every PUBACK. The
    caller keeps the connection open until the subscribers are done (some brokers drop
    what they have not routed yet when the publisher disconnects)."""
    sock = pub.sock
    sendall = sock.sendall
    deadline = time.monotonic() + timeout_s
    pubacks = 0
    cpu0 = time.process_time()
    if qos == 0:
        one = encode_publish(topic, BODY)
        block = one * batch
        full, rest = divmod(messages, batch)
        t0 = time.monotonic_ns()
        for i in range(full):
            sendall(block)
            if i & 15 == 0 and time.monotonic() > deadline:
                raise TimeoutError("publishing did not finish in time")
        if rest:
            sendall(one * rest)
        t1 = t_acked = time.monotonic_ns()
    else:
        if PID_SPAN % batch or batch > window:
            raise ValueError(f"--batch must divide {PID_SPAN} and be <= --window")
        blocks = [
            b"".join(encode_publish(topic, BODY, qos, pid) for pid in range(k + 1, k + batch + 1))
            for k in range(0, PID_SPAN, batch)
        ]
        buf = pub.buf
        sent = 0
        k = 0
        t0 = time.monotonic_ns()
        while pubacks < messages:
            if sent < messages and sent - pubacks + batch <= window:
                n = min(batch, messages - sent)
                sendall(blocks[k] if n == batch else blocks[k][: n * len(blocks[k]) // batch])
                sent += n
                k = (k + 1) % len(blocks)
                if sent == messages:
                    t1 = time.monotonic_ns()
                continue
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                raise MQTTClosed("broker closed the publisher connection")
            if chunk:
                buf += chunk
                used, _, acked, _ = scan_packets(buf)
                del buf[:used]
                pubacks += acked
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {pubacks} of {messages} PUBACKs in time")
        t_acked = time.monotonic_ns()
    return {
        "t0": t0,
        "t1": t1,
        "t_acked": t_acked,
        "pubacks": pubacks,
        "cpu_s": time.process_time() - cpu0,
    }


def summarise(
    target: MQTTTarget,
    case: str,
    messages: int,
    pub: dict[str, Any],
    subs: list[dict[str, Any]],
    subscribers: int,
) -> dict[str, Any]:
    received = sum(s["received"] for s in subs)
    firsts = [s["first_ns"] for s in subs if s["received"]]
    lasts = [s["last_ns"] for s in subs if s["received"]]
    first_ns = min(firsts) if firsts else 0
    last_ns = max(lasts) if lasts else 0
    span_s = (last_ns - first_ns) / 1e9
    t0, t1 = pub["t0"], pub["t1"]
    expected = messages * subscribers
    return {
        "case": case,
        "target": target.name,
        "messages": messages,
        "subscribers": subscribers,
        "expected": expected,
        "received": received,
        "lost_pct": 100.0 * (expected - received) / expected if expected else 0.0,
        "consume_rate": (received - 1) / span_s if span_s > 0 and received > 1 else 0.0,
        # Cross-check that bursty delivery cannot flatter: publish start to last delivery.
        "publish_to_last_rate": received / ((last_ns - t0) / 1e9) if last_ns > t0 else 0.0,
        "publish_rate": messages / ((t1 - t0) / 1e9) if t1 > t0 else 0.0,
        "pubacks": pub["pubacks"],
        "publish_to_last_puback_s": (pub["t_acked"] - t0) / 1e9,
        "first_delivery_after_publish_start_ms": (first_ns - t0) / 1e6 if first_ns else None,
        "drain_after_last_publish_ms": (last_ns - t1) / 1e6 if last_ns else None,
        "subscriber_recv_calls": sum(s["recv_calls"] for s in subs),
        # CPU seconds each load-generator process spent against the wall time it ran:
        # well under 1.0 means it was not the bottleneck.
        "subscriber_cpu_per_wall_max": max(
            (s["cpu_s"] / span_s for s in subs if span_s > 0), default=None
        ),
        "publisher_cpu_per_wall": pub["cpu_s"] / ((pub["t_acked"] - t0) / 1e9)
        if pub["t_acked"] > t0
        else None,
        "min_per_subscriber": min(s["min_per_socket"] for s in subs),
        "max_per_subscriber": max(s["max_per_socket"] for s in subs),
    }


def run(
    target: MQTTTarget,
    *,
    messages: int = 200_000,
    qos: int = 0,
    batch: int = 1000,
    window: int = 1000,
    idle_s: float = 10.0,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    """One throughput run; returns the figures as a dict."""
    if qos and batch > window:
        batch = window // 4
    topic = unique_topic(f"qos{qos}")
    procs = start_subscribers(target, topic, qos, 1, 1, messages, idle_s, timeout_s)
    conn = None
    try:
        conn = RawMQTT.open(target.host, target.port, timeout=timeout_s)
        pub = publish(conn, topic, messages, qos, batch, window, timeout_s)
        subs = [wait_reply(parent, proc, timeout_s + 30, "subscriber") for proc, parent in procs]
    finally:
        if conn is not None:
            conn.close()
        stop_subscribers(procs)
    res = summarise(target, f"qos{qos}", messages, pub, subs, 1)
    res.update({"qos": qos, "batch": batch, "window": window if qos else None})
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=MQTT_TARGETS, default="mosquitto")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--qos", type=int, choices=(0, 1), default=0)
    p.add_argument("--batch", type=int, default=None, help="PUBLISHes per sendall")
    p.add_argument("--window", type=int, default=1000, help="QoS 1 PUBLISHes un-PUBACKed")
    p.add_argument("--idle", type=float, default=10.0, help="subscriber stops after idle s")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    batch = a.batch or (1000 if a.qos == 0 else 250)
    with open_mqtt_target(a.target, a.backend) as target:
        res = run(
            target,
            messages=a.messages,
            qos=a.qos,
            batch=batch,
            window=a.window,
            idle_s=a.idle,
            timeout_s=a.timeout,
        )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
