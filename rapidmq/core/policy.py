"""Policies and operator policies: the record, validation, matching and merging.

Theory of operation: a policy is a named rule of one vhost: a regular
expression on object names (``re.search``, as RabbitMQ's ``re:run`` finds a
match anywhere), which objects it applies to (``apply-to``), a priority and a
definition of settings.  Of the policies that match an object the one with the
highest priority applies, alone; operator policies are chosen the same way, and
the two definitions are merged key by key, the lower value winning where both
set a limit.  A queue's settings then come from its x-arguments and that merged
definition, following :data:`QUEUE_POLICY_KEYS`.

Everything here is pure: the vhost's :class:`~rapidmq.core.vhost_policies.VhostPolicies`
keeps the state and applies the results to live queues and exchanges.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidmq.core.arguments import QueueSettings, parse_max_age
from rapidmq.core.errors import PreconditionFailed

__all__ = [
    "APPLY_TO",
    "OPERATOR_POLICY_KEYS",
    "QUEUE_POLICY_KEYS",
    "InvalidPolicy",
    "Policy",
    "applies",
    "choose",
    "effective_definition",
    "erlang_term",
    "exchange_alternate",
    "make_policy",
    "queue_settings",
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

# A quorum queue ignores a policy holding any of these keys, and a stream any
# policy holding a key not in its list, as RabbitMQ 3.10's queue types do: the
# next matching policy may then apply.
_NOT_FOR_QUORUM = frozenset(
    {
        "max-priority",
        "queue-mode",
        "single-active-consumer",
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
        "queue-master-locator",
        "max-age",
        "stream-max-segment-size-bytes",
    }
)
_FOR_STREAMS = frozenset(
    {
        "max-length-bytes",
        "max-age",
        "stream-max-segment-size-bytes",
        "queue-leader-locator",
        "initial-cluster-size",
    }
)


class InvalidPolicy(PreconditionFailed):
    """A policy RabbitMQ would refuse; the text is RabbitMQ's validation message."""


@dataclass(slots=True, frozen=True)
class Policy:
    """One policy (or operator policy) of one vhost, validated."""

    vhost: str
    name: str
    pattern: str
    apply_to: str
    definition: Mapping[str, Any]
    priority: int | float
    regex: re.Pattern[str] = field(compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The policy as RabbitMQ's API and definitions files show it."""
        return {
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(self.definition),
            "priority": self.priority,
        }


# -- validation ------------------------------------------------------------------------


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


def make_policy(vhost: str, name: str, body: Mapping[str, Any], *, operator: bool) -> Policy:
    """A policy from the fields RabbitMQ's API takes, validated in RabbitMQ's order.

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
    return Policy(vhost, name, pattern, apply_to, definition, priority, regex)


# -- matching ---------------------------------------------------------------------------


def applies(policy: Policy, name: str, kind: str) -> bool:
    """Whether ``policy`` applies to the object ``name`` of ``kind``.

    ``kind`` is ``exchange`` or a queue type (``classic``, ``quorum``, ``stream``).
    """
    if kind not in APPLY_TO[policy.apply_to]:
        return False
    if kind == "quorum" and not _NOT_FOR_QUORUM.isdisjoint(policy.definition):
        return False
    if kind == "stream" and not _FOR_STREAMS.issuperset(policy.definition):
        return False
    return policy.regex.search(name) is not None


def choose(policies: Iterable[Policy], name: str, kind: str) -> Policy | None:
    """The policy that applies to ``name``: the highest priority among those matching.

    RabbitMQ leaves a tie to the order of its table, which follows a hash of
    the names; RapidMQ takes the name that sorts first, so the choice is stable.
    """
    best: Policy | None = None
    for policy in policies:
        if not applies(policy, name, kind):
            continue
        if (
            best is None
            or policy.priority > best.priority
            or (policy.priority == best.priority and policy.name < best.name)
        ):
            best = policy
    return best


def effective_definition(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """The two definitions merged as RabbitMQ merges them: the lower limit wins."""
    if policy is None:
        return {} if operator is None else dict(operator.definition)
    merged = dict(policy.definition)
    if operator is not None:
        for key, value in operator.definition.items():
            mine = merged.get(key)
            merged[key] = value if mine is None else min(mine, value)
    return dict(sorted(merged.items()))


# -- settings ----------------------------------------------------------------------------

_MIN, _ARGUMENT, _POLICY = "min", "argument", "policy"

#: How an x-argument and the policy's value combine, per key and queue type, as
#: RabbitMQ 3.10's classic queues, quorum queues and streams resolve them:
#: ``min`` takes the lower, ``argument`` lets the queue's own argument win and
#: ``policy`` the policy.  (policy key, QueueSettings field, classic, quorum, stream)
QUEUE_POLICY_KEYS: tuple[tuple[str, str, str, str, str], ...] = (
    ("message-ttl", "message_ttl_ms", _MIN, _MIN, _MIN),
    ("expires", "expires_ms", _MIN, _POLICY, _MIN),
    ("max-length", "max_length", _MIN, _MIN, _MIN),
    ("max-length-bytes", "max_length_bytes", _MIN, _MIN, _MIN),
    ("overflow", "overflow", _ARGUMENT, _POLICY, _ARGUMENT),
    ("dead-letter-exchange", "dead_letter_exchange", _ARGUMENT, _ARGUMENT, _ARGUMENT),
    ("dead-letter-routing-key", "dead_letter_routing_key", _ARGUMENT, _ARGUMENT, _ARGUMENT),
    ("dead-letter-strategy", "dead_letter_strategy", _ARGUMENT, _ARGUMENT, _ARGUMENT),
    ("queue-mode", "queue_mode", _ARGUMENT, _ARGUMENT, _ARGUMENT),
    ("delivery-limit", "delivery_limit", _MIN, _MIN, _MIN),
    ("max-age", "max_age_s", _MIN, _MIN, _MIN),
    ("stream-max-segment-size-bytes", "stream_max_segment_size_bytes", _MIN, _MIN, _MIN),
    ("queue-leader-locator", "queue_leader_locator", _ARGUMENT, _ARGUMENT, _ARGUMENT),
)
_RULE_COLUMN = {"classic": 2, "quorum": 3, "stream": 4}


def _policy_value(key: str, value: Any) -> Any:
    if key == "max-age":
        return parse_max_age(value)
    return value


def queue_settings(
    declared: QueueSettings, arguments: Mapping[str, Any], definition: Mapping[str, Any]
) -> QueueSettings:
    """A queue's effective settings: its x-arguments combined with a policy definition.

    Args:
        declared: the settings parsed from the queue's own arguments.
        arguments: those arguments (which of them were given decides ``argument`` rules).
        definition: the merged policy definition (:func:`effective_definition`).
    """
    if not definition:
        return declared
    column = _RULE_COLUMN.get(declared.queue_type, 2)
    changes: dict[str, Any] = {}
    for row in QUEUE_POLICY_KEYS:
        key = row[0]
        if key not in definition:
            continue
        value = _policy_value(key, definition[key])
        if value is None:
            continue
        field_name = row[1]
        if f"x-{key}" not in arguments:
            changes[field_name] = value
            continue
        rule = row[column]
        if rule == _POLICY:
            changes[field_name] = value
        elif rule == _MIN:
            own = getattr(declared, field_name)
            changes[field_name] = value if own is None else min(own, value)
    if not changes:
        return declared
    return dataclasses.replace(declared, **changes)


def exchange_alternate(arguments: Mapping[str, Any], definition: Mapping[str, Any]) -> str | None:
    """An exchange's alternate exchange: its own argument, else the policy's."""
    alternate = arguments.get("alternate-exchange")
    if isinstance(alternate, bytes):
        alternate = alternate.decode("utf-8", "replace")
    if isinstance(alternate, str):
        return alternate
    value = definition.get("alternate-exchange")
    return value if isinstance(value, str) else None
