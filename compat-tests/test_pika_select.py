"""pika's SelectConnection: callbacks on pika's own ioloop, with publisher confirms."""

from __future__ import annotations

from typing import Any

import pika
from compat_support import Scratch, pika_parameters

IOLOOP_TIMEOUT_S = 10.0


def test_select_connection_publishes_with_confirms_and_consumes(scratch: Scratch) -> None:
    q = scratch.queue()
    n = 100
    acked: set[int] = set()
    nacked: set[int] = set()
    received: list[tuple[bytes, str | None]] = []
    events: list[str] = []
    state: dict[str, Any] = {}

    def finish(reason: str) -> None:
        events.append(reason)
        conn = state["conn"]
        if conn.is_open:
            conn.close()

    def done_if_complete() -> None:
        if len(received) == n and len(acked | nacked) == n and "complete" not in events:
            finish("complete")

    def on_open(conn: Any) -> None:
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch: Any) -> None:
        state["ch"] = ch
        ch.confirm_delivery(on_confirm, callback=lambda _f: ch.queue_declare(q, callback=on_queue))

    def on_confirm(frame: Any) -> None:
        method = frame.method
        kind = acked if type(method).__name__ == "Ack" else nacked
        tags = range(1, method.delivery_tag + 1) if method.multiple else [method.delivery_tag]
        kind.update(t for t in tags if t not in acked and t not in nacked)
        done_if_complete()

    def on_queue(_frame: Any) -> None:
        ch = state["ch"]
        ch.basic_qos(prefetch_count=10, callback=lambda _f: start(ch))

    def start(ch: Any) -> None:
        ch.basic_consume(q, on_message)
        for i in range(n):
            ch.basic_publish("", q, f"{i}".encode(), pika.BasicProperties(message_id=f"id-{i}"))

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        received.append((body, props.message_id))
        ch.basic_ack(method.delivery_tag)
        done_if_complete()

    def on_open_error(_conn: Any, err: BaseException) -> None:
        events.append(f"open failed: {err!r}")
        _conn.ioloop.stop()

    def on_closed(conn: Any, _reason: BaseException) -> None:
        conn.ioloop.stop()

    conn = pika.SelectConnection(
        pika_parameters(scratch.url),
        on_open_callback=on_open,
        on_open_error_callback=on_open_error,
        on_close_callback=on_closed,
    )
    state["conn"] = conn
    conn.ioloop.call_later(IOLOOP_TIMEOUT_S, lambda: finish("timeout"))
    try:
        conn.ioloop.start()
    finally:
        conn.ioloop.close()

    assert events[:1] == ["complete"]
    assert received == [(f"{i}".encode(), f"id-{i}") for i in range(n)]
    assert (acked, nacked) == (set(range(1, n + 1)), set())
