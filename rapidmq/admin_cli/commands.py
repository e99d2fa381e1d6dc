"""The admin subcommands of ``rapidmq``, registered in the order ``--help`` lists them.

Each group of commands lives in its own module: :mod:`.status` (``status``,
``close``), :mod:`.objects` (``list``, ``declare``, ``delete``, ``purge``),
:mod:`.policy_commands` (``set``, ``clear``),
:mod:`.messages` (``publish``, ``get``) and :mod:`.definitions`; what they
share is in :mod:`.common`. ``users``, ``vhosts`` and ``permissions`` are in
:mod:`.access_commands`.

The names re-exported here are the ones this module offered before the split,
so that code importing them from here keeps working.
"""

from __future__ import annotations

from rapidmq.admin_cli.common import (
    DEFAULT_URL,
    Context,
    Subparsers,
    add_global_options,
    global_parent,
    json_object,
    run_admin,
)
from rapidmq.admin_cli.definitions import add_definitions_commands
from rapidmq.admin_cli.messages import add_message_commands, message_property
from rapidmq.admin_cli.objects import LISTS, add_object_commands
from rapidmq.admin_cli.policy_commands import add_policy_commands
from rapidmq.admin_cli.status import add_close_commands, add_status_command

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


def add_admin_commands(subcommands: Subparsers) -> None:
    """Add ``status``, ``list``, ``declare`` ... to the ``rapidmq`` parser."""
    parent = global_parent()
    add_status_command(subcommands, parent)
    add_object_commands(subcommands, parent)
    add_policy_commands(subcommands, parent)
    add_message_commands(subcommands, parent)
    add_close_commands(subcommands, parent)
    add_definitions_commands(subcommands, parent)
