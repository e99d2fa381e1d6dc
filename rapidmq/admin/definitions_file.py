"""Definitions imported from a file at start-up (``load_definitions``).

The file is RabbitMQ's definitions format and goes through the same import as
``POST /api/definitions``, at every start, after the stores are restored and
before any listener opens: as with RabbitMQ, the file is the source of truth
for what it names on each boot, and importing it again changes nothing that is
already as it says (queues and exchanges that exist are left as they are, with
their messages).  A directory imports each of its ``*.json`` files in name
order, as RabbitMQ does.

Any problem stops start-up with a :class:`~rapidmq.config.ConfigError` line
naming the file and the fix.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rapidmq.admin.definitions import import_definitions, parse_definitions
from rapidmq.admin.util import ApiError
from rapidmq.config import ConfigError

if TYPE_CHECKING:
    from rapidmq.server import Server

__all__ = ["load_definitions_file"]

#: The actor named in the import's log line and audit events.
ACTOR = "load_definitions"

_WHERE = "fix load_definitions (--load-definitions, RAPIDMQ_LOAD_DEFINITIONS or rabbitmq.conf)"


def load_definitions_file(server: Server, path: str) -> None:
    """Import the definitions file (or directory of files) at ``path`` into ``server``.

    Raises:
        ConfigError: the path is missing or unreadable, or a file is not valid
            definitions.
    """
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name) for name in os.listdir(path) if name.endswith(".json")
        )
    else:
        files = [path]
    for file in files:
        _import_file(server, file)


def _import_file(server: Server, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"definitions file {path} not found; {_WHERE}") from None
    except OSError as err:
        raise ConfigError(
            f"definitions file {path} cannot be read ({err.strerror}); {_WHERE}"
        ) from None
    try:
        body = parse_definitions(raw)
    except ValueError as err:
        raise ConfigError(
            f"definitions file {path} is not a JSON definitions object ({err}); "
            "fix the file (export one with GET /api/definitions)"
        ) from None
    try:
        import_definitions(server, body, ACTOR)
    except ApiError as err:
        reason = err.reason if isinstance(err.reason, str) else "; ".join(err.reason)
        raise ConfigError(f"definitions file {path}: {reason}; fix the file") from None
