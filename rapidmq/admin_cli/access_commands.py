"""``rapidmq users``, ``rapidmq vhosts`` and ``rapidmq permissions``: accounts from the shell.

They talk to the management API (``/api/users``, ``/api/vhosts``,
``/api/permissions``) with the same global options, output formats and
one-line errors as the other admin commands, so they work against RabbitMQ too.

``--password`` after ``users add`` and ``users change-password`` is the new
user's password, not the login's: give the login's before the command
(``rapidmq --password ADMINPASS users add ...``) or in ``RAPIDMQ_PASSWORD``.
``--password -`` reads the new password from the first line of stdin, so it
stays out of the process list and the shell history.  A password is never
printed, not even in JSON output.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rapidmq.admin_cli.common import (
    EXIT_USAGE,
    Context,
    Handler,
    Subparsers,
    add_object_group,
    admin_runner,
    print_items,
    segment,
)

if TYPE_CHECKING:
    from rapidmq.admin_cli.client import Client

__all__ = ["add_access_commands", "parse_tags"]

_USER_COLUMNS = ("name", "tags")
_VHOST_COLUMNS = ("name", "description", "tags", "messages")
_PERMISSION_COLUMNS = ("user", "vhost", "configure", "write", "read")


def parse_tags(values: list[str] | str | None) -> list[str]:
    """Tags given as ``a,b``, ``a b`` or several arguments: unique, blanks dropped, in order."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    parts = (part.strip() for item in items for part in item.replace(",", " ").split())
    return list(dict.fromkeys(part for part in parts if part))


def _new_password(given: str) -> str:
    """The new password: as given, or the first line of stdin for ``-``."""
    from rapidmq.admin_cli.client import AdminError

    if given != "-":
        return given
    line = sys.stdin.readline()
    password = line[:-1] if line.endswith("\n") else line
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise AdminError("no password on stdin", exit_code=EXIT_USAGE)
    return password


# --- users ----------------------------------------------------------------------------------


def _user(client: Client, name: str) -> dict[str, Any]:
    found = client.get(f"/users/{segment(name)}", what=f"user {name!r}")
    return found if isinstance(found, dict) else {}


def _users_add(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    from rapidmq.admin_cli.client import AdminError

    password = _new_password(args.new_password)
    try:
        client.get(f"/users/{segment(args.name)}")
    except AdminError as err:
        if err.status != 404:
            raise
    else:
        raise AdminError(f"user {args.name!r} already exists")
    body = {"password": password, "tags": ",".join(parse_tags(args.tags))}
    client.request("PUT", f"/users/{segment(args.name)}", body=body)
    return ctx.done(f"user {args.name!r} added")


def _users_delete(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    client.request("DELETE", f"/users/{segment(args.name)}", what=f"user {args.name!r}")
    return ctx.done(f"user {args.name!r} deleted")


def _users_list(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    return print_items(client.get("/users"), _USER_COLUMNS, ctx)


def _users_set_tags(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    user = _user(client, args.name)
    tags = parse_tags(args.tags)
    body = {
        "password_hash": str(user.get("password_hash", "")),
        "hashing_algorithm": user.get("hashing_algorithm", "rabbit_password_hashing_sha256"),
        "tags": ",".join(tags),
    }
    client.request("PUT", f"/users/{segment(args.name)}", body=body, what=f"user {args.name!r}")
    return ctx.done(f"tags of user {args.name!r} set to {','.join(tags) or '(none)'}")


def _users_change_password(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    password = _new_password(args.new_password)
    user = _user(client, args.name)
    body = {"password": password, "tags": ",".join(str(t) for t in user.get("tags") or [])}
    client.request("PUT", f"/users/{segment(args.name)}", body=body, what=f"user {args.name!r}")
    return ctx.done(f"password of user {args.name!r} changed")


# --- vhosts ---------------------------------------------------------------------------------


def _vhosts_add(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body: dict[str, Any] = {"description": args.description or ""}
    if args.tags is not None:
        body["tags"] = ",".join(parse_tags(args.tags))
    client.request("PUT", f"/vhosts/{segment(args.name)}", body=body)
    return ctx.done(f"vhost {args.name!r} added")


def _vhosts_delete(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    client.request("DELETE", f"/vhosts/{segment(args.name)}", what=f"vhost {args.name!r}")
    return ctx.done(f"vhost {args.name!r} deleted")


def _vhosts_list(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    return print_items(client.get("/vhosts"), _VHOST_COLUMNS, ctx)


# --- permissions ----------------------------------------------------------------------------


def _permission_path(args: argparse.Namespace, ctx: Context) -> str:
    return f"/permissions/{ctx.v}/{segment(args.username)}"


def _permissions_set(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    body = {"configure": args.configure, "write": args.write, "read": args.read}
    what = f"user {args.username!r} or vhost {ctx.vhost!r}"
    client.request("PUT", _permission_path(args, ctx), body=body, what=what)
    return ctx.done(f"permissions of user {args.username!r} in vhost {ctx.vhost!r} set")


def _permissions_clear(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    what = f"permissions of user {args.username!r} in vhost {ctx.vhost!r}"
    client.request("DELETE", _permission_path(args, ctx), what=what)
    return ctx.done(f"permissions of user {args.username!r} in vhost {ctx.vhost!r} cleared")


def _permissions_list(client: Client, args: argparse.Namespace, ctx: Context) -> int:
    if ctx.vhost_given:
        items = client.get(f"/vhosts/{ctx.v}/permissions", what=f"vhost {ctx.vhost!r}")
    else:
        items = client.get("/permissions")
    return print_items(items, _PERMISSION_COLUMNS, ctx)


# --- the parser -------------------------------------------------------------------------------


def _parents(*, own_password: bool) -> argparse.ArgumentParser:
    """The global options for after the command; ``own_password`` keeps ``--password`` free."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output (before or after the command)")
    group.add_argument("--url", default=argparse.SUPPRESS, help="management API base URL")
    group.add_argument("--user", default=argparse.SUPPRESS, help="user name to log in as")
    if not own_password:
        group.add_argument("--password", default=argparse.SUPPRESS, help="password to log in with")
    group.add_argument("--vhost", default=argparse.SUPPRESS, help="virtual host (default /)")
    group.add_argument(
        "--format", choices=("table", "json"), default=argparse.SUPPRESS, help="table or json"
    )
    return parent


def _leaf(
    group: Subparsers,
    name: str,
    summary: str,
    examples: str,
    handler: Handler,
    *,
    own_password: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_parents(own_password=own_password)],
        allow_abbrev=False,
    )
    parser.set_defaults(run=admin_runner(handler))
    return parser


def _group(subcommands: Subparsers, name: str, summary: str, description: str) -> Subparsers:
    return add_object_group(
        subcommands, name, summary, description, title="actions", metavar="ACTION", dest="action"
    )


def _add_new_password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password",
        dest="new_password",
        required=True,
        metavar="PASSWORD",
        help="the user's new password, or - to read it from stdin (never printed)",
    )


def add_access_commands(subcommands: Subparsers) -> None:
    """Add ``users``, ``vhosts`` and ``permissions`` to the ``rapidmq`` parser."""
    users = _group(
        subcommands,
        "users",
        "add, delete, list users; set tags and passwords",
        "Manage the broker's users. The login's own password goes before the\n"
        "command (rapidmq --password ADMINPASS users add ...) or in RAPIDMQ_PASSWORD.",
    )
    add = _leaf(
        users,
        "add",
        "add a user with a password and tags",
        "rapidmq users add alice --password s3cret --tags monitoring\n"
        "printf 's3cret\\n' | rapidmq users add alice --password -",
        _users_add,
        own_password=True,
    )
    add.add_argument("name", help="the user's name")
    _add_new_password(add)
    add.add_argument("--tags", default=None, help="comma-separated tags, e.g. administrator")
    delete = _leaf(users, "delete", "delete a user", "rapidmq users delete alice", _users_delete)
    delete.add_argument("name", help="the user's name")
    _leaf(users, "list", "list users and their tags", "rapidmq users list", _users_list)
    tags = _leaf(
        users,
        "set-tags",
        "replace a user's tags",
        "rapidmq users set-tags alice administrator,monitoring\nrapidmq users set-tags alice ''",
        _users_set_tags,
    )
    tags.add_argument("name", help="the user's name")
    tags.add_argument("tags", nargs="*", metavar="TAGS", help="the tags (none clears them)")
    change = _leaf(
        users,
        "change-password",
        "change a user's password",
        "rapidmq users change-password alice --password -",
        _users_change_password,
        own_password=True,
    )
    change.add_argument("name", help="the user's name")
    _add_new_password(change)

    vhosts = _group(subcommands, "vhosts", "add, delete, list virtual hosts", "Manage vhosts.")
    vadd = _leaf(
        vhosts,
        "add",
        "add a virtual host",
        "rapidmq vhosts add staging --description 'staging apps' --tags qa",
        _vhosts_add,
    )
    vadd.add_argument("name", help="the vhost's name")
    vadd.add_argument("--description", default=None, help="what the vhost is for")
    vadd.add_argument("--tags", default=None, help="comma-separated tags")
    vdel = _leaf(
        vhosts,
        "delete",
        "delete a virtual host and everything in it",
        "rapidmq vhosts delete staging",
        _vhosts_delete,
    )
    vdel.add_argument("name", help="the vhost's name")
    _leaf(vhosts, "list", "list virtual hosts", "rapidmq vhosts list", _vhosts_list)

    permissions = _group(
        subcommands,
        "permissions",
        "set, clear, list user permissions",
        "Manage the configure, write and read permissions of users in --vhost (default /).",
    )
    pset = _leaf(
        permissions,
        "set",
        "grant a user permissions in a vhost",
        "rapidmq permissions set alice --vhost staging --configure '^alice-' "
        "--write '.*' --read '.*'",
        _permissions_set,
    )
    # dest differs from --user (the login), which would otherwise take the value
    pset.add_argument("username", metavar="USER", help="the user's name")
    for kind in ("configure", "write", "read"):
        pset.add_argument(
            f"--{kind}", required=True, metavar="REGEX", help=f"resources the user may {kind}"
        )
    pclear = _leaf(
        permissions,
        "clear",
        "remove a user's permissions in a vhost",
        "rapidmq permissions clear alice --vhost staging",
        _permissions_clear,
    )
    pclear.add_argument("username", metavar="USER", help="the user's name")
    _leaf(
        permissions,
        "list",
        "list permissions (of every vhost unless --vhost is given)",
        "rapidmq permissions list\nrapidmq permissions list --vhost staging",
        _permissions_list,
    )
