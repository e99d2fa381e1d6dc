"""Who may do what where: per-user, per-vhost permissions and topic permissions.

The model is RabbitMQ's:

* a **permission** gives one user three regular expressions in one vhost:
  ``configure`` (declare and delete resources), ``write`` (publish to an
  exchange, bind a queue to it as its source) and ``read`` (consume, get, purge,
  bind from it);
* a **topic permission** narrows ``write`` and ``read`` on the routing keys of
  one topic exchange.

This module holds the grants and keeps them in the metadata store (kinds
``permission`` and ``topic_permission``); the checks that apply them to each
operation come with :mod:`rapidmq.auth` enforcement.  A change is written to
the store before it takes effect, so a refused write changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rapidmq.errors import RapidMQError
from rapidmq.storage.api import MetadataStore

__all__ = ["InvalidPattern", "Permission", "PermissionStore", "TopicPermission"]


class InvalidPattern(RapidMQError):
    """A permission pattern is not a valid regular expression."""


@dataclass(slots=True, frozen=True)
class Permission:
    """``configure``, ``write`` and ``read`` patterns of ``user`` in ``vhost``."""

    user: str
    vhost: str
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"


@dataclass(slots=True, frozen=True)
class TopicPermission:
    """Routing-key patterns of ``user`` on the topic exchange ``exchange`` in ``vhost``."""

    user: str
    vhost: str
    exchange: str
    write: str = ".*"
    read: str = ".*"


def _check(*patterns: str) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise InvalidPattern(f"invalid regular expression '{pattern}': {err}") from None


class PermissionStore:
    """Permissions and topic permissions by user and vhost."""

    __slots__ = ("_directory", "_metadata", "_permissions", "_topic", "version")

    def __init__(self, *, metadata: MetadataStore | None = None) -> None:
        self._metadata = metadata
        #: Bumped by every change, so connections' cached decisions know they are stale.
        self.version = 0
        self._directory: dict[str, frozenset[str]] = {}
        self._permissions: dict[tuple[str, str], Permission] = {}
        self._topic: dict[tuple[str, str, str], TopicPermission] = {}

    def restore(self) -> int:
        """Read every stored grant back, writing nothing; returns how many.

        Raises:
            StorageError: the store failed.
        """
        store = self._metadata
        if store is None:
            return 0
        count = 0
        for (user, vhost), value in store.items("permission"):
            self._permissions[user, vhost] = Permission(
                user,
                vhost,
                str(value.get("configure", "")),
                str(value.get("write", "")),
                str(value.get("read", "")),
            )
            count += 1
        for (user, vhost, exchange), value in store.items("topic_permission"):
            self._topic[user, vhost, exchange] = TopicPermission(
                user, vhost, exchange, str(value.get("write", "")), str(value.get("read", ""))
            )
            count += 1
        self.version += 1
        return count

    # -- permissions -----------------------------------------------------------------

    def set(self, permission: Permission) -> None:
        """Grant (or replace) ``permission``.

        Raises:
            InvalidPattern: a pattern is not a regular expression.
            StorageError: the store refused the write.
        """
        p = permission
        _check(p.configure, p.write, p.read)
        if self._metadata is not None:
            value = {"configure": p.configure, "write": p.write, "read": p.read}
            self._metadata.put("permission", (p.user, p.vhost), value)
        self._permissions[p.user, p.vhost] = p
        self.version += 1

    def get(self, user: str, vhost: str) -> Permission | None:
        """``user``'s permission in ``vhost``: stored, or full access a directory group gives."""
        stored = self._permissions.get((user, vhost))
        if stored is None and vhost in self._directory.get(user, ()):
            return Permission(user, vhost)
        return stored

    def set_directory_vhosts(self, user: str, vhosts: frozenset[str]) -> None:
        """The vhosts ``user``'s directory groups give at their latest login (not stored).

        As RabbitMQ's LDAP ``vhost_access_query`` with ``in_group``: membership of
        a vhost's group gives access to it, with every permission there unless the
        user holds a permission of their own in it.
        """
        if self._directory.get(user, frozenset()) != vhosts:
            if vhosts:
                self._directory[user] = vhosts
            else:
                self._directory.pop(user, None)
            self.version += 1

    def clear(self, user: str, vhost: str) -> bool:
        """Remove ``user``'s permission in ``vhost``; False if there was none."""
        if (user, vhost) not in self._permissions:
            return False
        if self._metadata is not None:
            self._metadata.delete("permission", (user, vhost))
        del self._permissions[user, vhost]
        self.version += 1
        return True

    def __iter__(self) -> Iterator[Permission]:
        return iter(list(self._permissions.values()))

    # -- topic permissions -----------------------------------------------------------

    def set_topic(self, permission: TopicPermission) -> None:
        """Grant (or replace) a topic permission.

        Raises:
            InvalidPattern: a pattern is not a regular expression.
            StorageError: the store refused the write.
        """
        p = permission
        _check(p.write, p.read)
        if self._metadata is not None:
            value = {"write": p.write, "read": p.read}
            self._metadata.put("topic_permission", (p.user, p.vhost, p.exchange), value)
        self._topic[p.user, p.vhost, p.exchange] = p
        self.version += 1

    def topic(self, user: str, vhost: str) -> list[TopicPermission]:
        """``user``'s topic permissions in ``vhost``, by exchange name."""
        return sorted(
            (p for (u, v, _), p in self._topic.items() if u == user and v == vhost),
            key=lambda p: p.exchange,
        )

    def clear_topic(self, user: str, vhost: str, exchange: str | None = None) -> int:
        """Remove ``user``'s topic permissions in ``vhost`` (on one exchange, or all)."""
        keys = [
            key
            for key in self._topic
            if key[0] == user and key[1] == vhost and exchange in (None, key[2])
        ]
        for key in keys:
            if self._metadata is not None:
                self._metadata.delete("topic_permission", key)
            del self._topic[key]
            self.version += 1
        return len(keys)

    def topic_permissions(self) -> list[TopicPermission]:
        return list(self._topic.values())

    # -- cascades ----------------------------------------------------------------------

    def user_deleted(self, user: str) -> None:
        """Forget every grant of ``user`` (RabbitMQ drops them with the user)."""
        for p in [p for p in self._permissions.values() if p.user == user]:
            self.clear(p.user, p.vhost)
        for vhost in {t.vhost for t in self._topic.values() if t.user == user}:
            self.clear_topic(user, vhost)

    def vhost_deleted(self, vhost: str) -> None:
        """Forget every grant in ``vhost``."""
        for p in [p for p in self._permissions.values() if p.vhost == vhost]:
            self.clear(p.user, p.vhost)
        for user in {t.user for t in self._topic.values() if t.vhost == vhost}:
            self.clear_topic(user, vhost)
