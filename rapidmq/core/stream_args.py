"""Where a stream consumer starts reading: the ``x-stream-offset`` argument.

What a stream may be declared with is checked with the other queue types (see
:mod:`rapidmq.core.quorum`).

The reply texts are RabbitMQ 3.10's (``rabbit_stream_queue`` and
``rabbit_queue_type``), checked against a running RabbitMQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rapidmq.core.arguments import amqp_type_name, erlang_repr, parse_max_age
from rapidmq.core.errors import PreconditionFailed

__all__ = ["StartAt", "parse_stream_offset"]


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
