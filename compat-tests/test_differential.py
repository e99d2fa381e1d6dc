"""Differential scenarios: the same client script against RabbitMQ and RapidMQ.

Each scenario drives pika against one broker and returns what the client
observed: bodies in order, properties, redelivered flags, counts, confirm
outcomes, basic.return codes, channel-close codes and texts, and x-death with
its ``time`` dropped.  Names carry a per-run token that ``Scratch.normalize``
replaces, so the two observations must be equal as they stand.
"""

from __future__ import annotations

import datetime
import decimal
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import ObserveBoth, Scratch, pika_parameters

POLL_TIMEOUT_S = 5.0

Observation = dict[str, Any]
Scenario = Callable[[Scratch], Observation]
SCENARIOS: list[Scenario] = []


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


# --- observation helpers ------------------------------------------------------------------


def props_seen(props: Any) -> dict[str, Any]:
    seen = {k: v for k, v in vars(props).items() if v is not None}
    if "headers" in seen:
        seen["headers"] = headers_seen(seen["headers"])
    return seen


def headers_seen(headers: dict[str, Any]) -> dict[str, Any]:
    out = dict(headers)
    if "x-death" in out:
        out["x-death"] = [{k: v for k, v in d.items() if k != "time"} for d in out["x-death"]]
    return out


def drain(ch: Any, queue: str) -> list[dict[str, Any]]:
    """basic.get (auto-ack) until empty; each message as body, flags and properties."""
    got = []
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append(
            {
                "body": body,
                "redelivered": method.redelivered,
                "exchange": method.exchange,
                "routing_key": method.routing_key,
                "message_count": method.message_count,
                "props": props_seen(props),
            }
        )


def bodies(ch: Any, queue: str) -> list[bytes]:
    return [m["body"] for m in drain(ch, queue)]


def wait_n(ch: Any, queue: str, n: int) -> list[dict[str, Any]]:
    """Drain ``queue`` until ``n`` messages came (for work the broker does in the background)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while (ready := ch.queue_declare(queue, passive=True).method.message_count) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} messages on {queue!r}, {ready} arrived")
        ch.connection.sleep(0.02)
    # Draining only once all have arrived keeps basic.get-ok's message_count deterministic.
    return drain(ch, queue)


def wait_one(ch: Any, queue: str) -> dict[str, Any]:
    got = wait_n(ch, queue, 1)
    assert len(got) == 1, got
    return got[0]


def channel_close(action: Callable[[], object], then: Callable[[], object] | None = None) -> Any:
    """Run ``action`` (and ``then``, to surface an async close); return (code, text)."""
    try:
        action()
        if then is not None:
            then()
    except pika.exceptions.ChannelClosedByBroker as exc:
        return (exc.reply_code, exc.reply_text)
    return "no error"


def publish_outcomes(ch: Any, messages: list[tuple[str, str, bytes, bool]]) -> list[str]:
    """Publish on a confirm channel; one of ack, nack or returned per message."""
    out = []
    for exchange, key, body, mandatory in messages:
        try:
            ch.basic_publish(exchange, key, body, mandatory=mandatory)
            out.append("ack")
        except pika.exceptions.NackError:
            out.append("nack")
        except pika.exceptions.UnroutableError as exc:
            out.append(f"returned {[m.method.reply_code for m in exc.messages]}")
    return out


def collect(conn: Any, sink: list[Any], n: int) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while len(sink) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} events, got {sink!r}")
        conn.process_data_events(time_limit=0.05)


# --- scenarios ----------------------------------------------------------------------------


@scenario
def direct_routing_and_declare_counts(s: Scratch) -> Observation:
    ch = s.channel()
    x, q = s.exchange(), s.queue()
    ch.exchange_declare(x, "direct")
    declared = ch.queue_declare(q).method
    ch.queue_bind(q, x, "k1")
    ch.queue_bind(q, x, "k2")
    for key in ("k1", "k2", "k3", "k1"):
        ch.basic_publish(x, key, key.encode())
    passive = ch.queue_declare(q, passive=True).method
    ch.queue_unbind(q, x, "k2")
    ch.basic_publish(x, "k2", b"after-unbind")
    got = drain(ch, q)
    ch.basic_publish("", q, b"p1")
    ch.basic_publish("", q, b"p2")
    purged = ch.queue_purge(q).method.message_count
    ch.basic_publish("", q, b"d1")
    deleted = ch.queue_delete(q).method.message_count
    return {
        "declare": (declared.queue, declared.message_count, declared.consumer_count),
        "passive": (passive.message_count, passive.consumer_count),
        "got": got,
        "purged": purged,
        "deleted": deleted,
    }


@scenario
def topic_and_fanout_routing(s: Scratch) -> Observation:
    ch = s.channel()
    topic, fan = s.exchange("topic"), s.exchange("fan")
    ch.exchange_declare(topic, "topic")
    ch.exchange_declare(fan, "fanout")
    patterns = ["#", "*", "a.*", "a.#", "#.c", "*.b.*", "a.b.c", "a.#.c", "#.#"]
    queues = []
    for i, pattern in enumerate(patterns):
        q = s.queue(f"t{i}")
        queues.append(q)
        ch.queue_declare(q)
        ch.queue_bind(q, topic, pattern)
    fq = s.queue("fan")
    ch.queue_declare(fq)
    ch.queue_bind(fq, fan, "ignored")
    for key in ("", "a", "a.b", "a.b.c", "a.x.y.c", "b.b.b", "c"):
        ch.basic_publish(topic, key, key.encode() or b"<empty>")
        ch.basic_publish(fan, key, key.encode() or b"<empty>")
    return {p: bodies(ch, q) for p, q in zip(patterns, queues, strict=True)} | {
        "fanout": bodies(ch, fq)
    }


@scenario
def headers_exchange_matching(s: Scratch) -> Observation:
    ch = s.channel()
    x = s.exchange()
    ch.exchange_declare(x, "headers")
    bindings = {
        "all": {"x-match": "all", "a": 1, "b": "two"},
        "any": {"x-match": "any", "a": 1, "b": "two"},
        "default": {"a": 1},
        "empty": {"x-match": "all"},
    }
    queues = {}
    for label, args in bindings.items():
        queues[label] = q = s.queue(label)
        ch.queue_declare(q)
        ch.queue_bind(q, x, "", arguments=args)
    for name, headers in (
        ("ab", {"a": 1, "b": "two"}),
        ("a", {"a": 1}),
        ("b", {"b": "two"}),
        ("a-wrong-type", {"a": "1"}),
        ("extra", {"a": 1, "b": "two", "c": 3}),
        ("none", None),
    ):
        ch.basic_publish(x, "rk", name.encode(), pika.BasicProperties(headers=headers))
    return {label: bodies(ch, q) for label, q in queues.items()}


@scenario
def basic_properties_round_trip(s: Scratch) -> Observation:
    ch = s.channel()
    q = s.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    full = pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        headers={
            "s": "str",
            "i": 7,
            "l": 2**40,
            "n": -1,
            "t": True,
            "f": False,
            "d": decimal.Decimal("1.25"),
            "ts": datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "x": b"\xffbin",
            "v": None,
            "a": [1, "a", [2], {"k": "v"}],
            "tbl": {"in": {"deep": 1}},
        },
        delivery_mode=2,
        priority=3,
        correlation_id="c",
        reply_to="r",
        expiration="100000",
        message_id="m",
        timestamp=1234567890,
        type="t",
        user_id="guest",
        app_id="a",
    )
    ch.basic_publish("", q, b"full", full)
    ch.basic_publish("", q, b"bare")
    ch.basic_publish("", q, b"", pika.BasicProperties(headers={}))
    return {"got": drain(ch, q)}


@scenario
def ack_nack_reject_requeue_order(s: Scratch) -> Observation:
    ch = s.channel()
    q = s.queue()
    ch.queue_declare(q)
    for i in range(6):
        ch.basic_publish("", q, f"m{i}".encode())
    tags = [ch.basic_get(q)[0].delivery_tag for _ in range(6)]
    ch.basic_ack(tags[0])
    ch.basic_reject(tags[1], requeue=True)
    ch.basic_nack(tags[3], multiple=True, requeue=True)
    ch.basic_reject(tags[4], requeue=False)
    ch.basic_nack(tags[5], requeue=True)
    return {"tags": tags, "after": drain(ch, q)}


@scenario
def qos_prefetch_and_redelivery_on_cancel(s: Scratch) -> Observation:
    conn = s.connect()
    ch = conn.channel()
    q = s.queue()
    ch.queue_declare(q)
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(6):
        pub.basic_publish("", q, f"{i}".encode())
    ch.basic_qos(prefetch_count=2)
    got: list[Any] = []
    tag = ch.basic_consume(q, lambda _c, m, _p, b: got.append((m.delivery_tag, b, m.redelivered)))
    collect(conn, got, 2)
    ready_while_full = pub.queue_declare(q, passive=True).method.message_count
    ch.basic_ack(got[1][0])
    collect(conn, got, 3)
    ch.basic_cancel(tag)
    ch.basic_recover(requeue=True)
    return {
        "delivered": [(b, r) for _, b, r in got],
        "ready_while_full": ready_while_full,
        "after_cancel": [(m["body"], m["redelivered"]) for m in drain(ch, q)],
    }


@scenario
def publisher_confirms_and_mandatory_returns(s: Scratch) -> Observation:
    conn = s.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    x, q = s.exchange(), s.queue()
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, "ok")
    outcomes = publish_outcomes(
        ch,
        [
            (x, "ok", b"1", True),
            (x, "nobody", b"2", True),
            (x, "nobody", b"3", False),
            ("", q, b"4", True),
            ("", s.queue("missing"), b"5", True),
        ],
    )
    plain = conn.channel()
    returned: list[Any] = []
    plain.add_on_return_callback(
        lambda _c, m, p, b: returned.append(
            (m.reply_code, m.reply_text, m.exchange, m.routing_key, b, props_seen(p))
        )
    )
    plain.basic_publish(x, "nobody", b"back", pika.BasicProperties(message_id="r1"), mandatory=True)
    collect(conn, returned, 1)
    return {"outcomes": outcomes, "returned": returned, "queued": bodies(ch, q)}


@scenario
def dead_letter_on_reject_with_x_death(s: Scratch) -> Observation:
    ch = s.channel()
    dlx = s.exchange("dlx")
    q, dlq = s.queue("work"), s.queue("dead")
    ch.exchange_declare(dlx, "topic")
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx, "#")
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    ch.basic_publish("", q, b"r", pika.BasicProperties(headers={"keep": "me"}, message_id="id"))
    method = ch.basic_get(q)[0]
    ch.basic_reject(method.delivery_tag, requeue=False)
    return {"dead": wait_one(ch, dlq), "left": drain(ch, q)}


@scenario
def dead_letter_cycle_counts_and_routing_key(s: Scratch) -> Observation:
    ch = s.channel()
    q, dlq = s.queue("work"), s.queue("dead")
    ch.queue_declare(dlq)
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.basic_publish("", q, b"loop")
    deaths = []
    for _ in range(2):
        method = ch.basic_get(q)[0]
        ch.basic_nack(method.delivery_tag, requeue=False)
        _, props, body = _wait_raw(ch, dlq)
        deaths.append(headers_seen(props.headers))
        ch.basic_publish("", q, body, pika.BasicProperties(headers=props.headers))
    bodies(ch, q)
    return {"deaths": deaths}


def _wait_raw(ch: Any, queue: str) -> Any:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing arrived on {queue!r}")
        ch.connection.sleep(0.02)


@scenario
def message_ttl_expiry_dead_letters(s: Scratch) -> Observation:
    ch = s.channel()
    q, pq, dlq = s.queue("qttl"), s.queue("pttl"), s.queue("dead")
    ch.queue_declare(dlq)
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    ch.queue_declare(q, arguments={"x-message-ttl": 40} | dl)
    ch.basic_publish("", q, b"queue-ttl", pika.BasicProperties(message_id="1"))
    by_queue = wait_one(ch, dlq)
    ch.queue_declare(pq, arguments=dl)
    ch.basic_publish("", pq, b"msg-ttl", pika.BasicProperties(expiration="40", message_id="2"))
    by_message = wait_one(ch, dlq)
    ch.basic_publish("", pq, b"kept", pika.BasicProperties(expiration="600000"))
    return {
        "by_queue": by_queue,
        "by_message": by_message,
        "left": drain(ch, q),
        "kept": drain(ch, pq),
    }


@scenario
def max_length_overflow_modes(s: Scratch) -> Observation:
    ch = s.channel()
    dlq = s.queue("dead")
    ch.queue_declare(dlq)
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    out: Observation = {}
    for mode in ("drop-head", "reject-publish", "reject-publish-dlx"):
        q = s.queue(mode)
        ch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": mode} | dl)
        outcomes = publish_outcomes(ch, [("", q, f"{i}".encode(), False) for i in range(4)])
        dead = wait_n(ch, dlq, 0 if mode == "reject-publish" else 2)
        out[mode] = {"outcomes": outcomes, "kept": bodies(ch, q), "dead": dead}
    qb = s.queue("bytes")
    ch.queue_declare(qb, arguments={"x-max-length-bytes": 5})
    publish_outcomes(ch, [("", qb, b"abc", False), ("", qb, b"de", False), ("", qb, b"f", False)])
    out["bytes"] = bodies(ch, qb)
    return out


@scenario
def priority_queue_ordering(s: Scratch) -> Observation:
    ch = s.channel()
    q = s.queue()
    ch.queue_declare(q, arguments={"x-max-priority": 5})
    for i, prio in enumerate([None, 1, 9, 5, 0, 5, 3, 255]):
        ch.basic_publish("", q, f"{i}:{prio}".encode(), pika.BasicProperties(priority=prio))
    return {"order": bodies(ch, q)}


@scenario
def single_active_consumer_and_consumer_priorities(s: Scratch) -> Observation:
    conn = s.connect()
    sac, prio = s.queue("sac"), s.queue("prio")
    pub = conn.channel()
    pub.confirm_delivery()
    pub.queue_declare(sac, arguments={"x-single-active-consumer": True})
    pub.queue_declare(prio)
    got: list[tuple[str, bytes]] = []
    chans = {name: conn.channel() for name in ("a", "b", "lo", "hi")}
    tag_a = chans["a"].basic_consume(sac, lambda *a: got.append(("a", a[3])), auto_ack=True)
    chans["b"].basic_consume(sac, lambda *a: got.append(("b", a[3])), auto_ack=True)
    sac_ok = pub.queue_declare(sac, passive=True).method.consumer_count
    for i in range(3):
        pub.basic_publish("", sac, f"s{i}".encode())
    collect(conn, got, 3)
    chans["a"].basic_cancel(tag_a)
    pub.basic_publish("", sac, b"s3")
    collect(conn, got, 4)
    chans["hi"].basic_qos(prefetch_count=1)
    chans["lo"].basic_consume(
        prio, lambda *a: got.append(("lo", a[3])), auto_ack=True, arguments={"x-priority": -1}
    )
    chans["hi"].basic_consume(
        prio, lambda *a: got.append(("hi", a[3])), arguments={"x-priority": 5}
    )
    for i in range(3):
        pub.basic_publish("", prio, f"p{i}".encode())
    collect(conn, got, 7)
    return {"consumer_count": sac_ok, "sac": got[:4], "prio": sorted(got[4:])}


@scenario
def exchange_to_exchange_and_alternate_exchange(s: Scratch) -> Observation:
    ch = s.channel()
    src, mid, ae = s.exchange("src"), s.exchange("mid"), s.exchange("ae")
    ch.exchange_declare(ae, "fanout")
    ch.exchange_declare(src, "topic", arguments={"alternate-exchange": ae})
    ch.exchange_declare(mid, "direct")
    ch.exchange_bind(mid, src, "x.*")
    q_mid, q_ae = s.queue("mid"), s.queue("ae")
    ch.queue_declare(q_mid)
    ch.queue_declare(q_ae)
    ch.queue_bind(q_mid, mid, "x.1")
    ch.queue_bind(q_ae, ae)
    outcomes = publish_outcomes(
        ch,
        [
            (src, "x.1", b"via-e2e", True),
            (src, "x.2", b"e2e-dead-end", True),
            (src, "y", b"to-ae", True),
        ],
    )
    ch.exchange_unbind(mid, src, "x.*")
    outcomes += publish_outcomes(ch, [(src, "x.1", b"after-unbind", True)])
    return {"outcomes": outcomes, "mid": drain(ch, q_mid), "ae": drain(ch, q_ae)}


@scenario
def transactions_commit_and_rollback(s: Scratch) -> Observation:
    ch = s.channel(confirm=False)
    q = s.queue()
    ch.queue_declare(q)
    ch.basic_publish("", q, b"pre")
    ch.tx_select()
    ch.basic_publish("", q, b"rolled")
    before = ch.queue_declare(q, passive=True).method.message_count
    ch.tx_rollback()
    ch.basic_publish("", q, b"committed")
    ch.tx_commit()
    after_commit = ch.queue_declare(q, passive=True).method.message_count
    method = ch.basic_get(q)[0]
    ch.basic_ack(method.delivery_tag)
    ch.tx_rollback()
    ch.basic_recover(requeue=True)
    confirm_in_tx = channel_close(lambda: ch.confirm_delivery())
    other = s.channel(confirm=False)
    return {
        "before": before,
        "after_commit": after_commit,
        "left": [(m["body"], m["redelivered"]) for m in drain(other, q)],
        "confirm_in_tx": confirm_in_tx,
    }


@scenario
def basic_recover_requeues(s: Scratch) -> Observation:
    ch = s.channel()
    q = s.queue()
    ch.queue_declare(q)
    for b in (b"1", b"2", b"3"):
        ch.basic_publish("", q, b)
    first = [ch.basic_get(q)[0] for _ in range(2)]
    ch.basic_ack(first[0].delivery_tag)
    ch.basic_recover(requeue=True)
    return {"after": [(m["body"], m["redelivered"]) for m in drain(ch, q)]}


@scenario
def channel_error_codes_and_texts(s: Scratch) -> Observation:
    conn = s.connect()
    owner = s.connect()
    q, ex, lock = s.queue("q"), s.exchange("x"), s.queue("locked")
    setup = conn.channel()
    setup.queue_declare(q, arguments={"x-max-length": 5})
    setup.exchange_declare(ex, "direct")
    owner.channel().queue_declare(lock, exclusive=True)
    missing_q, missing_x = s.queue("missing"), s.exchange("missing")

    def sync(ch: Any) -> Callable[[], object]:
        return lambda: ch.queue_declare(q, passive=True)

    # Each case gets a fresh channel; asynchronous failures are surfaced by a sync call.
    cases: dict[str, Callable[[Any], Any]] = {
        "passive_missing_queue": lambda ch: ch.queue_declare(missing_q, passive=True),
        "passive_missing_exchange": lambda ch: ch.exchange_declare(missing_x, passive=True),
        "bind_missing_exchange": lambda ch: ch.queue_bind(q, missing_x),
        "bind_missing_queue": lambda ch: ch.queue_bind(missing_q, ex),
        "consume_missing_queue": lambda ch: ch.basic_consume(missing_q, lambda *a: None),
        "get_missing_queue": lambda ch: ch.basic_get(missing_q),
        "publish_missing_exchange": lambda ch: ch.basic_publish(missing_x, "k", b"x"),
        "inequivalent_durable": lambda ch: ch.queue_declare(q, durable=True),
        "inequivalent_args": lambda ch: ch.queue_declare(q, arguments={"x-max-length": 6}),
        "inequivalent_exchange_type": lambda ch: ch.exchange_declare(ex, "fanout"),
        "unknown_delivery_tag": lambda ch: ch.basic_ack(42),
        "exclusive_locked": lambda ch: ch.queue_declare(lock, passive=True),
        "consume_locked": lambda ch: ch.basic_consume(lock, lambda *a: None),
        "reserved_exchange_prefix": lambda ch: ch.exchange_declare("amq.c-" + s.token, "direct"),
        "reserved_queue_prefix": lambda ch: ch.queue_declare("amq.c-" + s.token),
        "delete_system_exchange": lambda ch: ch.exchange_delete("amq.direct"),
        "delete_default_exchange": lambda ch: ch.exchange_delete(""),
        "bind_to_default_exchange": lambda ch: ch.queue_bind(q, "", "k"),
        "bad_user_id": lambda ch: ch.basic_publish(
            "", q, b"x", pika.BasicProperties(user_id="eve")
        ),
        "invalid_max_length": lambda ch: ch.queue_declare(
            s.queue("bad"), arguments={"x-max-length": -1}
        ),
    }
    out: Observation = {}
    for name, case in cases.items():
        ch = conn.channel()
        out[name] = channel_close(lambda case=case, ch=ch: case(ch), sync(ch))
    out["connection_open"] = conn.is_open
    return out


@scenario
def connection_errors_close_the_connection(s: Scratch) -> Observation:
    def connection_close(action: Callable[[Any], object]) -> Any:
        conn = s.connect()
        try:
            action(conn.channel())
            conn.process_data_events(time_limit=0.2)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            return (exc.reply_code, exc.reply_text, conn.is_open)
        return "no error"

    def open_error(params: pika.URLParameters) -> Any:
        try:
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPConnectionError as exc:
            return (type(exc).__name__, [str(a) for a in exc.args])
        return "no error"

    return {
        "unknown_exchange_type": connection_close(
            lambda ch: ch.exchange_declare(s.exchange("bad"), "no-such-type")
        ),
        "bad_password": open_error(
            pika_parameters(s.url, credentials=pika.PlainCredentials("guest", "nope"))
        ),
        "unknown_vhost": open_error(pika_parameters(s.url + "no-vhost-" + s.token)),
    }


@scenario
def exclusive_auto_delete_and_server_named(s: Scratch) -> Observation:
    owner = s.connect()
    ch = owner.channel()
    name = s.own_queue(ch.queue_declare("", exclusive=True).method.queue)
    ad = s.queue("ad")
    ch.queue_declare(ad, auto_delete=True)
    tag = ch.basic_consume(ad, lambda *a: None)
    ch.basic_cancel(tag)
    watcher = s.connect()

    def gone(q: str) -> Any:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while True:
            result = channel_close(lambda: watcher.channel().queue_declare(q, passive=True))
            if (result != "no error" and result[0] == 404) or time.monotonic() > deadline:
                return result
            watcher.sleep(0.05)

    def hide(result: Any) -> Any:
        # The server picks the name, so only its shape is comparable.
        return result if result == "no error" else (result[0], result[1].replace(name, "<gen>"))

    observed = {
        "prefix": name[: len("amq.gen-")],
        "locked": hide(channel_close(lambda: watcher.channel().queue_declare(name, passive=True))),
        "auto_deleted": gone(ad),
    }
    owner.close()
    observed["exclusive_after_close"] = hide(gone(name))
    return observed


@scenario
def large_messages_across_frames(s: Scratch) -> Observation:
    conn = s.connect(frame_max=4096)
    ch = conn.channel()
    ch.confirm_delivery()
    q = s.queue()
    ch.queue_declare(q)
    sizes = [0, 1, 4087, 4088, 4089, 65536, 1024 * 1024 + 3]
    for n in sizes:
        ch.basic_publish("", q, bytes(i % 251 for i in range(n)))
    got = drain(ch, q)
    return {
        "frame_max": conn._impl.params.frame_max,
        "sizes": [len(m["body"]) for m in got],
        "intact": [
            m["body"] == bytes(i % 251 for i in range(n)) for m, n in zip(got, sizes, strict=True)
        ],
    }


# --- the test -----------------------------------------------------------------------------


@pytest.mark.differential
@pytest.mark.parametrize("run", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_rapidmq_observes_what_rabbitmq_does(run: Scenario, observe_both: ObserveBoth) -> None:
    expected, actual = observe_both(run)
    assert actual == expected
