"""AMQPS against plaintext AMQP: the same publisher and consumer, over TLS and without.

One ``rapidmq serve`` runs with both listeners (a throwaway CA and server
certificate are made with ``openssl`` for the run). Each round publishes
``--messages`` transient messages of ``--size`` bytes through one connection,
pre-encoded and sent ``--batch`` at a time, to one queue, and a consumer in
another process counts the deliveries (no-ack): first plaintext, then TLS,
repeated ``--repeats`` times so that both see the same machine. The rate is
measured at the consumer, from its first to its last delivery; the report gives
the median of each and their ratio (the target is at least 0.7).

On a shared machine the rates move with whatever else runs, so the broker's own
CPU time per message (user + system, from /proc/PID/stat) is reported too:
``cpu_ratio`` (plaintext CPU per message / TLS CPU per message) is the
throughput ratio a broker-bound run would show, and it barely depends on load.

The local RabbitMQ is measured too when it listens for AMQPS on 5671 with a
certificate the given ``--rabbitmq-ca`` signs; otherwise that column is skipped.

    .venv/bin/python bench/amqps_bench.py --messages 300000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from amqp_raw import (
    RawConnection,
    encode_publish,
    end_round,
    scan_deliveries,
    unique_queue,
    wait_reply,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rapidmq.testing import BrokerProcess
from tests.tls_support import make_pki

HOST = "127.0.0.1"
RABBITMQ_AMQPS_PORT = 5671


class TLSSocket:
    """A blocking TLS client socket that reads like the broker does: big reads, all records.

    ``ssl.SSLSocket.recv`` returns one 16 KiB record per call and OpenSSL reads each
    record with two system calls, so a consumer on it spends several times the CPU of
    a plaintext one and, on a small machine, takes that CPU from the broker: the
    benchmark would measure the client.  This wraps an ``ssl.SSLObject`` on memory
    BIOs around the plain socket instead (the same approach as the broker's
    transport): one ``recv(1 MiB)`` system call, then every complete record
    decrypted; ``sendall`` encrypts everything and sends it in one call.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
        self.raw = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_hostname=hostname)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self._out.pending:
                    sock.sendall(self._out.read())
                data = sock.recv(1 << 20)
                if not data:
                    raise ConnectionError(
                        "the broker closed the connection in the handshake"
                    ) from None
                self._in.write(data)
        if self._out.pending:
            sock.sendall(self._out.read())

    def _plaintext(self) -> bytes:
        parts = []
        while True:
            try:
                part = self._tls.read(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not part:
                break
            parts.append(part)
        return b"".join(parts)

    def recv(self, size: int) -> bytes:
        while True:
            data = self._plaintext()
            if data:
                return data
            raw = self.raw.recv(size)
            if not raw:
                return b""
            self._in.write(raw)

    def sendall(self, data: bytes) -> None:
        self._tls.write(data)
        self.raw.sendall(self._out.read())

    def settimeout(self, value: float | None) -> None:
        self.raw.settimeout(value)

    def gettimeout(self) -> float | None:
        return self.raw.gettimeout()

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()


class TLSRawConnection(RawConnection):
    """The benchmarks' raw AMQP client on TLS."""

    def __init__(self, host: str, port: int, *, cafile: str, **kw: Any) -> None:
        super().__init__(host, port, **kw)
        context = ssl.create_default_context(cafile=cafile)
        self.sock = TLSSocket(self.sock, context, "localhost")  # type: ignore[assignment]


def _open(port: int, cafile: str | None) -> RawConnection:
    if cafile is None:
        return RawConnection.open(HOST, port)
    return TLSRawConnection.open(HOST, port, cafile=cafile)


def _consume(port: int, cafile: str | None, queue: str, n: int, pipe: Connection) -> None:
    try:
        conn = _open(port, cafile)
        try:
            conn.basic_consume(queue, "bench", no_ack=True)
            pipe.send("ready")
            sock = conn.sock
            sock.settimeout(1.0)
            buf = conn.buf
            count = 0
            first_ns = last_ns = 0
            deadline = time.monotonic() + 120.0
            cpu0 = time.process_time()
            while count < n and time.monotonic() < deadline:
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                now = time.monotonic_ns()
                if not chunk:
                    raise ConnectionError("broker closed the consumer connection")
                buf += chunk
                used, got, _tag = scan_deliveries(buf)
                del buf[:used]
                if got:
                    if not count:
                        first_ns = now
                    count += got
                    last_ns = now
            pipe.send(
                {
                    "received": count,
                    "first_ns": first_ns,
                    "last_ns": last_ns,
                    "cpu_s": time.process_time() - cpu0,
                }
            )
        finally:
            conn.sock.settimeout(5.0)
            conn.close()
    except BaseException as exc:
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(
    port: int, cafile: str | None, *, messages: int, size: int, batch: int, pid: int
) -> dict[str, Any]:
    """One round: publish ``messages`` and return the consumer's rate."""
    queue = unique_queue("amqps" if cafile else "amqp")
    admin = _open(port, cafile)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_consume, args=(port, cafile, queue, messages, child), daemon=True)
    publisher: RawConnection | None = None
    try:
        admin.queue_declare(queue)
        proc.start()
        wait_reply(parent, proc, 30, "consumer start")
        publisher = _open(port, cafile)
        publisher.sock.settimeout(120.0)
        one = encode_publish(publisher.channel, "", queue, b"x" * size)
        full, rest = divmod(messages, batch)
        block = one * batch
        sendall = publisher.sock.sendall
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic_ns()
        for _ in range(full):
            sendall(block)
        if rest:
            sendall(one * rest)
        t1 = time.monotonic_ns()
        res = wait_reply(parent, proc, 130, "consumer")
        broker_cpu_s = cpu_seconds(pid) - cpu0
        proc.join(10)
        span_s = (res["last_ns"] - res["first_ns"]) / 1e9
        return {
            "tls": cafile is not None,
            "broker_cpu_us_per_msg": broker_cpu_s / messages * 1e6,
            "received": res["received"],
            "consume_rate": (res["received"] - 1) / span_s if span_s > 0 else 0.0,
            "publish_rate": messages / ((t1 - t0) / 1e9),
            "consumer_cpu_per_wall": res["cpu_s"] / span_s if span_s > 0 else None,
        }
    finally:
        end_round(proc, publisher, admin, queue)


def _pair(
    plain_port: int, tls_port: int, cafile: str, args: argparse.Namespace, pid: int | None
) -> dict[str, Any]:
    plain: list[float] = []
    tls: list[float] = []
    plain_cpu: list[float] = []
    tls_cpu: list[float] = []
    for _ in range(args.repeats):
        for port, ca, out, cpu in (
            (plain_port, None, plain, plain_cpu),
            (tls_port, cafile, tls, tls_cpu),
        ):
            res = run_once(
                port,
                ca,
                messages=args.messages,
                size=args.size,
                batch=args.batch,
                pid=pid or os.getpid(),
            )
            if res["received"] != args.messages:
                raise RuntimeError(f"lost messages: {res}")
            out.append(res["consume_rate"])
            cpu.append(res["broker_cpu_us_per_msg"])
    p, t = statistics.median(plain), statistics.median(tls)
    report: dict[str, Any] = {
        "plaintext_rates": [round(r) for r in plain],
        "tls_rates": [round(r) for r in tls],
        "plaintext_median": round(p),
        "tls_median": round(t),
        "ratio": round(t / p, 3) if p else None,
    }
    if pid is not None:
        pc, tc = statistics.median(plain_cpu), statistics.median(tls_cpu)
        report["plaintext_broker_cpu_us_per_msg"] = round(pc, 3)
        report["tls_broker_cpu_us_per_msg"] = round(tc, 3)
        report["cpu_ratio"] = round(pc / tc, 3) if tc else None
    return report


def _rabbitmq_has_tls(cafile: str | None) -> bool:
    if cafile is None:
        return False
    try:
        with socket.create_connection((HOST, RABBITMQ_AMQPS_PORT), timeout=1.0) as sock:
            context = ssl.create_default_context(cafile=cafile)
            with context.wrap_socket(sock, server_hostname="localhost"):
                return True
    except (OSError, ssl.SSLError):
        return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=300_000)
    p.add_argument("--size", type=int, default=16, help="message body bytes")
    p.add_argument("--batch", type=int, default=1000, help="messages per sendall")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    p.add_argument("--rabbitmq-ca", default=None, help="CA of the local RabbitMQ's certificate")
    a = p.parse_args()
    report: dict[str, Any] = {"messages": a.messages, "size": a.size, "batch": a.batch}
    with tempfile.TemporaryDirectory(prefix="rapidmq-amqps-bench-") as tmp:
        pki = make_pki(Path(tmp) / "pki")
        broker = BrokerProcess(
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--storage",
            "memory",
            backend=a.backend,
        )
        with broker:
            assert broker.amqp_port is not None and broker.amqps_port is not None
            assert broker.proc is not None
            report["rapidmq"] = _pair(
                broker.amqp_port, broker.amqps_port, str(pki.ca), a, broker.proc.pid
            )
    if _rabbitmq_has_tls(a.rabbitmq_ca):
        assert a.rabbitmq_ca is not None
        report["rabbitmq"] = _pair(5672, RABBITMQ_AMQPS_PORT, a.rabbitmq_ca, a, None)
    else:
        report["rabbitmq"] = "skipped: no AMQPS listener on 127.0.0.1:5671 (or no --rabbitmq-ca)"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
