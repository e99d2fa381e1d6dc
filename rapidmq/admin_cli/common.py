"""What every admin command shares: global options, the client, output, parser pieces.

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

from rapidmq.admin_cli.output import table, to_json

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = [
    "DEFAULT_URL",
    "EXIT_USAGE",
    "Context",
    "Handler",
    "Subparsers",
    "add_command",
    "add_global_options",
    "add_object_group",
    "admin_runner",
    "global_parent",
    "json_object",
    "print_items",
    "run_admin",
    "segment",
]

DEFAULT_URL = "http://localhost:15672"
EXIT_USAGE = 2

Handler: TypeAlias = Callable[["Client", argparse.Namespace, "Context"], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


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
        return segment(self.vhost)

    def done(self, message: str) -> int:
        """Confirm a change: one line, or ``{"result": ...}`` for scripts reading JSON."""
        print(to_json({"result": message}) if self.format == "json" else message)
        return 0


def segment(name: str) -> str:
    """A name as one path segment: the vhost ``/`` must travel as ``%2F`` or it is lost."""
    return quote(name, safe="")


def print_items(items: Any, columns: tuple[str, ...], ctx: Context) -> int:
    """A listing as the API's JSON, or as a table of ``columns`` (an odd answer: no rows)."""
    if ctx.format == "json":
        print(to_json(items))
    else:
        print(table(items if isinstance(items, list) else [], columns))
    return 0


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


def admin_runner(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """The parser's ``run`` for a handler; the environment is read when it runs."""

    def run(args: argparse.Namespace) -> int:
        return run_admin(handler, args, os.environ)

    return run


# --- parser pieces ------------------------------------------------------------------------------


def global_parent() -> argparse.ArgumentParser:
    """The global options for after the command, as an argparse parent."""
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, suppress=True)
    return parent


def add_command(
    subcommands: Subparsers,
    name: str,
    summary: str,
    description: str,
    examples: str,
    handler: Handler,
    parent: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    """A command that runs ``handler``; raw formatting keeps the examples' lines as written."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[parent],
        allow_abbrev=False,
    )
    parser.set_defaults(run=admin_runner(handler))
    return parser


def add_object_group(
    subcommands: Subparsers,
    name: str,
    summary: str,
    description: str,
    *,
    title: str = "objects",
    metavar: str = "OBJECT",
    dest: str = "kind",
) -> Subparsers:
    """A command such as ``declare`` that only chooses the kind of object (``queue`` ...),
    or such as ``users`` that only chooses the action (``add`` ...)."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=summary, description=description, allow_abbrev=False
    )
    kinds: Subparsers = parser.add_subparsers(title=title, dest=f"{name}_{dest}", metavar=metavar)
    kinds.required = True
    return kinds
