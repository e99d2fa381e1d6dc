"""The management API and /metrics on a broker with many queues, and what polling them costs.

Starts ``rapidmq serve`` on free ports (rapidmq.testing.BrokerProcess), declares
``--queues`` queues through AMQP, then measures:

  1. GET /api/queues?page=1&page_size=100: median and p95 over ``--api-requests``
     (target: under 100 ms);
  2. GET /metrics: median and p95 over ``--metrics-requests`` (target: under 1 s);
  3. the broker's CPU time per poll of /api/overview and /metrics (idle broker);
  4. AMQP throughput (bench/amqp_throughput.py's publisher and consumer, transient
     16-byte messages, no-ack) for about ``--seconds`` without polling and as long
     while a monitor polls /api/overview and /metrics once a second; the cost is
     1 - polled/unpolled (target: under 5 %).  On a shared machine the run to run
     noise of this figure can exceed 5 %: use ``--rounds`` and read it with (3).

The broker serves every request on the same event loop as its AMQP traffic, so
the time a request takes there is taken from the messages: the third figure is
what a dashboard that refreshes every second costs.

    .venv/bin/python bench/admin_bench.py
    .venv/bin/python bench/admin_bench.py --queues 2000 --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import amqp_throughput
import httpx
from amqp_raw import RawConnection
from targets import HOST, Target

from rapidmq.testing import BrokerProcess

_TARGETS = {"api": 0.100, "metrics": 1.0, "cost": 0.05}


@dataclass
class Timing:
    """Latencies of one endpoint, in seconds, or why there are none."""

    path: str
    status: int | None = None
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p95(self) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def declare_queues(port: int, count: int) -> float:
    """Declare ``count`` transient queues over one AMQP connection; seconds taken."""
    started = time.perf_counter()
    conn = RawConnection.open(HOST, port)
    try:
        for i in range(count):
            conn.queue_declare(f"admin-bench-{i:05d}")
    finally:
        conn.close()
    return time.perf_counter() - started


def time_requests(client: httpx.Client, path: str, count: int) -> Timing:
    """``count`` sequential GETs of ``path`` after one warm-up request."""
    timing = Timing(path)
    try:
        first = client.get(path)
    except httpx.HTTPError as exc:
        timing.note = f"request failed: {type(exc).__name__}: {exc}"
        return timing
    timing.status = first.status_code
    if first.status_code != 200:
        timing.note = f"HTTP {first.status_code}: {first.text[:120]!r}"
        return timing
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        timing.samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            timing.note = f"HTTP {response.status_code} during the run"
            break
    return timing


class Poller:
    """Polls /api/overview and /metrics once a second, as a dashboard would, in a thread."""

    def __init__(self, base_url: str, interval_s: float = 1.0) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.polls = 0
        self.errors = 0
        self.busy_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, auth=("guest", "guest"), timeout=30.0) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                started = time.perf_counter()
                for path in ("/api/overview", "/metrics"):
                    try:
                        ok = client.get(path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    self.errors += not ok
                self.busy_s += time.perf_counter() - started
                self.polls += 1
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_poll(client: httpx.Client, pid: int, polls: int) -> float:
    """Broker CPU seconds one poll (/api/overview and /metrics) costs, on an idle broker.

    The throughput runs are noisy on a shared machine; this figure is not, and a
    poll a second can take at most this share of a saturated event loop.
    """
    before = cpu_seconds(pid)
    for _ in range(polls):
        client.get("/api/overview")
        client.get("/metrics")
    return (cpu_seconds(pid) - before) / polls


def throughput(target: Target, messages: int) -> float:
    """Messages per second at the consumer, for one no-ack run of ``messages``."""
    result: dict[str, Any] = amqp_throughput.run(target, messages=messages, ack=False)
    if result["received"] < messages:
        raise RuntimeError(f"only {result['received']} of {messages} messages arrived")
    return float(result["consume_rate"])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISSED")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--queues", type=int, default=10_000)
    p.add_argument("--api-requests", type=int, default=50)
    p.add_argument("--metrics-requests", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    p.add_argument("--rounds", type=int, default=1, help="unpolled+polled run pairs (median)")
    p.add_argument("--backend", default=None, help="RapidMQ --backend (asyncio or trio)")
    a = p.parse_args()

    with BrokerProcess(backend=a.backend) as broker:
        assert broker.amqp_port is not None and broker.http_port is not None
        assert broker.proc is not None
        base_url = f"http://{HOST}:{broker.http_port}"
        target = Target("rapidmq", HOST, broker.amqp_port, broker.proc.pid, "RapidMQ")
        print(f"declaring {a.queues} queues ...", file=sys.stderr, flush=True)
        declare_s = declare_queues(broker.amqp_port, a.queues)

        with httpx.Client(base_url=base_url, auth=("guest", "guest"), timeout=60.0) as client:
            print("timing HTTP requests ...", file=sys.stderr, flush=True)
            queues = time_requests(client, "/api/queues?page=1&page_size=100", a.api_requests)
            if queues.status == 404:
                queues.note = "/api/queues is not served by this build yet (404)"
            scrape = time_requests(client, "/metrics", a.metrics_requests)
            metrics_bytes = len(client.get("/metrics").content) if scrape.status == 200 else 0
            overview = time_requests(client, "/api/overview", a.metrics_requests)
            poll_cpu = cpu_per_poll(client, broker.proc.pid, a.metrics_requests)

        print("calibrating AMQP throughput ...", file=sys.stderr, flush=True)
        calibration = throughput(target, 100_000)
        messages = max(100_000, int(calibration * a.seconds))
        quiet: list[float] = []
        polled: list[float] = []
        polls = errors = 0
        poll_busy: list[float] = []
        for round_no in range(a.rounds):
            print(
                f"round {round_no + 1}/{a.rounds}: {messages} messages, unpolled then polled ...",
                file=sys.stderr,
                flush=True,
            )
            quiet.append(throughput(target, messages))
            with Poller(base_url) as poller:
                polled.append(throughput(target, messages))
            polls += poller.polls
            errors += poller.errors
            if poller.polls:
                poll_busy.append(poller.busy_s / poller.polls)

    quiet_rate = statistics.median(quiet)
    polled_rate = statistics.median(polled)
    ratio = polled_rate / quiet_rate if quiet_rate else 0.0
    cost = 1.0 - ratio

    rows = [
        (
            "GET /api/queues?page=1&page_size=100",
            f"median {_ms(queues.median)}, p95 {_ms(queues.p95)} (n={len(queues.samples)})",
            "< 100 ms",
            _verdict(None if queues.p95 is None else queues.p95 < _TARGETS["api"]),
        ),
        (
            "GET /metrics",
            f"median {_ms(scrape.median)}, p95 {_ms(scrape.p95)} "
            f"(n={len(scrape.samples)}, {metrics_bytes / 1e6:.1f} MB)",
            "< 1 s",
            _verdict(None if scrape.median is None else scrape.median < _TARGETS["metrics"]),
        ),
        (
            "GET /api/overview",
            f"median {_ms(overview.median)}, p95 {_ms(overview.p95)} (n={len(overview.samples)})",
            "",
            "",
        ),
        (
            "broker CPU per poll (overview + metrics, idle)",
            f"{_ms(poll_cpu)} = {poll_cpu * 100:.1f} % of a second",
            "< 5 %",
            _verdict(poll_cpu < _TARGETS["cost"]),
        ),
        ("AMQP no-ack throughput, no polling", f"{quiet_rate:,.0f} msg/s", "", ""),
        (
            "AMQP no-ack throughput, polling 1/s",
            f"{polled_rate:,.0f} msg/s ({polls} polls, {errors} errors, "
            f"{_ms(statistics.median(poll_busy) if poll_busy else None)} per poll)",
            "",
            "",
        ),
        (
            "polled / unpolled",
            f"{ratio:.3f} (cost {cost * 100:.1f} %)",
            "cost < 5 %",
            _verdict(cost < _TARGETS["cost"]),
        ),
    ]
    print()
    print(f"RapidMQ management bench: {a.queues} queues (declared in {declare_s:.1f} s)")
    print()
    print("| case | result | target | |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for timing in (queues, scrape, overview):
        if timing.note:
            print(f"\nnote: {timing.path}: {timing.note}")
    if a.rounds > 1:
        print(f"\nunpolled runs: {', '.join(f'{r:,.0f}' for r in quiet)} msg/s")
        print(f"polled runs:   {', '.join(f'{r:,.0f}' for r in polled)} msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
