"""``rapidmq list``, ``declare``, ``delete`` and ``purge``: the broker's objects.

``list`` covers every kind the API lists; the others act on one queue,
exchange or binding in ``--vhost``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rapidmq.admin_cli.common import (
    Context,
    Subparsers,
    add_command,
    add_object_group,
    json_object,
    print_items,
    segment,
)

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["LISTS", "ListSpec", "add_object_commands"]


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
    "policies": ListSpec(
        "/policies",
        "/policies/{vhost}",
        ("vhost", "name", "pattern", "apply-to", "priority", "definition"),
    ),
    "operator-policies": ListSpec(
        "/operator-policies",
        "/operator-policies/{vhost}",
        ("vhost", "name", "pattern", "apply-to", "priority", "definition"),
    ),
}


def _list(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    spec = LISTS[args.kind]
    if ctx.vhost_given and spec.vhost_path is not None:
        path = spec.vhost_path.format(vhost=ctx.v)
        items = client.get(path, what=f"vhost {ctx.vhost!r}")
    else:
        items = client.get(spec.path)
    return print_items(items, spec.columns, ctx)


def _declare_queue(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "durable": args.durable,
        "auto_delete": args.auto_delete,
        "arguments": args.arguments or {},
    }
    client.request("PUT", f"/queues/{ctx.v}/{segment(args.name)}", body=body)
    return ctx.done("queue declared")


def _declare_exchange(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {
        "type": args.type,
        "durable": args.durable,
        "auto_delete": args.auto_delete,
        "internal": args.internal,
        "arguments": args.arguments or {},
    }
    client.request("PUT", f"/exchanges/{ctx.v}/{segment(args.name)}", body=body)
    return ctx.done("exchange declared")


def _binding_path(args: argparse.Namespace, ctx: Context) -> str:
    kind = "q" if args.destination_type == "queue" else "e"
    return f"/bindings/{ctx.v}/e/{segment(args.source)}/{kind}/{segment(args.destination)}"


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
    client.request("DELETE", f"/queues/{ctx.v}/{segment(args.name)}", what=what)
    return ctx.done("queue deleted")


def _delete_exchange(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"exchange {args.name!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", f"/exchanges/{ctx.v}/{segment(args.name)}", what=what)
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
    client.request("DELETE", f"{path}/{segment(key)}", what=what)
    return ctx.done("binding deleted")


def _purge_queue(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"queue {args.name!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", f"/queues/{ctx.v}/{segment(args.name)}/contents", what=what)
    return ctx.done("queue purged")


# --- the parser ---------------------------------------------------------------------------------


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


def add_object_commands(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``list``, ``declare``, ``delete`` and ``purge``, in that order."""
    lister = add_command(
        subcommands,
        "list",
        "list queues, exchanges, connections, users ...",
        "List objects of one kind. Queues, exchanges, bindings, connections,\n"
        "channels, consumers, permissions, policies and operator policies of\n"
        "every vhost are listed unless --vhost (or RAPIDMQ_VHOST) names one.",
        "rapidmq list queues\nrapidmq --vhost /prod list connections\n"
        "rapidmq list exchanges --format json",
        _list,
        parent,
    )
    lister.add_argument("kind", choices=tuple(LISTS), metavar="KIND", help=", ".join(LISTS))

    declare = add_object_group(
        subcommands,
        "declare",
        "declare a queue, an exchange or a binding",
        "Declare a queue, an exchange or a binding in --vhost (default /).",
    )
    queue = add_command(
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

    exchange = add_command(
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

    binding = add_command(
        declare,
        "binding",
        "bind a queue (or exchange) to an exchange",
        "Bind a queue, or with --destination-type exchange another exchange, to an exchange.",
        "rapidmq declare binding --source events --destination orders --routing-key 'order.*'",
        _declare_binding,
        parent,
    )
    _add_binding_options(binding)

    delete = add_object_group(
        subcommands,
        "delete",
        "delete a queue, an exchange or a binding",
        "Delete a queue, an exchange or a binding in --vhost (default /).",
    )
    dq = add_command(
        delete,
        "queue",
        "delete a queue and its messages",
        "Delete a queue, with its messages and bindings.",
        "rapidmq delete queue orders",
        _delete_queue,
        parent,
    )
    dq.add_argument("name", help="the queue's name")
    de = add_command(
        delete,
        "exchange",
        "delete an exchange",
        "Delete an exchange and its bindings.",
        "rapidmq delete exchange events",
        _delete_exchange,
        parent,
    )
    de.add_argument("name", help="the exchange's name")
    db = add_command(
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

    purge = add_object_group(
        subcommands,
        "purge",
        "remove every ready message from a queue",
        "Remove the ready messages of a queue in --vhost (default /).",
    )
    pq = add_command(
        purge,
        "queue",
        "purge a queue",
        "Remove every ready message from a queue; unacknowledged ones stay.",
        "rapidmq purge queue orders",
        _purge_queue,
        parent,
    )
    pq.add_argument("name", help="the queue's name")
