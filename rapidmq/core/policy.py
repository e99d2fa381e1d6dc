"""Policies and operator policies: the record, matching, precedence and merging.

Theory of operation: a policy is a named rule of one vhost: a regular
expression on object names (``re.search``, as RabbitMQ's ``re:run`` finds a
match anywhere), which objects it applies to (``apply-to``), a priority and a
definition of settings.  Of the policies that match an object the one with the
highest priority applies, alone; operator policies are chosen the same way, and
the two definitions are merged key by key, the lower value winning where both
set a limit.  A queue's settings then come from its x-arguments and that merged
definition, following :data:`QUEUE_POLICY_KEYS`.

Validation, with RabbitMQ's texts, is :mod:`rapidmq.core.policy_validation`.
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
from rapidmq.core.policy_validation import (
    APPLY_TO,
    OPERATOR_POLICY_KEYS,
    InvalidPolicy,
    erlang_term,
    validate_policy,
)

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


# -- building ----------------------------------------------------------------------------


def make_policy(vhost: str, name: str, body: Mapping[str, Any], *, operator: bool) -> Policy:
    """A policy from the fields RabbitMQ's API takes, validated in RabbitMQ's order.

    ``body`` holds ``pattern`` and ``definition`` (both required; the caller
    checks they are present), and optionally ``priority`` (0) and ``apply-to``
    (``all``).

    Raises:
        InvalidPolicy: with RabbitMQ's text for the first problem found.
    """
    valid = validate_policy(body, operator=operator)
    return Policy(
        vhost, name, valid.pattern, valid.apply_to, valid.definition, valid.priority, valid.regex
    )


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
