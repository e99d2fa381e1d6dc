"""Validation of policies and operator policies, with RabbitMQ 3.10.8's texts.

RabbitMQ checks the fields in the order ``priority``, ``pattern``,
``apply-to``, ``definition``; the definition is read as a map, so its keys are
checked in sorted order and the first bad value is reported, and keys no
validator knows are reported together after every known key passed.  The texts
print values as Erlang's ``~p`` does (:func:`erlang_term`); the management API
adds ``Validation failed`` around them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapidmq.core.arguments import parse_max_age
from rapidmq.core.errors import PreconditionFailed

__all__ = [
    "APPLY_TO",
    "OPERATOR_POLICY_KEYS",
    "InvalidPolicy",
    "ValidPolicy",
    "erlang_term",
    "validate_policy",
]

#: What ``apply-to`` may say, and the kinds of object each covers.
APPLY_TO: dict[str, frozenset[str]] = {
    "all": frozenset({"classic", "quorum", "stream", "exchange"}),
    "queues": frozenset({"classic", "quorum", "stream"}),
    "classic_queues": frozenset({"classic"}),
    "quorum_queues": frozenset({"quorum"}),
    "streams": frozenset({"stream"}),
    "exchanges": frozenset({"exchange"}),
}

#: The keys an operator policy may set; each merges with the policy's by the minimum.
OPERATOR_POLICY_KEYS = frozenset(
    {
        "expires",
        "message-ttl",
        "max-length",
        "max-length-bytes",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "delivery-limit",
    }
)


class InvalidPolicy(PreconditionFailed):
    """A policy RabbitMQ would refuse; the text is RabbitMQ's validation message."""


def erlang_term(value: Any) -> str:
    """A JSON value as RabbitMQ's ``~p`` prints it in validation messages."""
    if isinstance(value, str):
        return f'<<"{value}">>'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        items = ",".join(f"{erlang_term(k)} => {erlang_term(value[k])}" for k in sorted(value))
        return f"#{{{items}}}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    return repr(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _whole(minimum: int) -> Any:
    def check(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    return check


def _one_of(*choices: Any) -> Any:
    def check(value: Any) -> bool:
        return not isinstance(value, bool) and value in choices

    return check


def _age(value: Any) -> bool:
    return isinstance(value, str) and parse_max_age(value) is not None


# key -> (check, message after the value); RabbitMQ 3.10.8's texts.
_CHECKS: dict[str, tuple[Any, str]] = {
    "alternate-exchange": (_is_text, "is not a valid alternate exchange name"),
    "dead-letter-exchange": (_is_text, "is not a valid dead letter exchange name"),
    "dead-letter-routing-key": (_is_text, "is not a valid dead letter routing key"),
    "dead-letter-strategy": (
        _one_of("at-most-once", "at-least-once"),
        "is not a valid dead letter strategy",
    ),
    "message-ttl": (_whole(0), "is not a valid message TTL"),
    "expires": (_whole(1), "is not a valid queue expiry"),
    "max-length": (_whole(0), "is not a valid maximum length"),
    "max-length-bytes": (_whole(0), "is not a valid maximum length in bytes"),
    "max-in-memory-length": (_whole(0), "is not a valid maximum memory in bytes"),
    "max-in-memory-bytes": (_whole(0), "is not a valid maximum memory in bytes"),
    "queue-mode": (_one_of("default", "lazy"), "is not a valid queue-mode value"),
    "queue-version": (_one_of(1, 2), "is not a valid queue-version value"),
    "overflow": (
        _one_of("drop-head", "reject-publish", "reject-publish-dlx"),
        "is not a valid overflow value",
    ),
    "delivery-limit": (_whole(0), "is not a valid delivery limit"),
    "max-age": (_age, "is not a valid max age"),
    "stream-max-segment-size-bytes": (_whole(0), "is not a valid segment size"),
    "queue-leader-locator": (
        _one_of("client-local", "balanced", "random", "least-leaders"),
        "is not a valid queue leader locator value",
    ),
    "initial-cluster-size": (_whole(0), "is not a valid cluster size"),
    "queue-master-locator": (
        _one_of("min-masters", "client-local", "random"),
        "invalid queue-master-locator value",
    ),
    "federation-upstream": (_is_text, "is not a valid federation upstream name"),
    "federation-upstream-set": (_is_text, "is not a valid federation upstream set name"),
    "ha-mode": (_one_of("all", "exactly", "nodes"), "is not a valid ha-mode value"),
    "ha-params": (lambda value: True, ""),
    "ha-sync-mode": (_one_of("manual", "automatic"), "is not a valid ha-sync-mode value"),
    "ha-sync-batch-size": (_whole(1), "is not a valid ha-sync-batch-size value"),
    "ha-promote-on-shutdown": (
        _one_of("always", "when-synced"),
        "is not a valid ha-promote-on-shutdown value",
    ),
    "ha-promote-on-failure": (
        _one_of("always", "when-synced"),
        "is not a valid ha-promote-on-failure value",
    ),
}


def _check_mirroring(definition: Mapping[str, Any]) -> None:
    mode = definition.get("ha-mode")
    dependent = ("ha-params", "ha-sync-mode", "ha-promote-on-shutdown")
    if mode is None:
        if any(key in definition for key in dependent):
            raise InvalidPolicy(
                "ha-mode must be specified to specify ha-params, ha-sync-mode or "
                "ha-promote-on-shutdown"
            )
        return
    params = definition.get("ha-params")
    if mode == "all" and params is not None:
        raise InvalidPolicy('ha-mode="all" does not take parameters')
    if mode == "exactly" and params is None:
        raise InvalidPolicy('ha-mode="exactly" takes an integer, none given')
    if mode == "nodes" and params is None:
        raise InvalidPolicy('ha-mode="nodes" takes a list of strings, none given')


def _check_definition(definition: Any, operator: bool) -> dict[str, Any]:
    if not isinstance(definition, dict):
        raise InvalidPolicy(f"definition must be a dictionary: {erlang_term(definition)}")
    if not definition:
        raise InvalidPolicy("no policy provided")
    known = OPERATOR_POLICY_KEYS if operator else _CHECKS.keys()
    # RabbitMQ reads the definition as a map, so its keys come in sorted order.
    for key in sorted(definition):
        if key not in known:
            continue
        check, message = _CHECKS[key]
        if not check(definition[key]):
            raise InvalidPolicy(f"{erlang_term(definition[key])} {message}")
    if not operator:
        _check_mirroring(definition)
    unknown = [key for key in sorted(definition) if key not in known]
    if unknown:
        terms = ",".join(f"{{{erlang_term(k)},{erlang_term(definition[k])}}}" for k in unknown)
        raise InvalidPolicy(f"[{terms}] are not recognised policy settings")
    return dict(definition)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise InvalidPolicy(
            f"pattern should be regular expression but is invalid: {_pcre_reason(pattern, err)}"
        ) from None


def _pcre_reason(pattern: str, err: re.error) -> str:
    """Python's complaint in PCRE's words, for the mistakes people make."""
    message = str(err.msg)
    if message.startswith("missing ), unterminated subpattern"):
        return f'{{"missing )",{len(pattern)}}}'
    if message.startswith("unterminated character set"):
        # Erlang's ~p breaks this one line, as RabbitMQ prints it.
        return f'{{"missing terminating ] for character class",\n{" " * 54}{len(pattern)}}}'
    if message.startswith("nothing to repeat"):
        return f'{{"nothing to repeat",{err.pos or 0}}}'
    return f'{{"{message}",{err.pos or 0}}}'


@dataclass(slots=True, frozen=True)
class ValidPolicy:
    """The checked fields of a policy, before it is given a vhost and a name."""

    pattern: str
    regex: re.Pattern[str]
    apply_to: str
    definition: dict[str, Any]
    priority: int | float


def validate_policy(body: Mapping[str, Any], *, operator: bool) -> ValidPolicy:
    """The fields RabbitMQ's API takes, validated in RabbitMQ's order.

    ``body`` holds ``pattern`` and ``definition`` (both required; the caller
    checks they are present), and optionally ``priority`` (0) and ``apply-to``
    (``all``).

    Raises:
        InvalidPolicy: with RabbitMQ's text for the first problem found.
    """
    priority = body.get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        raise InvalidPolicy(f"priority should be a number, actually was {erlang_term(priority)}")
    pattern = body.get("pattern")
    if not isinstance(pattern, str):
        raise InvalidPolicy(f"pattern should be a binary but was {erlang_term(pattern)}")
    regex = _compile(pattern)
    apply_to = body.get("apply-to", "all")
    if apply_to is None:
        apply_to = "all"
    if not isinstance(apply_to, str) or apply_to not in APPLY_TO:
        shown = apply_to if isinstance(apply_to, str) else erlang_term(apply_to)
        raise InvalidPolicy(
            f"apply-to '{shown}' unrecognised; should be one of: 'queues', "
            "'classic_queues', 'quorum_queues', 'streams', 'exchanges', or 'all'"
        )
    definition = _check_definition(body.get("definition"), operator)
    return ValidPolicy(pattern, regex, apply_to, definition, priority)
