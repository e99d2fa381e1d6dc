"""Direct reply-to, differential: the same pika scripts against RabbitMQ and RapidMQ.

Each scenario returns what the client saw: deliveries (tag, flags, properties,
body), declare-ok counts, confirms and basic.return codes, and the reply code and
text of every refusal.  The reply name the broker makes up
(``amq.rabbitmq.reply-to.<suffix>``) differs by design, so each scenario checks
its shape and then replaces it with ``REPLY`` before the two are compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pika
import pika.adapters.blocking_connection
import pika.exceptions
import pytest
from compat_support import ObserveBoth, Scratch
from management_support import (
    Api,
    enc,
    token,
)

pytestmark = pytest.mark.differential

REPLY_QUEUE = "amq.rabbitmq.reply-to"
REPLY_PREFIX = REPLY_QUEUE + "."
WAIT_S = 5.0
QUIET_S = 0.5  # how long to wait for a delivery that must not come

Channel = pika.adapters.blocking_connection.BlockingChannel
Observation = dict[str, Any]
Scenario = Callable[[Scratch], Observation]
SCENARIOS: list[Scenario] = []


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


# --- helpers ------------------------------------------------------------------------------


class Replies:
    """A channel consuming amq.rabbitmq.reply-to, and what it received."""

    def __init__(self, s: Scratch, *, confirm: bool = False) -> None:
        self.conn = s.connect()
        self.ch = self.conn.channel()
        if confirm:
            self.ch.confirm_delivery()
        self.got: list[dict[str, Any]] = []
        self.tag = self.ch.basic_consume(
            REPLY_QUEUE, self._on_message, auto_ack=True, consumer_tag=f"reply-{s.token}"
        )

    def _on_message(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        seen = {k: v for k, v in vars(props).items() if v is not None}
        self.got.append(
            {
                "consumer_tag": method.consumer_tag,
                "delivery_tag": method.delivery_tag,
                "redelivered": method.redelivered,
                "exchange": method.exchange,
                "routing_key": method.routing_key,
                "properties": seen,
                "body": body,
            }
        )

    def wait(self, count: int) -> list[dict[str, Any]]:
        """Deliveries until ``count`` have come, or a short quiet spell if fewer come."""
        deadline = time.monotonic() + (WAIT_S if count else QUIET_S)
        while len(self.got) < count and time.monotonic() < deadline:
            self.conn.process_data_events(time_limit=0.05)
        if count:
            self.conn.process_data_events(time_limit=0.1)  # anything extra shows too
        return self.got


def request(s: Scratch, replies: Replies, **props: Any) -> tuple[str, Channel, str]:
    """Publish a request with reply_to amq.rabbitmq.reply-to; the server's view of it.

    Returns the server channel (confirm mode), its request queue and the
    rewritten reply name, after checking the name's shape.
    """
    server = s.channel()
    queue = s.queue("requests")
    server.queue_declare(queue)
    replies.ch.basic_publish(
        "", queue, b"request", pika.BasicProperties(reply_to=REPLY_QUEUE, **props)
    )
    deadline = time.monotonic() + WAIT_S
    method = None
    while method is None and time.monotonic() < deadline:
        method, got_props, _ = server.basic_get(queue, auto_ack=True)
    assert method is not None, "the request never reached the server's queue"
    reply_to = got_props.reply_to
    assert reply_to.startswith(REPLY_PREFIX) and len(reply_to) > len(REPLY_PREFIX) + 16
    return reply_to, server, queue


def refusal(fn: Callable[[], Any], ch: Channel) -> str:
    """``ok``, or the reply code and text that closed the channel or connection."""
    try:
        fn()
        ch.basic_qos(prefetch_count=0)  # a round trip shows an asynchronous refusal
        return "ok"
    except pika.exceptions.ChannelClosedByBroker as err:
        return f"{err.reply_code} {err.reply_text}"
    except pika.exceptions.ConnectionClosedByBroker as err:
        return f"connection {err.reply_code} {err.reply_text}"


def publish_outcome(
    ch: Channel, key: str, body: bytes, props: Any = None, *, mandatory: bool = False
) -> Any:
    """A confirmed publish: ``acked``, or the basic.return codes."""
    try:
        ch.basic_publish("", key, body, props, mandatory=mandatory)
        return "acked"
    except pika.exceptions.UnroutableError as err:
        return [(m.method.reply_code, m.method.reply_text) for m in err.messages]
    except pika.exceptions.NackError:
        return "nacked"


def declared(ch: Channel, name: str, **kwargs: Any) -> Any:
    ok = ch.queue_declare(name, **kwargs).method
    return [ok.queue, ok.message_count, ok.consumer_count]


def named(value: Any, reply_to: str) -> Any:
    """``value`` with the broker's reply name replaced by ``REPLY``."""
    if isinstance(value, str):
        return value.replace(reply_to, "REPLY")
    if isinstance(value, dict):
        return {k: named(v, reply_to) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(named(v, reply_to) for v in value)
    return value


# --- scenarios ----------------------------------------------------------------------------


@scenario
def rpc_round_trip(s: Scratch) -> Observation:
    replies = Replies(s)
    reply_to, server, _ = request(s, replies, correlation_id="c1")
    outcomes = [
        publish_outcome(server, reply_to, b"reply-1"),
        publish_outcome(
            server,
            reply_to,
            b"reply-2",
            pika.BasicProperties(correlation_id="c1", headers={"h": 1}, delivery_mode=2),
        ),
    ]
    got = replies.wait(2)
    # Replies take the next delivery tag without using it up, as RabbitMQ 3.10.
    own = s.queue("own")
    replies.ch.queue_declare(own)
    replies.ch.basic_publish("", own, b"plain")
    method = None
    deadline = time.monotonic() + WAIT_S
    while method is None and time.monotonic() < deadline:
        method, _, _ = replies.ch.basic_get(own, auto_ack=False)
    assert method is not None
    other = s.channel()
    return named(
        {
            "consumer_tag": replies.tag,
            "outcomes": outcomes,
            "replies": got,
            "next_get_tag": method.delivery_tag,
            "declare_from_another_connection": declared(other, reply_to, passive=True),
            "declare_from_another_channel": declared(replies.conn.channel(), reply_to),
        },
        reply_to,
    )


@scenario
def mandatory_reply_is_delivered_and_returned(s: Scratch) -> Observation:
    replies = Replies(s)
    reply_to, server, _ = request(s, replies)
    outcome = publish_outcome(server, reply_to, b"mandatory", mandatory=True)
    return named({"outcome": outcome, "replies": replies.wait(1)}, reply_to)


@scenario
def replies_after_cancel_and_close_are_dropped(s: Scratch) -> Observation:
    replies = Replies(s)
    reply_to, server, queue = request(s, replies)
    replies.ch.basic_cancel(replies.tag)
    seen: Observation = {
        "after_cancel": publish_outcome(server, reply_to, b"late"),
        "after_cancel_mandatory": publish_outcome(server, reply_to, b"late", mandatory=True),
        "delivered": len(replies.wait(0)),
    }
    other = s.channel()
    seen["declare_after_cancel"] = refusal(lambda: other.queue_declare(reply_to), other)
    seen["request_after_cancel"] = refusal(
        lambda: replies.ch.basic_publish(
            "", queue, b"again", pika.BasicProperties(reply_to=REPLY_QUEUE)
        ),
        replies.ch,
    )
    again = Replies(s)
    second_name, server2, _ = request(s, again)
    seen["new_name_differs"] = second_name != reply_to
    again.conn.close()
    seen["after_close"] = publish_outcome(server2, second_name, b"late")
    seen["after_close_mandatory"] = publish_outcome(server2, second_name, b"late", mandatory=True)
    return named(named(seen, reply_to), second_name)


@scenario
def consume_and_publish_refusals(s: Scratch) -> Observation:
    seen: Observation = {}

    def fresh() -> Channel:
        return s.connect().channel()

    ch = fresh()
    seen["consume_ack_mode"] = refusal(
        lambda: ch.basic_consume(REPLY_QUEUE, lambda *a: None, auto_ack=False), ch
    )
    ch = fresh()
    ch.basic_consume(REPLY_QUEUE, lambda *a: None, auto_ack=True)
    seen["consume_twice"] = refusal(
        lambda: ch.basic_consume(REPLY_QUEUE, lambda *a: None, auto_ack=True), ch
    )
    ch = fresh()
    queue = s.queue("requests")
    ch.queue_declare(queue)
    seen["request_without_consumer"] = refusal(
        lambda: ch.basic_publish("", queue, b"x", pika.BasicProperties(reply_to=REPLY_QUEUE)), ch
    )
    ch = fresh()
    seen["reply_to_with_suffix_left_alone"] = refusal(
        lambda: ch.basic_publish(
            "", queue, b"x", pika.BasicProperties(reply_to=REPLY_PREFIX + "made-up")
        ),
        ch,
    )
    ch = fresh()
    seen["consume_made_up_name"] = refusal(
        lambda: ch.basic_consume(REPLY_PREFIX + "made-up", lambda *a: None, auto_ack=True), ch
    )
    ch = fresh()
    seen["get"] = refusal(lambda: ch.basic_get(REPLY_QUEUE), ch)
    ch = s.channel()
    seen["publish_to_made_up_name"] = publish_outcome(ch, REPLY_PREFIX + "made-up", b"x")
    seen["publish_to_made_up_name_mandatory"] = publish_outcome(
        ch, REPLY_PREFIX + "made-up", b"x", mandatory=True
    )
    return seen


@scenario
def declare_answers(s: Scratch) -> Observation:
    ch = s.connect().channel()
    seen: Observation = {
        "passive": declared(ch, REPLY_QUEUE, passive=True),
        "active": declared(ch, REPLY_QUEUE),
        "durable_exclusive": declared(ch, REPLY_QUEUE, durable=True, exclusive=True),
    }
    for label, name in (("made_up", REPLY_PREFIX + "made-up"), ("no_dot", REPLY_QUEUE + "x")):
        ch = s.connect().channel()
        seen[label] = refusal(lambda ch=ch, name=name: ch.queue_declare(name, passive=True), ch)
    return seen


@scenario
def returned_request_carries_the_reply_name(s: Scratch) -> Observation:
    replies = Replies(s, confirm=True)
    try:
        replies.ch.basic_publish(
            "",
            f"nowhere-{s.token}",
            b"request",
            pika.BasicProperties(reply_to=REPLY_QUEUE),
            mandatory=True,
        )
        return {"returned": False}
    except pika.exceptions.UnroutableError as err:
        (returned,) = err.messages
        reply_to = returned.properties.reply_to
        return {
            "returned": (returned.method.reply_code, returned.method.reply_text),
            "reply_to_is_a_reply_name": reply_to.startswith(REPLY_PREFIX)
            and reply_to != REPLY_PREFIX,
        }


@scenario
def transactional_request(s: Scratch) -> Observation:
    replies = Replies(s)
    replies.ch.tx_select()
    server = s.channel()
    queue = s.queue("requests")
    server.queue_declare(queue)
    replies.ch.basic_publish("", queue, b"request", pika.BasicProperties(reply_to=REPLY_QUEUE))
    replies.ch.tx_commit()
    method, props, _ = server.basic_get(queue, auto_ack=True)
    assert method is not None
    reply_to = props.reply_to
    outcome = publish_outcome(server, reply_to, b"reply")
    return named(
        {
            "reply_to_is_a_reply_name": reply_to.startswith(REPLY_PREFIX),
            "outcome": outcome,
            "replies": replies.wait(1),
        },
        reply_to,
    )


@pytest.mark.parametrize("run", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_rapidmq_observes_what_rabbitmq_does(run: Scenario, observe_both: ObserveBoth) -> None:
    expected, actual = observe_both(run)
    assert actual == expected


# --- permissions --------------------------------------------------------------------------


def _permission_outcomes(api: Api, write: str) -> list[str]:
    """Reply-to operations of a user with no configure or read and ``write`` only."""
    tok = token()
    vhost, user = f"drt-{tok}", f"drtu-{tok}"
    assert api.put(f"/api/vhosts/{enc(vhost)}").status in (201, 204)
    assert api.put(f"/api/users/{enc(user)}", {"password": "pw", "tags": ""}).status in (201, 204)
    grant = {"configure": "", "write": write, "read": ""}
    assert api.put(f"/api/permissions/{enc(vhost)}/{enc(user)}", grant).status in (201, 204)
    params = pika.ConnectionParameters(
        "127.0.0.1", api.amqp_port, vhost, pika.PlainCredentials(user, "pw"), socket_timeout=5
    )
    outcomes = []
    try:
        conn = pika.BlockingConnection(params)
        try:
            ch = conn.channel()
            outcomes.append(
                refusal(lambda: ch.basic_consume(REPLY_QUEUE, lambda *a: None, auto_ack=True), ch)
            )
            outcomes.append(refusal(lambda: ch.queue_declare(REPLY_QUEUE), ch))
            if ch.is_open:
                props = pika.BasicProperties(reply_to=REPLY_QUEUE)
                outcomes.append(refusal(lambda: ch.basic_publish("", "none", b"", props), ch))
            ch = conn.channel()
            outcomes.append(refusal(lambda: ch.basic_publish("", REPLY_PREFIX + "x", b""), ch))
        finally:
            if conn.is_open:
                conn.close()
    finally:
        api.delete(f"/api/vhosts/{enc(vhost)}")
        api.delete(f"/api/users/{enc(user)}")
    return [o.replace(tok, "<T>") for o in outcomes]


@pytest.mark.parametrize("write", ["", ".*"], ids=["no-write", "write"])
def test_reply_to_permissions_match(rabbitmq_api: Api, rapidmq_api: Api, write: str) -> None:
    expected = _permission_outcomes(rabbitmq_api, write)
    assert _permission_outcomes(rapidmq_api, write) == expected
    # Consuming and declaring need no permission; publishing needs write on amq.default.
    assert expected[:2] == ["ok", "ok"]
    assert ("403" in expected[-1]) == (write == "")
