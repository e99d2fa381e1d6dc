"""What a stream accepts: its declaration, and where a consumer starts reading.

The reply texts are RabbitMQ 3.10's (``rabbit_stream_queue`` and
``rabbit_queue_type``), checked against a running RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rapidmq.core.arguments import amqp_type_name, erlang_repr, parse_max_age
from rapidmq.core.errors import PreconditionFailed

__all__ = ["StartAt", "check_stream_declare", "parse_stream_offset"]

#: The queue arguments a stream accepts; any other known queue argument is refused.
STREAM_ARGUMENTS = frozenset(
    {
        "x-queue-type",
        "x-max-length-bytes",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
        "x-queue-leader-locator",
    }
)


def check_stream_declare(
    arguments: Mapping[str, Any],
    known: tuple[str, ...],
    resource: str,
    *,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
) -> None:
    """Refuse what a stream cannot be, in RabbitMQ's order: arguments, then properties.

    Unknown ``x-`` arguments are accepted (and ignored), as RabbitMQ does.

    Raises:
        PreconditionFailed: with RabbitMQ's text.
    """
    for key in arguments:
        if key in known and key not in STREAM_ARGUMENTS:
            raise PreconditionFailed(
                f"invalid arg '{key}' for {resource} of queue type rabbit_stream_queue"
            )
    for refused, name in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner")):
        if refused:
            raise PreconditionFailed(f"invalid property '{name}' for {resource}")
    if not durable:
        raise PreconditionFailed(f"invalid property 'non-durable' for {resource}")


@dataclass(slots=True, frozen=True)
class StartAt:
    """Where a consumer starts: ``kind`` is first, last, next, offset or time."""

    kind: str
    offset: int = 0
    time_s: float = 0.0  # wall-clock seconds, for ``time``


_NEXT = StartAt("next")


def parse_stream_offset(value: object, resource: str, now_s: float) -> StartAt:
    """The ``x-stream-offset`` consumer argument.

    Args:
        value: the argument as the front end decoded it (absent: ``None``).
        resource: the stream's name as reply texts show it.
        now_s: wall-clock seconds, for an interval such as ``30m``.

    Raises:
        PreconditionFailed: RabbitMQ's ``invalid_stream_offset_arg`` text.
    """
    if value is None:
        return _NEXT
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        if value in ("first", "last", "next"):
            return StartAt(value)
        seconds = parse_max_age(value)
        if seconds is not None and seconds > 0:
            return StartAt("time", time_s=now_s - seconds)
    elif isinstance(value, int) and not isinstance(value, bool):
        return StartAt("offset", offset=max(value, 0))
    elif isinstance(value, datetime):
        return StartAt("time", time_s=value.timestamp())
    # RabbitMQ 3.10 closes the connection (541) for strings not led by a digit and
    # for other types; RapidMQ answers all of them as it answers "10x".
    shown = erlang_repr(value)
    type_name = amqp_type_name(value)
    if type_name == "longstr":
        shown = f'<<"{shown}">>'
    raise PreconditionFailed(
        f"invalid arg 'x-stream-offset' for {resource}: "
        f"{{invalid_stream_offset_arg,{{{type_name},{shown}}}}}"
    )
