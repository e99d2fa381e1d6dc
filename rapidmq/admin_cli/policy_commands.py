"""``rapidmq set`` and ``rapidmq clear``: policies and operator policies.

``set policy NAME PATTERN DEFINITION`` and ``clear policy NAME`` act in
``--vhost`` (default /) through ``/api/policies`` (``operator-policy``:
``/api/operator-policies``), so they work against RabbitMQ too; ``rapidmq list
policies`` and ``list operator-policies`` are with the other listings.  The
definition is a JSON object, checked before anything is sent; what the broker
refuses (a bad pattern, a key it does not know) is its own one-line text.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rapidmq.admin_cli.common import (
    Context,
    Handler,
    Subparsers,
    add_command,
    add_object_group,
    json_object,
    segment,
)

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["APPLY_TO", "add_policy_commands"]

#: What ``--apply-to`` may say.
APPLY_TO = ("all", "queues", "classic_queues", "quorum_queues", "streams", "exchanges")

#: kind -> (API path, words for messages)
_KINDS = {
    "policy": ("/policies", "policy"),
    "operator-policy": ("/operator-policies", "operator policy"),
}


def _path(kind: str, name: str, ctx: Context) -> str:
    return f"{_KINDS[kind][0]}/{ctx.v}/{segment(name)}"


def _setter(kind: str) -> Handler:
    def set_policy(client: Client, args: argparse.Namespace, ctx: Context) -> int:
        body = {
            "pattern": args.pattern,
            "definition": args.definition,
            "priority": args.priority,
            "apply-to": args.apply_to,
        }
        words = _KINDS[kind][1]
        client.request("PUT", _path(kind, args.name, ctx), body=body, what=f"vhost {ctx.vhost!r}")
        return ctx.done(f"{words} {args.name!r} set in vhost {ctx.vhost!r}")

    return set_policy


def _clearer(kind: str) -> Handler:
    def clear_policy(client: Client, args: argparse.Namespace, ctx: Context) -> int:
        words = _KINDS[kind][1]
        what = f"{words} {args.name!r} in vhost {ctx.vhost!r}"
        client.request("DELETE", _path(kind, args.name, ctx), what=what)
        return ctx.done(f"{words} {args.name!r} cleared in vhost {ctx.vhost!r}")

    return clear_policy


def add_policy_commands(subcommands: Subparsers, parent: argparse.ArgumentParser) -> None:
    """Add ``set`` and ``clear``, each with ``policy`` and ``operator-policy``."""
    setter = add_object_group(
        subcommands,
        "set",
        "set a policy or an operator policy",
        "Create or replace a policy (or operator policy) in --vhost (default /).\n"
        "It applies at once to the queues and exchanges whose names match.",
    )
    clearer = add_object_group(
        subcommands,
        "clear",
        "clear a policy or an operator policy",
        "Delete a policy (or operator policy) in --vhost (default /); the queues\n"
        "and exchanges it applied to go back to their own arguments at once.",
    )
    for kind, example in (
        ("policy", "rapidmq set policy limits '^orders\\.' '{\"max-length\": 1000}' --priority 1"),
        (
            "operator-policy",
            "rapidmq set operator-policy cap '.*' '{\"max-length-bytes\": 1000000}' "
            "--apply-to queues",
        ),
    ):
        words = _KINDS[kind][1]
        set_one = add_command(
            setter,
            kind,
            f"create or replace a {words}",
            f"Create or replace a {words}: PATTERN is a regular expression on object\n"
            "names, DEFINITION a JSON object of settings.",
            example,
            _setter(kind),
            parent,
        )
        set_one.add_argument("name", metavar="NAME", help=f"the {words}'s name")
        set_one.add_argument("pattern", metavar="PATTERN", help="regular expression on names")
        set_one.add_argument(
            "definition",
            type=json_object,
            metavar="DEFINITION-JSON",
            help="settings as a JSON object, e.g. '{\"max-length\": 1000}'",
        )
        set_one.add_argument(
            "--priority", type=int, default=0, help="the highest priority wins (default 0)"
        )
        set_one.add_argument(
            "--apply-to",
            choices=APPLY_TO,
            default="all",
            metavar="KIND",
            help=f"what it applies to: {', '.join(APPLY_TO)} (default all)",
        )
        clear_one = add_command(
            clearer,
            kind,
            f"delete a {words}",
            f"Delete a {words}.",
            f"rapidmq clear {kind} limits --vhost /prod",
            _clearer(kind),
            parent,
        )
        clear_one.add_argument("name", metavar="NAME", help=f"the {words}'s name")
