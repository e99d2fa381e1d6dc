"""Crash recovery of persistent messages: SIGKILL the broker mid-publish, in rounds.

A pika publisher in confirm mode keeps a window of unconfirmed persistent messages
(delivery mode 2, body = the message's number) flowing into a durable queue, while a
pika consumer with manual acks takes some of them and leaves others unacked.  At a
random moment the broker is SIGKILLed; the next round restarts it on the same data
dir.  After the last round everything left in the queue is drained and checked:

- every number the broker confirmed and no consumer acked is there;
- a number is there twice only if a copy carries the redelivered flag;
- a number delivered before a crash comes back with the redelivered flag;
- nothing is there that was never published.

Unconfirmed numbers may or may not be there, and so may acked ones (an ack in flight
at the kill may not have reached the disk), but only flagged redelivered.

The kills are random but seeded: every assertion quotes the seed, and
``RAPIDMQ_CRASH_SEED=N`` replays a failing run.  The broker is always a fresh
``rapidmq serve`` subprocess, whatever ``RAPIDMQ_COMPAT_URL`` says: only a process
the test owns can be killed.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import CLIENT_TIMEOUT_S, pika_parameters
from pika.adapters.select_connection import IOLoop
from pika.spec import Basic

from rapidmq.testing import BrokerProcess

ROUNDS = 4
WINDOW = 64  # unconfirmed publishes in flight
PREFETCH = 32  # the in-round consumer's credit
HOLD_EVERY = 5  # the consumer leaves numbers divisible by this unacked (first delivery)
KILL_AFTER_S = (0.05, 0.5)  # SIGKILL this long after publishing starts
HOST = "127.0.0.1"
ROUND_DEADLINE_S = 5.0  # a round that has not seen both connections close by then fails


@pytest.fixture
def watchdog_s() -> float:
    return 30.0


@dataclass
class Ledger:
    """What the clients observed, over all rounds."""

    seed: int
    published: set[int] = field(default_factory=set)
    confirmed: set[int] = field(default_factory=set)
    nacked: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)  # basic.ack written by a consumer
    delivered: set[int] = field(default_factory=set)  # delivered before the last crash
    violations: list[str] = field(default_factory=list)
    rounds: list[str] = field(default_factory=list)

    def saw(self, number: int, redelivered: bool, where: str) -> None:
        """Check one delivery against what earlier sessions delivered."""
        if number not in self.published:
            self.violations.append(f"{where}: {number} was never published")
        if number in self.delivered and not redelivered:
            self.violations.append(
                f"{where}: {number} was delivered before a crash but came back "
                "with redelivered=False"
            )

    def context(self) -> str:
        return f"seed {self.seed} (replay with RAPIDMQ_CRASH_SEED={self.seed}); " + "; ".join(
            self.rounds
        )


class CrashRound:
    """One broker life: publish and consume on one IOLoop until the SIGKILL lands."""

    def __init__(
        self, broker: BrokerProcess, queue: str, ledger: Ledger, first: int, kill_after_s: float
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.ledger = ledger
        self.base = first - 1  # publish sequence number n carries the number base + n
        self.kill_after_s = kill_after_s
        self.ioloop = IOLoop()
        self.publisher: Any = None
        self.pub_channel: Any = None
        self.next_seq = 1
        self.unconfirmed: set[int] = set()
        self.open_connections = 0
        self.killed = False
        self.timed_out = False
        self.round_delivered: set[int] = set()
        self.deliveries = 0
        self.errors: list[str] = []

    # -- running -------------------------------------------------------------

    def run(self) -> None:
        params = pika_parameters(self.broker.amqp_url, heartbeat=0)
        for on_open in (self._publisher_open, self._consumer_open):
            pika.SelectConnection(
                params,
                on_open_callback=on_open,
                on_open_error_callback=self._open_error,
                on_close_callback=self._closed,
                custom_ioloop=self.ioloop,
            )
            self.open_connections += 1
        timeout = self.ioloop.call_later(ROUND_DEADLINE_S, self._deadline)
        self.ioloop.start()
        self.ioloop.remove_timeout(timeout)
        self.ioloop.close()

    def _deadline(self) -> None:
        self.timed_out = True
        self.ioloop.stop()

    def _open_error(self, _conn: Any, error: BaseException) -> None:
        self.errors.append(f"connection failed to open: {error!r}")
        self._closed(_conn, error)

    def _closed(self, _conn: Any, _reason: BaseException) -> None:
        self.open_connections -= 1
        if self.open_connections <= 0:
            self.ioloop.stop()

    def _kill(self) -> None:
        assert self.broker.proc is not None
        self.broker.proc.send_signal(signal.SIGKILL)
        self.killed = True

    # -- publisher -------------------------------------------------------------

    def _publisher_open(self, conn: Any) -> None:
        self.publisher = conn
        conn.channel(on_open_callback=self._publisher_channel)

    def _publisher_channel(self, channel: Any) -> None:
        self.pub_channel = channel
        channel.queue_declare(self.queue, durable=True, callback=self._publisher_declared)

    def _publisher_declared(self, _frame: Any) -> None:
        self.pub_channel.confirm_delivery(
            ack_nack_callback=self._confirm, callback=self._confirm_selected
        )

    def _confirm_selected(self, _frame: Any) -> None:
        self.ioloop.call_later(self.kill_after_s, self._kill)
        self._top_up()

    def _top_up(self) -> None:
        channel = self.pub_channel
        if channel is None or not channel.is_open:
            return
        props = pika.BasicProperties(delivery_mode=2)
        while len(self.unconfirmed) < WINDOW:
            seq = self.next_seq
            number = self.base + seq
            try:
                channel.basic_publish("", self.queue, str(number).encode(), props)
            except (pika.exceptions.AMQPError, OSError):
                return
            self.next_seq += 1
            self.unconfirmed.add(seq)
            self.ledger.published.add(number)

    def _confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        settled = (
            {s for s in self.unconfirmed if s <= tag} if method.multiple else {tag}
        ) & self.unconfirmed
        if not settled:
            self.errors.append(f"confirm for unknown or settled sequence number {tag}")
        self.unconfirmed -= settled
        numbers = {self.base + s for s in settled}
        if isinstance(method, Basic.Ack):
            self.ledger.confirmed |= numbers
        else:
            self.ledger.nacked |= numbers
        self._top_up()

    # -- consumer --------------------------------------------------------------

    def _consumer_open(self, conn: Any) -> None:
        conn.channel(on_open_callback=self._consumer_channel)

    def _consumer_channel(self, channel: Any) -> None:
        def declared(_frame: Any) -> None:
            channel.basic_qos(prefetch_count=PREFETCH, callback=qos_ok)

        def qos_ok(_frame: Any) -> None:
            channel.basic_consume(self.queue, self._message, auto_ack=False)

        channel.queue_declare(self.queue, durable=True, callback=declared)

    def _message(self, channel: Any, method: Any, _props: Any, body: bytes) -> None:
        number = int(body)
        self.deliveries += 1
        self.ledger.saw(number, bool(method.redelivered), "in-round consumer")
        if number in self.round_delivered:
            self.ledger.violations.append(f"in-round consumer: {number} delivered twice")
        self.round_delivered.add(number)
        if number % HOLD_EVERY != 0 or method.redelivered:
            channel.basic_ack(method.delivery_tag)
            self.ledger.acked.add(number)


def _broker(data_dir: Path) -> BrokerProcess:
    return BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)).start()


def _drain(broker: BrokerProcess, queue: str) -> list[tuple[int, bool]]:
    """Everything in ``queue``, as (number, redelivered), acked as it arrives."""
    conn = pika.BlockingConnection(pika_parameters(broker.amqp_url))
    try:
        channel = conn.channel()
        count = channel.queue_declare(queue, durable=True, passive=True).method.message_count
        channel.basic_qos(prefetch_count=1000)
        seen: list[tuple[int, bool]] = []
        for method, _props, body in channel.consume(queue, inactivity_timeout=CLIENT_TIMEOUT_S):
            if method is None:
                break
            seen.append((int(body), bool(method.redelivered)))
            if len(seen) % 500 == 0 or len(seen) >= count:
                channel.basic_ack(method.delivery_tag, multiple=True)
            if len(seen) >= count:
                break
        channel.cancel()
        assert len(seen) == count, f"queue reported {count} messages, drained {len(seen)}"
        return seen
    finally:
        conn.close()


def test_confirmed_persistent_messages_survive_sigkill(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="pika")  # the kills make pika log tracebacks
    seed = int(os.environ.get("RAPIDMQ_CRASH_SEED", random.randrange(2**32)))
    print(f"crash recovery seed: {seed} (replay with RAPIDMQ_CRASH_SEED={seed})")
    rng = random.Random(seed)
    ledger = Ledger(seed)
    queue = f"compat-crash-{seed}"
    data_dir = tmp_path / "data"
    first = 1
    for n in range(1, ROUNDS + 1):
        broker = _broker(data_dir)
        kill_after_s = rng.uniform(*KILL_AFTER_S)
        crash = CrashRound(broker, queue, ledger, first, kill_after_s)
        try:
            crash.run()
        finally:
            code = broker.stop(signal.SIGKILL)
        published = crash.next_seq - 1
        ledger.rounds.append(
            f"round {n}: killed after {kill_after_s:.3f}s, "
            f"published {first}..{first + published - 1}, "
            f"{len(crash.unconfirmed)} unconfirmed at the kill, {crash.deliveries} delivered"
        )
        context = ledger.context()
        assert not crash.errors, f"{crash.errors}; {context}"
        assert not crash.timed_out, f"round {n} did not end within {ROUND_DEADLINE_S}s; {context}"
        assert crash.killed and code == -signal.SIGKILL, (
            f"round {n}: the broker exited with {code} before the kill; "
            + context
            + "\n"
            + "\n".join(list(broker.output)[-20:])
        )
        assert published > 0, f"round {n} published nothing before the kill; {context}"
        ledger.delivered |= crash.round_delivered
        first += published

    broker = _broker(data_dir)
    try:
        drained = _drain(broker, queue)
    finally:
        broker.stop()
    context = ledger.context()
    for number, redelivered in drained:
        ledger.saw(number, redelivered, "drain after the last crash")
    counts = Counter(number for number, _ in drained)
    flagged = {number for number, redelivered in drained if redelivered}
    twice = sorted(n for n, c in counts.items() if c > 1 and n not in flagged)
    lost = sorted(ledger.confirmed - ledger.acked - counts.keys())
    print(
        f"{len(ledger.published)} published, {len(ledger.confirmed)} confirmed, "
        f"{len(ledger.acked)} acked, {len(drained)} drained ({len(flagged)} redelivered); "
        + context
    )

    assert ledger.confirmed, f"no publish was confirmed in any round; {context}"
    assert not lost, (
        f"{len(lost)} confirmed, never acked messages are gone after the crashes, "
        f"e.g. {lost[:20]}; {len(drained)} drained, {len(ledger.confirmed)} confirmed; {context}"
    )
    assert not twice, f"present twice without the redelivered flag: {twice[:20]}; {context}"
    assert not ledger.violations, f"{ledger.violations[:20]}; {context}"
    assert not (ledger.nacked & ledger.confirmed), f"confirmed and nacked; {context}"
