"""Validation and comparison of x-arguments, with RabbitMQ's reply texts.

The core sees argument values as plain Python values; AMQP type names (as they
appear in RabbitMQ's messages) are inferred from the Python type the AMQP
front end decodes each field type to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from rapidmq.core.errors import PreconditionFailed
from rapidmq.core.quorum import queue_type_of, unsupported

__all__ = [
    "QUEUE_ARGUMENT_KEYS",
    "QueueSettings",
    "amqp_type_name",
    "check_arguments_equivalence",
    "check_field_equivalence",
    "erlang_repr",
    "parse_max_age",
    "parse_queue_arguments",
    "resource_name",
]

MAX_EXPIRY_MS = 315_360_000_000  # RabbitMQ's ?MAX_EXPIRY_TIMER (ten years)
MAX_SUPPORTED_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


def resource_name(kind: str, name: str, vhost: str) -> str:
    """``queue 'q' in vhost '/'``, as RabbitMQ's ``rabbit_misc:rs/1`` prints it."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def amqp_type_name(value: object) -> str:
    """The AMQP field-table type RabbitMQ would report for ``value``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, str | bytes | bytearray):
        return "longstr"
    if isinstance(value, float):
        return "double"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    return "void"


def _type_class(value: object) -> str:
    name = amqp_type_name(value)
    if name in ("signedint", "long"):
        return "int"
    if name == "double":
        return "float"
    return name


def erlang_repr(value: object) -> str:
    """``value`` as Erlang's ``~p`` / ``~s`` would show it in a reply text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _described(value: object) -> str:
    if value is None:
        return "none"
    return f"the value '{erlang_repr(value)}' of type '{amqp_type_name(value)}'"


def check_field_equivalence(current: object, received: object, resource: str, key: str) -> None:
    """Raise 406 unless a redeclared field equals the existing one."""
    if current != received or type(current) is not type(received):
        raise PreconditionFailed(
            f"inequivalent arg '{key}' for {resource}: "
            f"received '{erlang_repr(received)}' but current is '{erlang_repr(current)}'"
        )


def check_arguments_equivalence(
    current: Mapping[str, Any],
    received: Mapping[str, Any],
    resource: str,
    keys: tuple[str, ...],
) -> None:
    """Raise 406 if any of ``keys`` differs between the two argument tables."""
    for key in keys:
        old = current.get(key)
        new = received.get(key)
        if old is None and new is None:
            continue
        if old is not None and new is not None:
            if _type_class(old) == _type_class(new) and old == new:
                continue
            raise PreconditionFailed(
                f"inequivalent arg '{key}' for {resource}: "
                f"received '{erlang_repr(new)}' but current is '{erlang_repr(old)}'"
            )
        raise PreconditionFailed(
            f"inequivalent arg '{key}' for {resource}: "
            f"received {_described(new)} but current is {_described(old)}"
        )


@dataclass(slots=True, frozen=True)
class QueueSettings:
    """The queue x-arguments RapidMQ acts on, parsed and validated."""

    message_ttl_ms: int | None = None
    expires_ms: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int = 0
    single_active_consumer: bool = False
    queue_type: str = "classic"
    queue_mode: str = "default"
    #: Quorum queues: returns before a message is dead-lettered or dropped.
    delivery_limit: int | None = None
    #: Quorum queues: ``at-most-once`` (RabbitMQ's default) or ``at-least-once``.
    dead_letter_strategy: str = "at-most-once"
    #: Streams: retention by age (``x-max-age``), in seconds.
    max_age_s: int | None = None
    #: Streams: the size at which a segment is closed (RabbitMQ's default 500 MB).
    stream_max_segment_size_bytes: int = 500_000_000
    #: Where a replicated queue's leader goes (``client-local`` or ``balanced``).
    queue_leader_locator: str | None = None
    #: Replicas of a quorum queue or stream (``x-quorum-initial-group-size``).
    initial_group_size: int | None = None


class _Invalid(Exception):
    """An argument value RabbitMQ refuses; ``args[0]`` is the Erlang-formatted reason."""


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f'"expected integer, got {amqp_type_name(value)}"')
    return value


def _non_negative(value: object) -> int:
    number = _int(value)
    if number < 0:
        raise _Invalid(f"{{value_negative,{number}}}")
    return number


def _expiry(value: object) -> int:
    number = _non_negative(value)
    if number > MAX_EXPIRY_MS:
        raise _Invalid(f"{{value_too_large,{number}}}")
    return number


def _expires(value: object) -> int:
    number = _int(value)
    if number == 0:
        raise _Invalid("{value_zero,0}")
    return _expiry(number)


def _max_priority(value: object) -> int:
    number = _non_negative(value)
    if number > MAX_SUPPORTED_PRIORITY:
        raise _Invalid(f"{{max_value_exceeded,{number}}}")
    return number


def _longstr(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise _Invalid(f"{{unacceptable_type,{amqp_type_name(value)}}}")
    return value


def _overflow(value: object) -> str:
    text = _longstr(value)
    if text not in OVERFLOW_MODES:
        raise _Invalid("invalid_overflow")
    return text


def _group_size(value: object) -> int:
    if value == 0 and not isinstance(value, bool):
        raise _Invalid("{value_zero,0}")
    return _non_negative(value)


def _delivery_limit(value: object) -> int | None:
    # RabbitMQ 3.10 validates nothing here: a value that is no integer sets no limit.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{{unacceptable_type,{amqp_type_name(value)}}}")
    return value


def _queue_mode(value: object) -> str:
    text = _longstr(value)
    if text not in ("default", "lazy"):
        raise _Invalid(f"\"unsupported queue mode '{text}'\"")
    return text


def _dead_letter_strategy(value: object) -> str:
    text = _longstr(value)
    if text not in ("at-most-once", "at-least-once"):
        raise _Invalid("invalid_dlx_strategy")
    return text


#: RabbitMQ's units for ``x-max-age``, in seconds.
_AGE_UNITS = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def parse_max_age(text: str) -> int | None:
    """``7D``, ``1h``, ``30m`` as seconds; None when the text is not such a value."""
    unit = _AGE_UNITS.get(text[-1:])
    digits = text[:-1]
    if unit is None or not digits.isascii() or not digits.isdigit() or not int(digits):
        return None  # RabbitMQ refuses a zero age ("0s") as well
    return int(digits) * unit


def _max_age(value: object) -> int:
    text = _longstr(value)
    seconds = parse_max_age(text)
    if seconds is None:
        raise _Invalid("invalid_max_age")
    return seconds


def _leader_locator(value: object) -> str:
    text = _longstr(value)
    if text not in ("client-local", "balanced", "random", "least-leaders"):
        raise _Invalid("invalid_queue_locator_arg")
    return text


def _queue_type(value: object) -> str:
    text = _longstr(value)
    if text not in ("classic", "quorum", "stream"):
        raise _Invalid(f"\"unsupported queue type '{text}'\"")
    return text


# The order is RabbitMQ's ``declare_args()``: the first invalid one is reported.
_VALIDATORS: tuple[tuple[str, str, Callable[[object], object]], ...] = (
    ("x-expires", "expires_ms", _expires),
    ("x-message-ttl", "message_ttl_ms", _expiry),
    ("x-dead-letter-exchange", "dead_letter_exchange", _longstr),
    ("x-dead-letter-routing-key", "dead_letter_routing_key", _longstr),
    ("x-max-length", "max_length", _non_negative),
    ("x-max-length-bytes", "max_length_bytes", _non_negative),
    ("x-max-in-memory-length", "", _non_negative),
    ("x-max-in-memory-bytes", "", _non_negative),
    ("x-max-priority", "max_priority", _max_priority),
    ("x-overflow", "overflow", _overflow),
    ("x-queue-mode", "queue_mode", _queue_mode),
    ("x-single-active-consumer", "single_active_consumer", _bool),
    ("x-queue-type", "queue_type", _queue_type),
    ("x-quorum-initial-group-size", "initial_group_size", _group_size),
    ("x-max-age", "max_age_s", _max_age),
    ("x-stream-max-segment-size-bytes", "stream_max_segment_size_bytes", _non_negative),
    ("x-initial-cluster-size", "initial_group_size", _non_negative),
    ("x-queue-leader-locator", "queue_leader_locator", _leader_locator),
    ("x-delivery-limit", "delivery_limit", _delivery_limit),
    ("x-dead-letter-strategy", "dead_letter_strategy", _dead_letter_strategy),
)

QUEUE_ARGUMENT_KEYS: tuple[str, ...] = tuple(key for key, _, _ in _VALIDATORS)


def parse_queue_arguments(arguments: Mapping[str, Any], resource: str) -> QueueSettings:
    """Validate a new queue's arguments as RabbitMQ does and return its settings.

    Raises:
        PreconditionFailed: with RabbitMQ's text for the first invalid argument.
    """
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str | bytes):
        raise PreconditionFailed(
            f"invalid type '{amqp_type_name(dlx)}' for arg 'x-dead-letter-exchange' in {resource}"
        )
    values: dict[str, Any] = {}
    queue_type = queue_type_of(arguments)
    for key, field, validate in _VALIDATORS:
        if key not in arguments or unsupported(queue_type, key):
            continue  # refused by quorum.check_queue_type, after the others' values
        value = arguments[key]
        try:
            parsed = validate(value)
            if key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
                raise _Invalid("routing_key_but_no_dlx_defined")
        except _Invalid as err:
            raise PreconditionFailed(f"invalid arg '{key}' for {resource}: {err.args[0]}") from None
        if field:
            values[field] = parsed
    return QueueSettings(**values)


def parse_expiration(expiration: str) -> int:
    """Parse a per-message ``expiration`` property (milliseconds).

    Raises:
        PreconditionFailed: ``invalid expiration '...': ...`` as RabbitMQ words it.
    """
    text = expiration
    digits = text[1:] if text[:1] in ("+", "-") else text
    end = 0
    while end < len(digits) and digits[end].isascii() and digits[end].isdigit():
        end += 1
    if end == 0:
        reason = "no_integer"
    elif end < len(digits):
        reason = f'{{leftover_string,"{digits[end:]}"}}'
    else:
        number = int(text)
        if number < 0:
            reason = f"{{value_negative,{number}}}"
        elif number > MAX_EXPIRY_MS:
            reason = f"{{value_too_large,{number}}}"
        else:
            return number
    raise PreconditionFailed(f"invalid expiration '{expiration}': {reason}")
