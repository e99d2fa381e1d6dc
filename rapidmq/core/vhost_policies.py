"""The policies of one vhost, and what they do to its live queues and exchanges.

Theory of operation: :class:`VhostPolicies` holds the vhost's policies and
operator policies, and for every queue the settings its own arguments give
(``declared``) with the policies that apply to it now.  A queue's effective
settings are resolved when it is declared or restored and again whenever a
policy is set or cleared, never per message: a policy change walks every queue
and exchange once, and calls ``apply_settings`` only on the queues whose
policies changed, so the publish path reads plain attributes as before.

Queues are reached only through ``apply_settings(settings)``, ``name`` and
``arguments``, so any queue class the vhost holds takes part.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rapidmq.core.arguments import QueueSettings, resource_name
from rapidmq.core.policy import (
    Policy,
    choose,
    effective_definition,
    exchange_alternate,
    queue_settings,
)
from rapidmq.core.quorum import effective_settings

if TYPE_CHECKING:
    from rapidmq.core.durable import Recorder
    from rapidmq.core.exchange import Exchange

__all__ = ["NO_POLICIES", "AppliedPolicies", "SettingsTarget", "VhostPolicies"]

log = logging.getLogger("rapidmq.core")


class SettingsTarget(Protocol):
    """What a policy change needs of a queue, whatever its class."""

    def apply_settings(self, settings: QueueSettings) -> None: ...


@dataclass(slots=True, frozen=True)
class AppliedPolicies:
    """The policy and operator policy that apply to one object, and their merge."""

    policy: Policy | None = None
    operator_policy: Policy | None = None
    definition: Mapping[str, Any] = field(default_factory=dict)


NO_POLICIES = AppliedPolicies()


@dataclass(slots=True)
class _QueueState:
    declared: QueueSettings
    arguments: Mapping[str, Any]
    applied: AppliedPolicies


class VhostPolicies:
    """Policies and operator policies of one vhost, applied as they change."""

    def __init__(self, vhost_name: str, recorder: Recorder | None) -> None:
        self.vhost_name = vhost_name
        self._recorder = recorder
        self._policies: dict[str, Policy] = {}
        self._operator: dict[str, Policy] = {}
        self._queues: dict[str, _QueueState] = {}
        self._exchanges: dict[str, AppliedPolicies] = {}

    # -- the policies ---------------------------------------------------------------

    def _table(self, operator: bool) -> dict[str, Policy]:
        return self._operator if operator else self._policies

    def list(self, *, operator: bool = False) -> list[Policy]:
        """Every policy (or operator policy), by name."""
        table = self._table(operator)
        return [table[name] for name in sorted(table)]

    def get(self, name: str, *, operator: bool = False) -> Policy | None:
        return self._table(operator).get(name)

    def set(
        self,
        policy: Policy,
        *,
        operator: bool = False,
        queues: Mapping[str, SettingsTarget],
        exchanges: Mapping[str, Exchange],
    ) -> bool:
        """Create or replace a policy and apply it at once; True if it is new.

        Raises:
            StorageFailed: the policy could not be recorded (nothing changed).
        """
        if self._recorder is not None:
            self._recorder.policy_set(policy, operator=operator)
        table = self._table(operator)
        created = policy.name not in table
        table[policy.name] = policy
        self.reapply(queues, exchanges)
        return created

    def clear(
        self,
        name: str,
        *,
        operator: bool = False,
        queues: Mapping[str, SettingsTarget],
        exchanges: Mapping[str, Exchange],
    ) -> bool:
        """Delete a policy and undo what it did; False if there was none.

        Raises:
            StorageFailed: the deletion could not be recorded (nothing changed).
        """
        table = self._table(operator)
        if name not in table:
            return False
        if self._recorder is not None:
            self._recorder.policy_cleared(name, operator=operator, strict=True)
        del table[name]
        self.reapply(queues, exchanges)
        return True

    def restore(self, policy: Policy, *, operator: bool) -> None:
        """Put back a stored policy at start-up, before any queue or exchange."""
        self._table(operator)[policy.name] = policy

    def drop_all(self) -> None:
        """The vhost is deleted: forget its policies, on disk too."""
        if self._recorder is not None:
            for operator in (False, True):
                for name in self._table(operator):
                    self._recorder.policy_cleared(name, operator=operator, strict=False)
        self._policies.clear()
        self._operator.clear()
        self._queues.clear()
        self._exchanges.clear()

    # -- matching ---------------------------------------------------------------------

    def _match(
        self,
        name: str,
        kind: str,
        merged: dict[tuple[int, int], AppliedPolicies] | None = None,
    ) -> AppliedPolicies:
        """The policies for ``name``; ``merged`` shares one record per pair across a walk."""
        if not self._policies and not self._operator:
            return NO_POLICIES
        policy = choose(self._policies.values(), name, kind)
        operator = choose(self._operator.values(), name, kind)
        if policy is None and operator is None:
            return NO_POLICIES
        if merged is None:
            return AppliedPolicies(policy, operator, effective_definition(policy, operator))
        pair = (id(policy), id(operator))
        applied = merged.get(pair)
        if applied is None:
            applied = AppliedPolicies(policy, operator, effective_definition(policy, operator))
            merged[pair] = applied
        return applied

    # -- queues ---------------------------------------------------------------------

    def queue_settings(
        self, name: str, arguments: Mapping[str, Any], declared: QueueSettings
    ) -> QueueSettings:
        """The effective settings a new queue starts with (nothing is remembered yet)."""
        applied = self._match(name, declared.queue_type)
        settings = queue_settings(declared, arguments, applied.definition)
        return effective_settings(settings, resource_name("queue", name, self.vhost_name))

    def queue_added(self, name: str, arguments: Mapping[str, Any], declared: QueueSettings) -> None:
        """A queue now exists: follow it through later policy changes."""
        applied = self._match(name, declared.queue_type)
        self._queues[name] = _QueueState(declared, arguments, applied)

    def queue_removed(self, name: str) -> None:
        self._queues.pop(name, None)

    def of_queue(self, name: str) -> AppliedPolicies:
        """The policies that apply to the queue ``name`` now."""
        state = self._queues.get(name)
        return NO_POLICIES if state is None else state.applied

    # -- exchanges --------------------------------------------------------------------

    def exchange_added(self, exchange: Exchange) -> None:
        """An exchange now exists: apply the policy that matches it."""
        if not exchange.name:
            return  # the default exchange takes no policy
        applied = self._match(exchange.name, "exchange")
        if applied is NO_POLICIES:
            self._exchanges.pop(exchange.name, None)
        else:
            self._exchanges[exchange.name] = applied
        exchange.alternate = exchange_alternate(exchange.arguments, applied.definition)

    def exchange_removed(self, name: str) -> None:
        self._exchanges.pop(name, None)

    def of_exchange(self, name: str) -> AppliedPolicies:
        """The policies that apply to the exchange ``name`` now."""
        return self._exchanges.get(name, NO_POLICIES)

    # -- applying -----------------------------------------------------------------------

    def reapply(
        self, queues: Mapping[str, SettingsTarget], exchanges: Mapping[str, Exchange]
    ) -> int:
        """Match every queue and exchange again and change those whose policies changed.

        Returns:
            How many queues were given new settings.
        """
        changed = 0
        # Queues mostly share their arguments and their policies, so a walk
        # over thousands of them merges each pair of policies once and resolves
        # each (arguments, policies) combination once.
        merged: dict[tuple[int, int], AppliedPolicies] = {}
        resolved: dict[tuple[QueueSettings, frozenset[str], int], QueueSettings] = {}
        for name, state in self._queues.items():
            applied = self._match(name, state.declared.queue_type, merged)
            old = state.applied
            if applied.policy is old.policy and applied.operator_policy is old.operator_policy:
                continue
            state.applied = applied
            queue = queues.get(name)
            if queue is None:
                continue
            key = (state.declared, frozenset(state.arguments), id(applied))
            settings = resolved.get(key)
            if settings is None:
                settings = queue_settings(state.declared, state.arguments, applied.definition)
                resolved[key] = settings
            # The quorum fallbacks hold whatever set the values (and log per queue).
            queue.apply_settings(
                effective_settings(settings, resource_name("queue", name, self.vhost_name))
            )
            changed += 1
        for exchange in exchanges.values():
            if exchange.name:
                self.exchange_added(exchange)
        return changed
