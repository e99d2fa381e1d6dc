"""``rapidmq status`` and ``rapidmq close connection``: the running broker and its clients.

Both are about what is happening now rather than about declared objects:
the overview of one node, and ending one client's connection.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rapidmq.admin_cli.common import Context, Subparsers, add_command, add_object_group, segment
from rapidmq.admin_cli.output import key_values, to_json

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["add_close_commands", "add_status_command"]


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


def _close_connection(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    headers = {"X-Reason": args.reason} if args.reason else None
    what = f"connection {args.name!r}"
    client.request("DELETE", f"/connections/{segment(args.name)}", what=what, headers=headers)
    return ctx.done("connection closed")


def add_status_command(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``status``."""
    add_command(
        subcommands,
        "status",
        "overview: node, version, totals, message rates, alarms",
        "Show the broker's node, version, object totals, message rates and alarms.",
        "rapidmq status\nrapidmq --url http://broker:15672 --format json status",
        _status,
        parent,
    )


def add_close_commands(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``close connection``."""
    close = add_object_group(
        subcommands,
        "close",
        "close a client connection",
        "Close a client (AMQP or MQTT) connection; the client is told why.",
    )
    cc = add_command(
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
