"""kombu (py-amqp transport): Producer, Consumer and SimpleQueue round trips."""

from __future__ import annotations

from compat_support import Scratch
from kombu import Connection, Consumer, Exchange, Producer, Queue

DRAIN_TIMEOUT_S = 5.0


def test_producer_consumer_round_trip(scratch: Scratch) -> None:
    exchange = Exchange(scratch.exchange(), type="direct", durable=False)
    queue = Queue(scratch.queue(), exchange, routing_key="jobs", durable=False)
    received: list[tuple[object, str | None]] = []
    with Connection(scratch.url, connect_timeout=5) as conn:
        producer = Producer(conn.channel(), exchange=exchange, serializer="json")
        for i in range(5):
            producer.publish(
                {"n": i, "text": "caf\u00e9"},
                routing_key="jobs",
                declare=[queue],
                headers={"attempt": i},
            )

        def on_message(body: object, message: object) -> None:
            received.append((body, message.headers.get("attempt")))  # type: ignore[attr-defined]
            message.ack()  # type: ignore[attr-defined]

        with Consumer(conn, queues=[queue], callbacks=[on_message], accept=["json"]):
            while len(received) < 5:
                conn.drain_events(timeout=DRAIN_TIMEOUT_S)
    assert received == [({"n": i, "text": "caf\u00e9"}, i) for i in range(5)]


def test_simple_queue_put_get_ack_and_empty(scratch: Scratch) -> None:
    name = scratch.queue()
    with Connection(scratch.url, connect_timeout=5) as conn:
        sq = conn.SimpleQueue(name, queue_opts={"durable": False}, exchange_opts={"durable": False})
        try:
            sq.put({"hello": "world"}, serializer="json")
            first = sq.get(block=True, timeout=DRAIN_TIMEOUT_S)
            assert (first.payload, first.delivery_info["redelivered"]) == (
                {"hello": "world"},
                False,
            )
            first.requeue()
            again = sq.get(block=True, timeout=DRAIN_TIMEOUT_S)
            assert (again.payload, again.delivery_info["redelivered"]) == ({"hello": "world"}, True)
            again.ack()
            sq.put(b"raw-bytes", serializer=None, content_type="application/data")
            raw = sq.get(block=True, timeout=DRAIN_TIMEOUT_S)
            assert (raw.body, raw.content_type) == (b"raw-bytes", "application/data")
            raw.ack()
            try:
                sq.get(block=True, timeout=0.3)
            except sq.Empty:
                pass
            else:
                raise AssertionError("SimpleQueue should be empty")
        finally:
            sq.close()
            with conn.channel() as ch:
                ch.queue_delete(name)
                ch.exchange_delete(name)
