"""The audit trail: who logged in, who was refused, who changed users, vhosts, grants, policies.

Every event is one record on the ``rapidmq.audit`` logger (category ``audit``),
so it appears in the broker's own log in its format, with the event's fields as
structured data.  With ``--audit-log FILE`` each event is also appended to that
file as one JSON object per line, whatever ``--log-format`` says, for shipping
to a SIEM.  Secrets never reach it: callers pass names, addresses and reasons,
never passwords or hashes.

Events (the ``event`` field):

* ``login.succeeded`` / ``login.failed``: ``protocol``, ``user``,
  ``client_address``, and on failure ``reason``;
* ``access.refused``: ``user``, ``vhost``, ``resource``, ``permission``,
  ``protocol``;
* ``user.created`` / ``user.changed`` / ``user.deleted``, ``vhost.created`` /
  ``vhost.changed`` / ``vhost.deleted``, ``permission.set`` /
  ``permission.cleared``, ``topic_permission.set`` / ``topic_permission.cleared``,
  ``limit.set`` / ``limit.cleared``, ``policy.set`` / ``policy.cleared``,
  ``operator_policy.set`` / ``operator_policy.cleared``: ``actor`` and the
  object's names (a policy's ``vhost`` and ``policy``, and when set its
  ``pattern``, ``apply_to``, ``priority`` and ``definition``).
"""

from __future__ import annotations

import logging
from typing import Any

from rapidmq.logs import JSONFormatter

__all__ = ["audit", "configure_audit_file", "log"]

log = logging.getLogger("rapidmq.audit")

_FILE_HANDLER_NAME = "rapidmq-audit-file"


def audit(event: str, message: str, /, **fields: Any) -> None:
    """Record one audit event: ``message`` for people, ``fields`` for machines."""
    level = logging.WARNING if event.endswith((".failed", ".refused")) else logging.INFO
    log.log(level, "%s", message, extra={"event": event, **fields})


def configure_audit_file(path: str) -> None:
    """Also append every audit event to ``path`` as JSON lines ("" = no file).

    Raises:
        OSError: the file cannot be opened for appending.
    """
    for handler in list(log.handlers):
        if handler.get_name() == _FILE_HANDLER_NAME:
            log.removeHandler(handler)
            handler.close()
    if not path:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.set_name(_FILE_HANDLER_NAME)
    handler.setFormatter(JSONFormatter())
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
