"""Log set-up for ``rapidmq serve``: text or JSON lines on stderr, with categories.

Theory of operation
-------------------
Every RapidMQ log line has a *category*, and the category is carried by the
logger's name, so a statement never has to pass it: ``rapidmq.connection``,
``rapidmq.channel``, ``rapidmq.auth``, ``rapidmq.storage`` and ``rapidmq.admin``
are the precise loggers, and :data:`CATEGORIES` maps the older, coarser ones
(``rapidmq.amqp``, ``rapidmq.core``, plain ``rapidmq``...) to the nearest
category.  Operators filter on the category; they should not need to know the
module layout, which is free to change.

Two formatters share that mapping:

* :class:`TextFormatter` (the default) writes the line a person reads in a
  terminal, ``2026-11-29 09:00:00,123 INFO connection: accepted AMQP ...``.
  Structured fields are left out: the message already says everything.
* :class:`JSONFormatter` writes one JSON object per line for log shippers, with
  the event's structured fields (given with logging's ``extra=``) as extra keys.
  A traceback goes into one ``exception`` string, so a line is always one object.

Connections are logged once when they open and once when they close, whatever
way they end.  The protocol front ends have several ways to end a connection
(client close, server close, timeouts, a lost socket, shutdown, take-over), and
some of them run one after another for the same connection.  Rather than give
each front end a flag to remember what was logged, :func:`connection_opened`
files the open connection in a weak table and :func:`connection_closed` logs only
if it takes the connection out of it: the first close wins, later ones are no-ops,
and a connection that never opened never logs a close.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "CATEGORIES",
    "JSONFormatter",
    "TextFormatter",
    "category_of",
    "client_product",
    "configure_logging",
    "connection_closed",
    "connection_opened",
]

#: Logger name -> category; a logger takes the entry of its nearest listed ancestor.
CATEGORIES: dict[str, str] = {
    "rapidmq": "broker",
    "rapidmq.core": "broker",
    "rapidmq.server": "broker",
    "rapidmq.connection": "connection",
    "rapidmq.amqp": "connection",
    "rapidmq.mqtt": "connection",
    "rapidmq.transport": "connection",
    "rapidmq.channel": "channel",
    "rapidmq.auth": "auth",
    "rapidmq.storage": "storage",
    "rapidmq.admin": "admin",
    "rapidmq.audit": "audit",
}

#: Libraries that are quiet (WARNING and up) unless the broker runs at debug level.
THIRD_PARTY_LOGGERS = ("hypercorn", "hypercorn.error", "hypercorn.access", "asyncio", "trio")

_TEXT_LAYOUT = "%(asctime)s %(levelname)s %(category)s: %(message)s"

# Attributes every LogRecord has; whatever else a record carries came from ``extra=``.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "category",
    "taskName",
}

# The keys JSONFormatter always writes; an ``extra`` field cannot replace them.
_FIXED_KEYS = ("time", "level", "category", "logger", "message", "exception")

# A client chooses its product name and connection name; a newline in them must not
# let it write a line of its own into a text log.
_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in range(32) if c != 9} | {0x7F: "\\x7f"}
_CONTROL_ESCAPES.update({10: "\\n", 13: "\\r"})

connection_log = logging.getLogger("rapidmq.connection")


@functools.lru_cache(maxsize=256)
def category_of(logger_name: str) -> str:
    """The category of a logger: its nearest ancestor's in :data:`CATEGORIES`.

    Loggers outside RapidMQ are named by their top-level package (``hypercorn``),
    which is what an operator would search for.
    """
    name = logger_name
    while True:
        category = CATEGORIES.get(name)
        if category is not None:
            return category
        if "." not in name:
            return name or "broker"
        name = name.rsplit(".", 1)[0]


class TextFormatter(logging.Formatter):
    """``2026-11-29 09:00:00,123 INFO connection: message`` (local time, as ``logging``)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_LAYOUT)

    def format(self, record: logging.LogRecord) -> str:
        record.category = category_of(record.name)
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Only the message is escaped: a traceback appended after it keeps its lines.
        record.message = record.message.translate(_CONTROL_ESCAPES)
        return super().formatMessage(record)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, category, logger, message, event fields.

    ``ensure_ascii`` stays on: non-ASCII text arrives as ``\\u`` escapes, so a line
    survives any stderr encoding, and U+2028/U+2029, which some line readers
    (Python's ``str.splitlines`` among them) take for line breaks, cannot split it.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "category": category_of(record.name),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and key not in _FIXED_KEYS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def _iso_utc(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when set up.

    Test runners and embedding programs swap ``sys.stderr``; a handler that kept
    the stream of the first call would write to a closed or stale file.
    """

    _rapidmq = True  # marks the handler configure_logging owns, so a new call replaces it

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send all logs to stderr at ``level``, as text lines or JSON objects.

    Safe to call again (tests do, and so may an embedding program): the handler of
    the previous call is replaced, never doubled.  RapidMQ's loggers run at
    ``level``; other libraries stay at WARNING unless ``level`` is debug, since
    their info lines (a web server's start-up chatter) are noise in a broker log.
    Python warnings go through logging too, so JSON output stays one object a line.
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r}; use 'text' or 'json'")
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    debug = numeric <= logging.DEBUG
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_rapidmq", False):
            root.removeHandler(old)
            old.close()
    handler = _StderrHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("rapidmq").setLevel(numeric)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
    logging.captureWarnings(True)


# -- connection events -------------------------------------------------------------------


@dataclass(slots=True)
class _Opened:
    since: float  # time.monotonic() when the connection opened
    label: str  # "AMQP connection 127.0.0.1:5555 -> 127.0.0.1:5672"
    details: str  # "(user 'guest', vhost '/', client 'pika 1.3.2')"
    fields: dict[str, Any]


_open_connections: weakref.WeakKeyDictionary[object, _Opened] = weakref.WeakKeyDictionary()


def client_product(client_properties: dict[str, Any]) -> str:
    """``"pika 1.3.2"`` from an AMQP client's ``product`` and ``version`` properties."""
    parts = []
    for key in ("product", "version"):
        value = client_properties.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value:
            parts.append(str(value))
    return " ".join(parts)


def _local_address(connection: object) -> str | None:
    # Set by the transport; None for a handler driven without a socket (unit tests).
    local = getattr(connection, "local_address", None)
    if isinstance(local, tuple) and len(local) == 2:
        return f"{local[0]}:{local[1]}"
    return None


def connection_opened(
    connection: object,
    *,
    protocol: str,
    client_address: str,
    user: str,
    vhost: str,
    product: str,
    connection_name: str = "",
    **more: Any,
) -> None:
    """Log the one ``connection.open`` line of ``connection`` and remember it for the close.

    ``protocol`` is the name shown to people (``"AMQP"``, ``"MQTT"``); the JSON
    field carries it in lower case.
    """
    local = _local_address(connection)
    label = f"{protocol} connection {client_address}"
    if local is not None:
        label += f" -> {local}"
    sent = more.get("sent_username")
    shown_user = f"user '{user}' (sent '{sent}')" if sent is not None else f"user '{user}'"
    details = f"({shown_user}, vhost '{vhost}', client '{product}')"
    fields: dict[str, Any] = {
        "protocol": protocol.lower(),
        "user": user,
        "vhost": vhost,
        "client_address": client_address,
        "client_product": product,
        "connection_name": connection_name,
        **more,
    }
    if local is not None:
        fields["server_address"] = local
    _open_connections[connection] = _Opened(time.monotonic(), label, details, fields)
    connection_log.info(
        "accepted %s %s", label, details, extra={"event": "connection.open", **fields}
    )


def connection_closed(connection: object, reason: str, *, level: int = logging.INFO) -> bool:
    """Log the one ``connection.close`` line of an opened ``connection``.

    Returns False, logging nothing, if the connection never opened or its close
    was logged already, so every path that ends a connection may call it.
    """
    opened = _open_connections.pop(connection, None)
    if opened is None:
        return False
    duration_ms = int((time.monotonic() - opened.since) * 1000)
    connection_log.log(
        level,
        "closed %s %s after %.3fs: %s",
        opened.label,
        opened.details,
        duration_ms / 1000,
        reason,
        extra={
            "event": "connection.close",
            **opened.fields,
            "duration_ms": duration_ms,
            "reason": reason,
        },
    )
    return True
