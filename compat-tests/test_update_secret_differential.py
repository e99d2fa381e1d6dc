"""connection.update-secret, RabbitMQ against RapidMQ: the same pika script, compared.

RabbitMQ 3.10 hands the new secret to every backend whose credentials can
expire (OAuth 2) and answers update-secret-ok when they accept it; a backend
that refuses closes the connection with 530 and the text RapidMQ sends.  Its
internal and LDAP backends cannot expire, so with them RabbitMQ accepts any
secret.  RapidMQ checks the secret as a login of the same user through its
backends, so a right secret behaves the same on both brokers, and a wrong one
is refused by RapidMQ only: the last test pins that difference down, so a
change on either side is noticed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from compat_support import BrokerEndpoint, Scratch

pytestmark = pytest.mark.differential

REFUSED = "530 NOT_ALLOWED - New secret was refused by one of the backends"


def _update_then_round_trip(scratch: Scratch, secret: str) -> dict[str, Any]:
    """Update the secret, then publish and get a message on the same connection."""
    conn = scratch.connect()
    try:
        conn.update_secret(secret, "token refresh")
    except pika.exceptions.ConnectionClosedByBroker as err:
        return {"update_secret": f"{err.reply_code} {err.reply_text}", "open": conn.is_open}
    ch = conn.channel()
    ch.confirm_delivery()
    queue = scratch.queue()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"after update-secret")
    _method, _props, body = ch.basic_get(queue, auto_ack=True)
    conn.update_secret(secret, "second refresh")
    return {"update_secret": "ok", "open": conn.is_open, "body": body}


def test_right_secret_is_accepted_and_the_connection_keeps_working(
    rabbitmq: str, rapidmq: BrokerEndpoint, scratch_factory: Callable[[str], Scratch]
) -> None:
    expected = _update_then_round_trip(scratch_factory(rabbitmq), "guest")
    assert expected == {"update_secret": "ok", "open": True, "body": b"after update-secret"}
    assert _update_then_round_trip(scratch_factory(rapidmq.amqp_url), "guest") == expected


def test_wrong_secret_rabbitmq_internal_backend_accepts_rapidmq_refuses_with_530(
    rabbitmq: str, rapidmq: BrokerEndpoint, scratch_factory: Callable[[str], Scratch]
) -> None:
    reference = _update_then_round_trip(scratch_factory(rabbitmq), "wrong")
    assert reference == {"update_secret": "ok", "open": True, "body": b"after update-secret"}
    candidate = _update_then_round_trip(scratch_factory(rapidmq.amqp_url), "wrong")
    assert candidate == {"update_secret": REFUSED, "open": False}
