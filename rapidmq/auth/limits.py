"""Per-vhost and per-user limits, as RabbitMQ's ``vhost-limits`` and ``user-limits``.

A vhost may cap its connections (``max-connections``) and queues
(``max-queues``); a user may cap their connections (``max-connections``) and
their open channels over all their connections (``max-channels``).  A negative
value means no limit, as in RabbitMQ, and is kept (the API shows it back).

This module holds the limits and keeps them in the metadata store (kinds
``vhost_limits`` and ``user_limits``: one record per vhost or user holding
every limit it has).  Enforcement needs only numbers, so each change is pushed
into the core at once: ``VirtualHost.max_queues`` and ``max_connections``, and
the broker's ``user_max_connections`` and ``user_max_channels`` maps.  The
checks then cost a dict lookup where they run, and nothing per message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidmq.errors import RapidMQError

if TYPE_CHECKING:
    from rapidmq.core.broker import Broker
    from rapidmq.storage.api import MetadataStore

__all__ = ["USER_LIMITS", "VHOST_LIMITS", "LimitStore", "UnknownLimit"]

#: The limits a vhost may have, as RabbitMQ names them.
VHOST_LIMITS = ("max-connections", "max-queues")
#: The limits a user may have.
USER_LIMITS = ("max-connections", "max-channels")


class UnknownLimit(RapidMQError):
    """A limit name RabbitMQ does not know for that kind of object."""


def _effective(value: int | None) -> int | None:
    """The number the core enforces: a negative limit is no limit."""
    return None if value is None or value < 0 else value


class LimitStore:
    """The limits of every vhost and user, kept in step with the core."""

    __slots__ = ("_broker", "_metadata", "_users", "_vhosts")

    def __init__(self, broker: Broker, *, metadata: MetadataStore | None = None) -> None:
        self._broker = broker
        self._metadata = metadata
        self._vhosts: dict[str, dict[str, int]] = {}
        self._users: dict[str, dict[str, int]] = {}

    def restore(self) -> int:
        """Read the stored limits back (after the vhosts), writing nothing; returns how many.

        Limits of a vhost that is gone are ignored, like its other records.

        Raises:
            StorageError: the store failed.
        """
        store = self._metadata
        if store is None:
            return 0
        count = 0
        for (vhost,), value in store.items("vhost_limits"):
            limits = {k: int(v) for k, v in value.items() if k in VHOST_LIMITS}
            if limits and self._broker.vhost(vhost) is not None:
                self._vhosts[vhost] = limits
                self._apply_vhost(vhost)
                count += len(limits)
        for (user,), value in store.items("user_limits"):
            limits = {k: int(v) for k, v in value.items() if k in USER_LIMITS}
            if limits:
                self._users[user] = limits
                self._apply_user(user)
                count += len(limits)
        return count

    # -- reading ---------------------------------------------------------------------------

    def vhost_limits(self, vhost: str) -> dict[str, int]:
        return dict(self._vhosts.get(vhost, {}))

    def user_limits(self, user: str) -> dict[str, int]:
        return dict(self._users.get(user, {}))

    def all_vhost_limits(self) -> list[tuple[str, dict[str, int]]]:
        """Every vhost that has limits, by name."""
        return [(name, dict(limits)) for name, limits in sorted(self._vhosts.items())]

    def all_user_limits(self) -> list[tuple[str, dict[str, int]]]:
        """Every user who has limits, by name."""
        return [(name, dict(limits)) for name, limits in sorted(self._users.items())]

    # -- changing --------------------------------------------------------------------------

    def set_vhost_limit(self, vhost: str, name: str, value: int) -> None:
        """Set one limit of ``vhost`` (which must exist; the caller checks).

        Raises:
            UnknownLimit: ``name`` is not a vhost limit.
            StorageError: the store refused the write.
        """
        if name not in VHOST_LIMITS:
            raise UnknownLimit(name)
        limits = {**self._vhosts.get(vhost, {}), name: value}
        self._write("vhost_limits", vhost, limits)
        self._vhosts[vhost] = limits
        self._apply_vhost(vhost)

    def clear_vhost_limit(self, vhost: str, name: str) -> bool:
        """Remove one limit of ``vhost``; False if it had none of that name."""
        limits = dict(self._vhosts.get(vhost, {}))
        if limits.pop(name, None) is None:
            return False
        self._write("vhost_limits", vhost, limits)
        self._replace(self._vhosts, vhost, limits)
        self._apply_vhost(vhost)
        return True

    def set_user_limit(self, user: str, name: str, value: int) -> None:
        """Set one limit of ``user``.

        Raises:
            UnknownLimit: ``name`` is not a user limit.
            StorageError: the store refused the write.
        """
        if name not in USER_LIMITS:
            raise UnknownLimit(name)
        limits = {**self._users.get(user, {}), name: value}
        self._write("user_limits", user, limits)
        self._users[user] = limits
        self._apply_user(user)

    def clear_user_limit(self, user: str, name: str) -> bool:
        """Remove one limit of ``user``; False if they had none of that name."""
        limits = dict(self._users.get(user, {}))
        if limits.pop(name, None) is None:
            return False
        self._write("user_limits", user, limits)
        self._replace(self._users, user, limits)
        self._apply_user(user)
        return True

    def vhost_deleted(self, vhost: str) -> None:
        """Forget the limits of a deleted vhost (RabbitMQ drops them with it)."""
        if vhost in self._vhosts:
            self._write("vhost_limits", vhost, {})
            del self._vhosts[vhost]

    def user_deleted(self, user: str) -> None:
        """Forget the limits of a deleted user."""
        if user in self._users:
            self._write("user_limits", user, {})
            del self._users[user]
            self._apply_user(user)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _replace(table: dict[str, dict[str, int]], key: str, limits: dict[str, int]) -> None:
        if limits:
            table[key] = limits
        else:
            table.pop(key, None)

    def _write(self, kind: str, name: str, limits: dict[str, int]) -> None:
        store = self._metadata
        if store is None:
            return
        if limits:
            store.put(kind, (name,), dict(limits))
        else:
            store.delete(kind, (name,))

    def _apply_vhost(self, vhost: str) -> None:
        host = self._broker.vhost(vhost)
        if host is None:
            return
        limits = self._vhosts.get(vhost, {})
        host.max_connections = _effective(limits.get("max-connections"))
        host.max_queues = _effective(limits.get("max-queues"))

    def _apply_user(self, user: str) -> None:
        limits = self._users.get(user, {})
        for name, table in (
            ("max-connections", self._broker.user_max_connections),
            ("max-channels", self._broker.user_max_channels),
        ):
            value = _effective(limits.get(name))
            if value is None:
                table.pop(user, None)
            else:
                table[user] = value
