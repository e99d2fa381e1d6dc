"""The admin subcommands: their arguments, and what each one asks the API.

Building the parser needs only the standard library; httpx and the client are
imported when a command runs, so ``rapidmq --help`` and ``rapidmq serve`` never
pay for them.

Global options (``--url``, ``--user``, ``--password``, ``--vhost``,
``--format``) are accepted before the command and again after it, the way
people type them; the copy after the command uses ``SUPPRESS`` defaults so that
it only overrides what was really given there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

from rapidmq.admin_cli.output import key_values, table, to_json

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = [
    "DEFAULT_URL",
    "LISTS",
    "Context",
    "add_admin_commands",
    "add_global_options",
    "json_object",
    "message_property",
    "run_admin",
]

DEFAULT_URL = "http://localhost:15672"
EXIT_USAGE = 2

Handler: TypeAlias = Callable[["Client", argparse.Namespace, "Context"], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


@dataclass(frozen=True)
class ListSpec:
    """Where one ``rapidmq list`` kind lives in the API, and its default columns."""

    path: str
    vhost_path: str | None
    columns: tuple[str, ...]


#: ``rapidmq list KIND``: every vhost's objects from ``path``, one vhost's from
#: ``vhost_path`` (``{vhost}`` is the encoded name); ``None`` = not per vhost.
LISTS: dict[str, ListSpec] = {
    "queues": ListSpec(
        "/queues",
        "/queues/{vhost}",
        ("vhost", "name", "messages", "messages_ready", "messages_unacknowledged", "consumers"),
    ),
    "exchanges": ListSpec(
        "/exchanges",
        "/exchanges/{vhost}",
        ("vhost", "name", "type", "durable", "auto_delete", "internal"),
    ),
    "bindings": ListSpec(
        "/bindings",
        "/bindings/{vhost}",
        ("vhost", "source", "destination", "destination_type", "routing_key", "arguments"),
    ),
    "connections": ListSpec(
        "/connections",
        "/vhosts/{vhost}/connections",
        ("name", "user", "vhost", "protocol", "state", "channels"),
    ),
    "channels": ListSpec(
        "/channels",
        "/vhosts/{vhost}/channels",
        ("name", "user", "vhost", "consumer_count", "messages_unacknowledged", "prefetch_count"),
    ),
    "consumers": ListSpec(
        "/consumers",
        "/consumers/{vhost}",
        (
            "queue.vhost",
            "queue.name",
            "consumer_tag",
            "channel_details.name",
            "ack_required",
            "prefetch_count",
        ),
    ),
    "users": ListSpec("/users", None, ("name", "tags")),
    "vhosts": ListSpec("/vhosts", None, ("name", "description", "messages")),
    "permissions": ListSpec(
        "/permissions",
        "/vhosts/{vhost}/permissions",
        ("user", "vhost", "configure", "write", "read"),
    ),
}

_INT_PROPERTIES = ("delivery_mode", "priority")


@dataclass(frozen=True)
class Context:
    """The resolved global options: flags over ``RAPIDMQ_*`` variables over defaults."""

    url: str
    user: str
    password: str
    vhost: str
    vhost_given: bool
    format: str

    @classmethod
    def resolve(cls, args: argparse.Namespace, environ: Mapping[str, str]) -> Context:
        def pick(name: str, env: str, default: str) -> str:
            value = getattr(args, name, None)
            if value is None:
                value = environ.get(env) or default
            return str(value)

        vhost = getattr(args, "vhost", None)
        if vhost is None:
            vhost = environ.get("RAPIDMQ_VHOST")
        return cls(
            url=pick("url", "RAPIDMQ_URL", DEFAULT_URL),
            user=pick("user", "RAPIDMQ_USER", "guest"),
            password=pick("password", "RAPIDMQ_PASSWORD", "guest"),
            vhost="/" if vhost is None else vhost,
            vhost_given=vhost is not None,
            format=getattr(args, "format", None) or "table",
        )

    @property
    def v(self) -> str:
        """The vhost as one path segment."""
        return _segment(self.vhost)

    def done(self, message: str) -> int:
        """Confirm a change: one line, or ``{"result": ...}`` for scripts reading JSON."""
        print(to_json({"result": message}) if self.format == "json" else message)
        return 0


def _segment(name: str) -> str:
    """A name as one path segment: the vhost ``/`` must travel as ``%2F`` or it is lost."""
    return quote(name, safe="")


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--url`` and friends; ``suppress`` for the copy after the command."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection and output (before or after the command)")
    group.add_argument(
        "--url",
        default=default,
        help=f"management API base URL (env RAPIDMQ_URL; default {DEFAULT_URL})",
    )
    group.add_argument(
        "--user", default=default, help="user name (env RAPIDMQ_USER; default guest)"
    )
    group.add_argument(
        "--password", default=default, help="password (env RAPIDMQ_PASSWORD; default guest)"
    )
    group.add_argument(
        "--vhost",
        default=default,
        help="virtual host (env RAPIDMQ_VHOST; default /; lists cover every vhost unless given)",
    )
    group.add_argument(
        "--format",
        choices=("table", "json"),
        default=default,
        help="table (aligned columns) or json (the API's JSON); default table",
    )


def json_object(text: str) -> dict[str, Any]:
    """``--arguments``: a JSON object, refused at parse time so it is a usage error."""
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object like '{{\"x-max-length\": 10}}', not {text!r}"
        )
    return value


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


def _properties(pairs: list[tuple[str, Any]] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key, value in pairs or ():
        if key.startswith("headers."):
            properties.setdefault("headers", {})[key[len("headers.") :]] = value
        else:
            properties[key] = value
    return properties


def run_admin(handler: Handler, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run one admin command; every failure is one ``rapidmq: ...`` line on stderr."""
    from rapidmq.admin_cli.client import AdminError, Client

    ctx = Context.resolve(args, environ)
    try:
        client = Client(ctx.url, ctx.user, ctx.password)
        try:
            return handler(client, args, ctx)
        finally:
            client.close()
    except AdminError as err:
        print(f"rapidmq: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        # The reader (``| head``) has gone; say nothing more, and keep Python's
        # exit-time flush of stdout from failing on the same closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _admin(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return run_admin(handler, args, os.environ)

    return run


# --- the commands -----------------------------------------------------------------------------


def _status(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    from rapidmq.admin_cli.client import AdminError

    overview = client.get("/overview")
    alarms: list[str] | None
    try:
        nodes = client.get("/nodes")
    except AdminError as err:
        if err.status not in (401, 403):
            raise
        alarms = None  # only monitoring users may read /api/nodes
    else:
        alarms = []
        for node in nodes if isinstance(nodes, list) else []:
            if node.get("mem_alarm"):
                alarms.append(f"memory on {node.get('name')}")
            if node.get("disk_free_alarm"):
                alarms.append(f"disk on {node.get('name')}")
    if ctx.format == "json":
        print(to_json({**overview, "alarms": alarms}))
        return 0
    totals = overview.get("object_totals") or {}
    queued = overview.get("queue_totals") or {}
    stats = overview.get("message_stats")
    stats = stats if isinstance(stats, dict) else {}

    def rate(name: str) -> str:
        details = stats.get(f"{name}_details")
        value = details.get("rate", 0.0) if isinstance(details, dict) else 0.0
        return f"{float(value):.1f}/s"

    product = f"{overview.get('product_name', '')} {overview.get('product_version', '')}"
    pairs: list[tuple[str, Any]] = [
        ("node", overview.get("node")),
        ("product", product.strip()),
        ("cluster", overview.get("cluster_name")),
        *(
            (kind, totals.get(kind, 0))
            for kind in ("connections", "channels", "consumers", "exchanges", "queues")
        ),
        ("messages", queued.get("messages", 0)),
        ("messages ready", queued.get("messages_ready", 0)),
        ("messages unacknowledged", queued.get("messages_unacknowledged", 0)),
        ("publish rate", rate("publish")),
        ("deliver/get rate", rate("deliver_get")),
        ("ack rate", rate("ack")),
        (
            "alarms",
            "unknown (needs the monitoring tag)" if alarms is None else ", ".join(alarms) or "none",
        ),
    ]
    print(key_values(pairs))
    return 0


def _list(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    spec = LISTS[args.kind]
    if ctx.vhost_given and spec.vhost_path is not None:
        path = spec.vhost_path.format(vhost=ctx.v)
        items = client.get(path, what=f"vhost {ctx.vhost!r}")
    else:
        items = client.get(spec.path)
    if ctx.format == "json":
        print(to_json(items))
    else:
        print(table(items if isinstance(items, list) else [], spec.columns))
    return 0


def _declare_queue(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "durable": args.durable,
        "auto_delete": args.auto_delete,
        "arguments": args.arguments or {},
    }
    client.request("PUT", f"/queues/{ctx.v}/{_segment(args.name)}", body=body)
    return ctx.done("queue declared")


def _declare_exchange(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "type": args.type,
        "durable": args.durable,
        "auto_delete": args.auto_delete,
        "internal": args.internal,
        "arguments": args.arguments or {},
    }
    client.request("PUT", f"/exchanges/{ctx.v}/{_segment(args.name)}", body=body)
    return ctx.done("exchange declared")


def _binding_path(args: argparse.Namespace, ctx: Context) -> str:
    kind = "q" if args.destination_type == "queue" else "e"
    return f"/bindings/{ctx.v}/e/{_segment(args.source)}/{kind}/{_segment(args.destination)}"


def _binding_what(args: argparse.Namespace, ctx: Context) -> str:
    return (
        f"binding from exchange {args.source!r} to {args.destination_type} "
        f"{args.destination!r} with routing key {args.routing_key!r} in vhost {ctx.vhost!r}"
    )


def _declare_binding(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {"routing_key": args.routing_key, "arguments": args.arguments or {}}
    what = (
        f"exchange {args.source!r} or {args.destination_type} {args.destination!r} "
        f"in vhost {ctx.vhost!r}"
    )
    client.request("POST", _binding_path(args, ctx), body=body, what=what)
    return ctx.done("binding declared")


def _delete_queue(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"queue {args.name!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", f"/queues/{ctx.v}/{_segment(args.name)}", what=what)
    return ctx.done("queue deleted")


def _delete_exchange(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"exchange {args.name!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", f"/exchanges/{ctx.v}/{_segment(args.name)}", what=what)
    return ctx.done("exchange deleted")


def _delete_binding(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    """A binding is deleted by its ``properties_key``, which only a listing tells."""
    from rapidmq.admin_cli.client import AdminError

    path = _binding_path(args, ctx)
    what = _binding_what(args, ctx)
    found = client.get(path, what=what)
    matches = [
        item
        for item in (found if isinstance(found, list) else [])
        if item.get("routing_key") == args.routing_key
        and (args.arguments is None or (item.get("arguments") or {}) == args.arguments)
    ]
    if args.arguments is None and len(matches) > 1:
        # Without --arguments, the plain binding is the one meant.
        matches.sort(key=lambda item: bool(item.get("arguments")))
    if not matches:
        raise AdminError(f"{what} not found", status=404)
    key = str(matches[0].get("properties_key", ""))
    client.request("DELETE", f"{path}/{_segment(key)}", what=what)
    return ctx.done("binding deleted")


def _purge_queue(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"queue {args.name!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", f"/queues/{ctx.v}/{_segment(args.name)}/contents", what=what)
    return ctx.done("queue purged")


def _read_input(name: str) -> bytes:
    from rapidmq.admin_cli.client import AdminError

    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as file:
            return file.read()
    except OSError as err:
        raise AdminError(
            f"cannot read {name}: {err.strerror or err}", exit_code=EXIT_USAGE
        ) from None


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
        "POST", f"/exchanges/{ctx.v}/{_segment(exchange)}/publish", body=body, what=what
    )
    routed = bool(isinstance(result, dict) and result.get("routed"))
    if ctx.format == "json":
        print(to_json(result))
    else:
        print("message published" if routed else "message published but not routed")
    return 0


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


def _get(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "count": args.count,
        "ackmode": "reject_requeue_true" if args.requeue else "ack_requeue_false",
        "encoding": "auto",
        "truncate": 50000,
    }
    what = f"queue {args.queue!r} in vhost {ctx.vhost!r}"
    messages = client.request(
        "POST", f"/queues/{ctx.v}/{_segment(args.queue)}/get", body=body, what=what
    )
    if ctx.format == "json":
        print(to_json(messages))
    else:
        print(table(messages if isinstance(messages, list) else [], _GET_COLUMNS))
    return 0


def _close_connection(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    headers = {"X-Reason": args.reason} if args.reason else None
    what = f"connection {args.name!r}"
    client.request("DELETE", f"/connections/{_segment(args.name)}", what=what, headers=headers)
    return ctx.done("connection closed")


def _definitions_path(ctx: Context) -> str:
    return f"/definitions/{ctx.v}" if ctx.vhost_given else "/definitions"


def _export(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    from rapidmq.admin_cli.client import AdminError

    text = to_json(client.get(_definitions_path(ctx), what=f"vhost {ctx.vhost!r}")) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.file, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as err:
        message = f"cannot write {args.file}: {err.strerror or err}"
        raise AdminError(message, exit_code=EXIT_USAGE) from None
    return ctx.done(f"definitions exported to {args.file}")


def _import(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    from rapidmq.admin_cli.client import AdminError

    raw = _read_input(args.file)
    try:
        definitions = json.loads(raw)
    except ValueError as err:
        raise AdminError(f"{args.file} is not JSON ({err})", exit_code=EXIT_USAGE) from None
    if not isinstance(definitions, dict):
        raise AdminError(f"{args.file} is not a definitions object", exit_code=EXIT_USAGE)
    client.request("POST", _definitions_path(ctx), body=definitions, what=f"vhost {ctx.vhost!r}")
    return ctx.done(f"definitions imported from {args.file}")


# --- the parser ---------------------------------------------------------------------------------


def _global_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, suppress=True)
    return parent


def _leaf(
    subcommands: Subparsers,
    name: str,
    summary: str,
    description: str,
    examples: str,
    handler: Handler,
    parent: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[parent],
        allow_abbrev=False,
    )
    parser.set_defaults(run=_admin(handler))
    return parser


def _group(subcommands: Subparsers, name: str, summary: str, description: str) -> Subparsers:
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=summary, description=description, allow_abbrev=False
    )
    kinds: Subparsers = parser.add_subparsers(
        title="objects", dest=f"{name}_kind", metavar="OBJECT"
    )
    kinds.required = True
    return kinds


def _add_arguments_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--arguments",
        type=json_object,
        default=None,
        metavar="JSON",
        help=f"optional {what} arguments as a JSON object",
    )


def _add_binding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="the exchange messages come from")
    parser.add_argument("--destination", required=True, help="the queue (or exchange) they go to")
    parser.add_argument(
        "--destination-type",
        choices=("queue", "exchange"),
        default="queue",
        help="what --destination is (default queue)",
    )
    parser.add_argument(
        "--routing-key", default="", help="the binding's routing key (default empty)"
    )
    _add_arguments_option(parser, "binding")


def add_admin_commands(subcommands: Subparsers) -> None:
    """Add ``status``, ``list``, ``declare`` ... to the ``rapidmq`` parser."""
    parent = _global_parent()

    _leaf(
        subcommands,
        "status",
        "overview: node, version, totals, message rates, alarms",
        "Show the broker's node, version, object totals, message rates and alarms.",
        "rapidmq status\nrapidmq --url http://broker:15672 --format json status",
        _status,
        parent,
    )

    lister = _leaf(
        subcommands,
        "list",
        "list queues, exchanges, connections, users ...",
        "List objects of one kind. Queues, exchanges, bindings, connections,\n"
        "channels, consumers and permissions of every vhost are listed unless\n"
        "--vhost (or RAPIDMQ_VHOST) names one.",
        "rapidmq list queues\nrapidmq --vhost /prod list connections\n"
        "rapidmq list exchanges --format json",
        _list,
        parent,
    )
    lister.add_argument("kind", choices=tuple(LISTS), metavar="KIND", help=", ".join(LISTS))

    declare = _group(
        subcommands,
        "declare",
        "declare a queue, an exchange or a binding",
        "Declare a queue, an exchange or a binding in --vhost (default /).",
    )
    queue = _leaf(
        declare,
        "queue",
        "declare a queue",
        "Declare a queue; declaring one that exists with the same settings is fine.",
        "rapidmq declare queue orders --durable\n"
        "rapidmq declare queue jobs --arguments '{\"x-max-length\": 1000}'",
        _declare_queue,
        parent,
    )
    queue.add_argument("name", help="the queue's name")
    queue.add_argument("--durable", action="store_true", help="survives a broker restart")
    queue.add_argument(
        "--auto-delete", action="store_true", help="deleted when its last consumer leaves"
    )
    _add_arguments_option(queue, "queue")

    exchange = _leaf(
        declare,
        "exchange",
        "declare an exchange",
        "Declare an exchange of a type: direct, fanout, topic or headers.",
        "rapidmq declare exchange events --type topic --durable",
        _declare_exchange,
        parent,
    )
    exchange.add_argument("name", help="the exchange's name")
    exchange.add_argument("--type", required=True, help="direct, fanout, topic or headers")
    exchange.add_argument("--durable", action="store_true", help="survives a broker restart")
    exchange.add_argument(
        "--auto-delete", action="store_true", help="deleted when its last binding goes"
    )
    exchange.add_argument(
        "--internal", action="store_true", help="only other exchanges may publish to it"
    )
    _add_arguments_option(exchange, "exchange")

    binding = _leaf(
        declare,
        "binding",
        "bind a queue (or exchange) to an exchange",
        "Bind a queue, or with --destination-type exchange another exchange, to an exchange.",
        "rapidmq declare binding --source events --destination orders --routing-key 'order.*'",
        _declare_binding,
        parent,
    )
    _add_binding_options(binding)

    delete = _group(
        subcommands,
        "delete",
        "delete a queue, an exchange or a binding",
        "Delete a queue, an exchange or a binding in --vhost (default /).",
    )
    dq = _leaf(
        delete,
        "queue",
        "delete a queue and its messages",
        "Delete a queue, with its messages and bindings.",
        "rapidmq delete queue orders",
        _delete_queue,
        parent,
    )
    dq.add_argument("name", help="the queue's name")
    de = _leaf(
        delete,
        "exchange",
        "delete an exchange",
        "Delete an exchange and its bindings.",
        "rapidmq delete exchange events",
        _delete_exchange,
        parent,
    )
    de.add_argument("name", help="the exchange's name")
    db = _leaf(
        delete,
        "binding",
        "delete a binding",
        "Delete the binding with this source, destination and routing key (and\n"
        "--arguments, when several differ only in those).",
        "rapidmq delete binding --source events --destination orders --routing-key 'order.*'",
        _delete_binding,
        parent,
    )
    _add_binding_options(db)

    purge = _group(
        subcommands,
        "purge",
        "remove every ready message from a queue",
        "Remove the ready messages of a queue in --vhost (default /).",
    )
    pq = _leaf(
        purge,
        "queue",
        "purge a queue",
        "Remove every ready message from a queue; unacknowledged ones stay.",
        "rapidmq purge queue orders",
        _purge_queue,
        parent,
    )
    pq.add_argument("name", help="the queue's name")

    publish = _leaf(
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

    getter = _leaf(
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
        "--count", type=_positive, default=1, help="how many messages at most (default 1)"
    )
    getter.add_argument(
        "--requeue", action="store_true", help="put the messages back instead of removing them"
    )

    close = _group(
        subcommands,
        "close",
        "close a client connection",
        "Close a client (AMQP or MQTT) connection; the client is told why.",
    )
    cc = _leaf(
        close,
        "connection",
        "close a client connection",
        "Close a client connection by its name, as 'rapidmq list connections' shows it.",
        "rapidmq close connection '127.0.0.1:50312 -> 127.0.0.1:5672' --reason 'maintenance'",
        _close_connection,
        parent,
    )
    cc.add_argument("name", help="the connection's name")
    cc.add_argument("--reason", default=None, help="the reason the client is told")

    definitions = _group(
        subcommands,
        "definitions",
        "export or import definitions (users, queues ...)",
        "Export or import the broker's definitions: users, vhosts, permissions,\n"
        "exchanges, queues and bindings, in RabbitMQ's JSON format. With --vhost\n"
        "only that vhost's definitions.",
    )
    export = _leaf(
        definitions,
        "export",
        "write the definitions to a file",
        "Write the definitions as JSON to FILE, or to stdout with '-'.",
        "rapidmq definitions export backup.json\nrapidmq definitions export - | jq .queues",
        _export,
        parent,
    )
    export.add_argument("file", metavar="FILE", help="the file to write, or - for stdout")
    importer = _leaf(
        definitions,
        "import",
        "load definitions from a file",
        "Load definitions from a JSON file (or stdin with '-'); what exists stays.",
        "rapidmq definitions import backup.json",
        _import,
        parent,
    )
    importer.add_argument("file", metavar="FILE", help="the file to read, or - for stdin")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
