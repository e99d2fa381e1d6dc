"""``rapidmq definitions export`` and ``import``: the broker's setup as one JSON file.

The file is RabbitMQ's definitions format, so a backup moves between RapidMQ
and RabbitMQ; a file that cannot be read or written is a usage error (exit 2),
not a broker one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from rapidmq.admin_cli.common import (
    EXIT_USAGE,
    Context,
    Subparsers,
    add_command,
    add_object_group,
)
from rapidmq.admin_cli.output import to_json

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["add_definitions_commands"]


def _definitions_path(ctx: Context) -> str:
    return f"/definitions/{ctx.v}" if ctx.vhost_given else "/definitions"


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


def add_definitions_commands(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``definitions export`` and ``definitions import``."""
    definitions = add_object_group(
        subcommands,
        "definitions",
        "export or import definitions (users, queues ...)",
        "Export or import the broker's definitions: users, vhosts, permissions,\n"
        "exchanges, queues and bindings, in RabbitMQ's JSON format. With --vhost\n"
        "only that vhost's definitions.",
    )
    export = add_command(
        definitions,
        "export",
        "write the definitions to a file",
        "Write the definitions as JSON to FILE, or to stdout with '-'.",
        "rapidmq definitions export backup.json\nrapidmq definitions export - | jq .queues",
        _export,
        parent,
    )
    export.add_argument("file", metavar="FILE", help="the file to write, or - for stdout")
    importer = add_command(
        definitions,
        "import",
        "load definitions from a file",
        "Load definitions from a JSON file (or stdin with '-'); what exists stays.",
        "rapidmq definitions import backup.json",
        _import,
        parent,
    )
    importer.add_argument("file", metavar="FILE", help="the file to read, or - for stdin")
