"""``rapidmq publish`` and ``rapidmq get``: one message in, some messages out.

Both go through the management API's publish and get endpoints, which are
meant for testing and repairs, not for throughput; a body that is not UTF-8
travels base64-encoded.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from rapidmq.admin_cli.common import Context, Subparsers, add_command, print_items, segment
from rapidmq.admin_cli.output import to_json

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["add_message_commands", "message_property", "positive_count"]

_INT_PROPERTIES = ("delivery_mode", "priority")

_GET_COLUMNS = (
    "routing_key",
    "exchange",
    "message_count",
    "redelivered",
    "payload_bytes",
    "payload_encoding",
    "payload",
    "properties",
)


def message_property(text: str) -> tuple[str, Any]:
    """``--property key=value``; ``headers.NAME=value`` sets one header."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    if key in _INT_PROPERTIES:
        try:
            return key, int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{key} must be a whole number, not {value!r}"
            ) from None
    if key == "headers.":
        raise argparse.ArgumentTypeError(f"a header needs a name: headers.NAME=value, not {text!r}")
    return key, value


def positive_count(text: str) -> int:
    """``get --count``: refused at parse time, so zero or less is a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _properties(pairs: list[tuple[str, Any]] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key, value in pairs or ():
        if key.startswith("headers."):
            properties.setdefault("headers", {})[key[len("headers.") :]] = value
        else:
            properties[key] = value
    return properties


def _publish(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    raw = sys.stdin.buffer.read() if args.body == "-" else os.fsencode(args.body)
    try:
        payload, encoding = raw.decode("utf-8"), "string"
    except UnicodeDecodeError:
        import base64

        payload, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    exchange = args.exchange or "amq.default"
    body = {
        "properties": _properties(args.property),
        "routing_key": args.routing_key,
        "payload": payload,
        "payload_encoding": encoding,
    }
    what = f"exchange {exchange!r} in vhost {ctx.vhost!r}"
    result = client.request(
        "POST", f"/exchanges/{ctx.v}/{segment(exchange)}/publish", body=body, what=what
    )
    routed = bool(isinstance(result, dict) and result.get("routed"))
    if ctx.format == "json":
        print(to_json(result))
    else:
        print("message published" if routed else "message published but not routed")
    return 0


def _get(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "count": args.count,
        "ackmode": "reject_requeue_true" if args.requeue else "ack_requeue_false",
        "encoding": "auto",
        "truncate": 50000,
    }
    what = f"queue {args.queue!r} in vhost {ctx.vhost!r}"
    messages = client.request(
        "POST", f"/queues/{ctx.v}/{segment(args.queue)}/get", body=body, what=what
    )
    return print_items(messages, _GET_COLUMNS, ctx)


def add_message_commands(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``publish`` and ``get``."""
    publish = add_command(
        subcommands,
        "publish",
        "publish one message to an exchange",
        "Publish one message and say whether it was routed to a queue. BODY '-'\n"
        "reads the body from stdin. Properties: content_type, delivery_mode (2 =\n"
        "persistent), priority, correlation_id, reply_to, expiration, message_id,\n"
        "type, user_id, app_id, and headers.NAME for a header.",
        "rapidmq publish --routing-key orders 'hello'\n"
        "rapidmq publish --exchange events --routing-key order.new "
        "--property delivery_mode=2 --property headers.origin=web '{\"id\": 1}'\n"
        "cat message.json | rapidmq publish --routing-key orders -",
        _publish,
        parent,
    )
    publish.add_argument(
        "--exchange", default="", help="the exchange (default: the default exchange)"
    )
    publish.add_argument("--routing-key", required=True, help="the message's routing key")
    publish.add_argument(
        "--property",
        action="append",
        type=message_property,
        metavar="KEY=VALUE",
        help="a message property; may be repeated",
    )
    publish.add_argument("body", metavar="BODY", help="the message body, or - to read stdin")

    getter = add_command(
        subcommands,
        "get",
        "fetch messages from a queue",
        "Fetch messages from a queue. They are acknowledged (removed) unless\n"
        "--requeue puts them back, marked redelivered.",
        "rapidmq get orders\nrapidmq get orders --count 10 --requeue",
        _get,
        parent,
    )
    getter.add_argument("queue", metavar="QUEUE", help="the queue's name")
    getter.add_argument(
        "--count", type=positive_count, default=1, help="how many messages at most (default 1)"
    )
    getter.add_argument(
        "--requeue", action="store_true", help="put the messages back instead of removing them"
    )
