"""Throughput of the core alone: publish -> route -> enqueue -> deliver -> ack.

    .venv/bin/python bench/core_bench.py [--messages 500000]

Runs four scenarios with a sink that only counts deliveries and prints msgs/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rapidmq.core import Broker, ClientInfo, Message, Session


class CountingSink:
    """A front end that accepts every delivery and remembers the last tag."""

    __slots__ = ("count", "last_tag")

    def __init__(self) -> None:
        self.count = 0
        self.last_tag = 0

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        self.count += 1
        self.last_tag = delivery_tag

    def consumer_cancelled(self, consumer_tag: str) -> None:
        pass

    def writable(self) -> bool:
        return True


def _session() -> tuple[Session, CountingSink]:
    broker = Broker()
    connection = broker.connect("/", ClientInfo("bench", "local", user="guest"))
    sink = CountingSink()
    return connection.open_session(sink), sink


def no_ack(n: int, exchange: str) -> float:
    session, sink = _session()
    session.declare_queue("q")
    if exchange:
        session.bind_queue("q", exchange, "q")
    session.consume("q", no_ack=True)
    message = Message(exchange, "q", b"x" * 16)
    publish = session.publish
    start = time.perf_counter()
    for _ in range(n):
        publish(message)
    elapsed = time.perf_counter() - start
    assert sink.count == n, sink.count
    return n / elapsed


def with_acks(n: int, exchange: str) -> float:
    session, sink = _session()
    session.declare_queue("q")
    if exchange:
        session.bind_queue("q", exchange, "q")
    session.set_prefetch(1000)
    session.consume("q")
    message = Message(exchange, "q", b"x" * 16)
    publish = session.publish
    ack = session.ack
    start = time.perf_counter()
    for i in range(1, n + 1):
        publish(message)
        if i % 100 == 0:
            ack(sink.last_tag, multiple=True)
    ack(0, multiple=True)
    elapsed = time.perf_counter() - start
    assert sink.count == n, sink.count
    return n / elapsed


def topic_no_ack(n: int, exchange: str) -> float:
    session, sink = _session()
    session.declare_queue("q")
    session.bind_queue("q", "amq.topic", "q.*.#")
    session.consume("q", no_ack=True)
    message = Message("amq.topic", "q.a.b", b"x" * 16)
    start = time.perf_counter()
    for _ in range(n):
        session.publish(message)
    elapsed = time.perf_counter() - start
    assert sink.count == n
    return n / elapsed


SCENARIOS: list[tuple[str, Callable[[int, str], float], str]] = [
    ("default exchange, no-ack", no_ack, ""),
    ("default exchange, prefetch 1000, multiple ack every 100", with_acks, ""),
    ("amq.direct, no-ack", no_ack, "amq.direct"),
    ("amq.direct, prefetch 1000, multiple ack every 100", with_acks, "amq.direct"),
    ("amq.topic (cached pattern), no-ack", topic_no_ack, ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500_000)
    args = parser.parse_args()
    for label, scenario, exchange in SCENARIOS:
        rate = scenario(args.messages, exchange)
        print(f"{label:60s} {rate:12,.0f} msgs/s")


if __name__ == "__main__":
    main()
