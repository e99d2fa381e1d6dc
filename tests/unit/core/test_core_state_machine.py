"""Random publish / consume / settle sequences never lose or duplicate a message."""

from __future__ import annotations

from collections import Counter

from core_support import FakeClock, RecordingSink, connect, msg
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rapidmq.core import Broker, Session


class QueueStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.broker = Broker(clock=self.clock, wall_clock=lambda: 0.0)
        self.client = connect(self.broker)
        admin = self.client.session
        admin.declare_queue("dead")
        admin.declare_queue(
            "q",
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "dead",
                "x-max-length": 6,
                "x-message-ttl": 50,
            },
        )
        self.sessions: list[tuple[Session, RecordingSink]] = []
        self.seen_tags: dict[int, int] = {}  # id(session) -> deliveries recorded
        self.unacked: dict[tuple[int, int], bytes] = {}  # (session index, tag) -> body
        self.settled: Counter[bytes] = Counter()  # acked, or delivered no-ack
        self.published: Counter[bytes] = Counter()
        self.counter = 0
        self.consumer_count = 0

    @property
    def queue(self):  # type: ignore[no-untyped-def]
        return self.client.connection.vhost.queues["q"]

    def _collect(self) -> None:
        for index, (session, sink) in enumerate(self.sessions):
            for event in sink.take():
                if event[0] != "deliver":
                    continue
                _, ctag, tag, _, body = event
                consumer = session.consumers.get(ctag)
                if ctag.startswith("noack"):
                    self.settled[body] += 1
                else:
                    assert consumer is None or not consumer.no_ack
                    self.unacked[(index, tag)] = body

    @rule()
    def open_session(self) -> None:
        sink = RecordingSink()
        self.sessions.append((self.client.connection.open_session(sink), sink))

    @rule(count=st.integers(1, 3))
    def publish(self, count: int) -> None:
        for _ in range(count):
            self.counter += 1
            body = str(self.counter).encode()
            self.published[body] += 1
            self.client.session.publish(msg(body))
        self._collect()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), no_ack=st.booleans(), prefetch=st.integers(0, 3))
    def consume(self, data: st.DataObject, no_ack: bool, prefetch: int) -> None:
        index = data.draw(st.integers(0, len(self.sessions) - 1))
        session, _ = self.sessions[index]
        if session.closed:
            return
        self.consumer_count += 1
        session.set_prefetch(prefetch)
        session.consume("q", f"{'noack' if no_ack else 'ack'}-{self.consumer_count}", no_ack=no_ack)
        self._collect()

    @precondition(lambda self: any(s.consumers for s, _ in self.sessions))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        tags = [(s, t) for s, _ in self.sessions for t in s.consumers]
        session, tag = data.draw(st.sampled_from(tags))
        session.cancel(tag)
        self._collect()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), no_ack=st.booleans())
    def get(self, data: st.DataObject, no_ack: bool) -> None:
        index = data.draw(st.integers(0, len(self.sessions) - 1))
        session, _ = self.sessions[index]
        if session.closed:
            return
        got = session.get("q", no_ack=no_ack)
        if got is not None:
            if no_ack:
                self.settled[got.message.body] += 1
            else:
                self.unacked[(index, got.delivery_tag)] = got.message.body
        self._collect()

    @precondition(lambda self: self.unacked)
    @rule(
        data=st.data(),
        action=st.sampled_from(["ack", "requeue", "discard"]),
        multiple=st.booleans(),
    )
    def settle(self, data: st.DataObject, action: str, multiple: bool) -> None:
        index, tag = data.draw(st.sampled_from(sorted(self.unacked)))
        session, _ = self.sessions[index]
        if multiple:
            keys = [k for k in self.unacked if k[0] == index and k[1] <= tag]
        else:
            keys = [(index, tag)]
        bodies = [self.unacked.pop(k) for k in keys]
        if action == "ack":
            session.ack(tag, multiple=multiple)
            self.settled.update(bodies)
        else:
            session.reject(tag, multiple=multiple, requeue=action == "requeue")
        self._collect()

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), recover=st.booleans())
    def close_or_recover(self, data: st.DataObject, recover: bool) -> None:
        index = data.draw(st.integers(0, len(self.sessions) - 1))
        session, _ = self.sessions[index]
        if session.closed:
            return
        for key in [k for k in self.unacked if k[0] == index]:
            del self.unacked[key]
        session.recover() if recover else session.close()
        self._collect()

    @rule(seconds=st.sampled_from([0.01, 0.05, 0.2]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.broker.tick()
        self._collect()

    @invariant()
    def every_message_is_accounted_for(self) -> None:
        queue = self.queue
        dead = self.client.connection.vhost.queues["dead"]
        assert queue.unacked_count == len(self.unacked)
        assert queue.ready_count + queue.unacked_count + sum(
            self.settled.values()
        ) + dead.ready_count == sum(self.published.values())
        assert queue.dropped == 0

    def teardown(self) -> None:
        for session, _ in self.sessions:
            session.close()
        self._collect()
        remaining: Counter[bytes] = Counter()
        admin = self.client.session
        for name in ("q", "dead"):
            while (got := admin.get(name, no_ack=True)) is not None:
                remaining[got.message.body] += 1
        assert self.settled + remaining == self.published


QueueStateMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
test_queue_state_machine = QueueStateMachine.TestCase
