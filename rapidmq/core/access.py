"""What one connection's user may do in its vhost: RabbitMQ's permission model, compiled and cached.

RabbitMQ's internal backend decides each operation on a resource by running the
user's ``configure``, ``write`` or ``read`` regular expression for the vhost
*unanchored* (``re:run``, so ``user-`` also allows ``my-user-q``) against the
resource name; an empty pattern means ``^$``, which no real name matches, and
the default exchange is matched as ``amq.default``.  A topic permission on a
topic exchange narrows ``write`` (publish) and ``read`` (bind) further to the
routing keys its pattern matches, after expanding ``{username}``, ``{vhost}``
and ``{client_id}``; without one for that exchange, every routing key is
allowed.

Checks run on every publish, so an :class:`Access` never runs a regular
expression twice for the same question: decisions are kept per resource name
(and per routing key, in a bounded cache), and all of them are dropped when the
grants change, which the source tells by bumping its ``version``.  The steady
state of a publish is one integer comparison and one dict lookup.

The core stays protocol-neutral: a refusal is an
:class:`~rapidmq.core.errors.AccessRefused` with RabbitMQ's text, recorded as
an ``access.refused`` audit event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

from rapidmq.audit import audit
from rapidmq.core.errors import AccessRefused, NotAllowed

__all__ = [
    "DEFAULT_EXCHANGE",
    "Access",
    "Grant",
    "PermissionSource",
    "TopicGrant",
    "open_access",
]

#: The name the default exchange ("") is matched and reported under.
DEFAULT_EXCHANGE = "amq.default"

#: Decisions kept per routing key of one topic exchange before the cache starts over.
TOPIC_CACHE_SIZE = 1024
#: Decisions kept per kind and permission before that cache starts over.
RESOURCE_CACHE_SIZE = 4096

Kind = Literal["exchange", "queue"]
PermissionName = Literal["configure", "write", "read"]


class Grant(Protocol):
    """A permission as :class:`rapidmq.auth.permissions.Permission` holds it."""

    @property
    def configure(self) -> str: ...
    @property
    def write(self) -> str: ...
    @property
    def read(self) -> str: ...


class TopicGrant(Protocol):
    """A topic permission as :class:`rapidmq.auth.permissions.TopicPermission` holds it."""

    @property
    def exchange(self) -> str: ...
    @property
    def write(self) -> str: ...
    @property
    def read(self) -> str: ...


class PermissionSource(Protocol):
    """Where grants come from (the server's ``PermissionStore``).

    ``version`` must change on every change of any grant: that is how cached
    decisions learn that they are stale.
    """

    @property
    def version(self) -> int: ...

    def get(self, user: str, vhost: str) -> Grant | None: ...

    def topic(self, user: str, vhost: str) -> Sequence[TopicGrant]: ...


def _compile(pattern: str) -> re.Pattern[str]:
    # RabbitMQ: an empty pattern is "^$"; anything else is searched, unanchored.
    return re.compile(pattern or "^$")


def _expand(pattern: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        pattern = pattern.replace("{" + name + "}", value)
    return pattern


class Access:
    """The decisions for one user in one vhost, re-read whenever the grants change.

    ``client_id`` is expanded in topic patterns only when the protocol has one
    (MQTT); for AMQP clients RabbitMQ leaves ``{client_id}`` as it is, and so
    does this.
    """

    __slots__ = (
        "_configure",
        "_decided",
        "_read",
        "_topic_patterns",
        "_topic_read",
        "_topic_write",
        "_write",
        "client_id",
        "granted",
        "has_topic",
        "protocol",
        "source",
        "user",
        "version",
        "vhost",
        "write_exchange",
    )

    def __init__(
        self,
        source: PermissionSource,
        user: str,
        vhost: str,
        *,
        protocol: str = "",
        client_id: str | None = None,
    ) -> None:
        self.source = source
        self.user = user
        self.vhost = vhost
        self.protocol = protocol
        self.client_id = client_id
        #: The source's version these decisions were made at.
        self.version = -1
        self.granted = False
        self.has_topic = False
        self._configure = self._write = self._read = _compile("")
        self._decided: dict[tuple[str, str, str], bool] = {}
        #: exchange name -> may publish to it: the hot path's one lookup.
        self.write_exchange: dict[str, bool] = {}
        self._topic_patterns: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {}
        self._topic_write: dict[str, dict[str, bool]] = {}
        self._topic_read: dict[str, dict[str, bool]] = {}
        self.refresh()

    # -- grants --------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the grants and forget every cached decision."""
        source = self.source
        self.version = source.version
        grant = source.get(self.user, self.vhost)
        self.granted = grant is not None
        if grant is None:
            self._configure = self._write = self._read = _compile("")
        else:
            self._configure = _compile(grant.configure)
            self._write = _compile(grant.write)
            self._read = _compile(grant.read)
        variables = {"username": self.user, "vhost": self.vhost}
        if self.client_id is not None:
            variables["client_id"] = self.client_id
        self._topic_patterns = {
            t.exchange: (
                _compile(_expand(t.write, variables)),
                _compile(_expand(t.read, variables)),
            )
            for t in source.topic(self.user, self.vhost)
        }
        self.has_topic = bool(self._topic_patterns)
        self._decided.clear()
        self.write_exchange.clear()
        self._topic_write.clear()
        self._topic_read.clear()

    def current(self) -> bool:
        """Refresh if the grants changed; True if the user may still use the vhost."""
        if self.source.version != self.version:
            self.refresh()
        return self.granted

    # -- decisions -----------------------------------------------------------------

    def allows(self, kind: Kind, name: str, permission: PermissionName) -> bool:
        """May the user ``permission`` the ``kind`` named ``name``?"""
        if self.source.version != self.version:
            self.refresh()
        if kind == "exchange" and not name:
            name = DEFAULT_EXCHANGE
        key = (kind, name, permission)
        decided = self._decided.get(key)
        if decided is None:
            if permission == "configure":
                pattern = self._configure
            elif permission == "write":
                pattern = self._write
            else:
                pattern = self._read
            decided = pattern.search(name) is not None
            if len(self._decided) >= RESOURCE_CACHE_SIZE:
                self._decided.clear()
            self._decided[key] = decided
        return decided

    def check(self, kind: Kind, name: str, permission: PermissionName) -> None:
        """Raises AccessRefused unless :meth:`allows`."""
        if not self.allows(kind, name, permission):
            self.refuse(
                kind, (name or DEFAULT_EXCHANGE) if kind == "exchange" else name, permission
            )

    def check_publish(self, exchange: str) -> None:
        """Write on ``exchange``, decided once per exchange name (per grant version)."""
        if self.source.version == self.version and self.write_exchange.get(exchange):
            return  # the steady state of a publisher
        if self.source.version != self.version:
            self.refresh()
        allowed = self.write_exchange.get(exchange)
        if allowed is None:
            allowed = self.write_exchange[exchange] = self.allows("exchange", exchange, "write")
            if len(self.write_exchange) >= RESOURCE_CACHE_SIZE:
                self.write_exchange.clear()
        if not allowed:
            self.refuse("exchange", exchange or DEFAULT_EXCHANGE, "write")

    def topic_allows(self, exchange: str, routing_key: str, permission: PermissionName) -> bool:
        """May the user ``permission`` (write or read) ``routing_key`` on the topic exchange?"""
        if self.source.version != self.version:
            self.refresh()
        patterns = self._topic_patterns.get(exchange)
        if patterns is None:
            return True
        caches = self._topic_write if permission == "write" else self._topic_read
        cache = caches.get(exchange)
        if cache is None:
            cache = caches[exchange] = {}
        decided = cache.get(routing_key)
        if decided is None:
            pattern = patterns[0] if permission == "write" else patterns[1]
            decided = pattern.search(routing_key) is not None
            if len(cache) >= TOPIC_CACHE_SIZE:
                cache.clear()
            cache[routing_key] = decided
        return decided

    def check_topic_write(self, exchange: str, routing_key: str) -> None:
        """Topic write on a publish, right after :meth:`check_publish` made the grants current."""
        cache = self._topic_write.get(exchange)
        if cache is not None and cache.get(routing_key):
            return
        self.check_topic(exchange, routing_key, "write")

    def check_topic(self, exchange: str, routing_key: str, permission: PermissionName) -> None:
        """Raises AccessRefused unless :meth:`topic_allows`."""
        if not self.topic_allows(exchange, routing_key, permission):
            # RabbitMQ 3.10's text names no permission ("access to topic ...").
            text = (
                f"access to topic '{routing_key}' in exchange '{exchange}' "
                f"in vhost '{self.vhost}' refused for user '{self.user}'"
            )
            self._record(text, f"topic '{routing_key}' in exchange '{exchange}'", permission)
            raise AccessRefused(text)

    def refuse(self, kind: str, name: str, permission: str) -> None:
        """Raise RabbitMQ's refusal for ``permission`` on a resource (and audit it)."""
        resource = f"{kind} '{name}' in vhost '{self.vhost}'"
        text = f"access to {resource} refused for user '{self.user}'"
        self._record(text, f"{kind} '{name}'", permission)
        raise AccessRefused(text)

    def _record(self, text: str, resource: str, permission: str) -> None:
        audit(
            "access.refused",
            text,
            user=self.user,
            vhost=self.vhost,
            resource=resource,
            permission=permission,
            protocol=self.protocol,
        )


def open_access(
    source: PermissionSource,
    user: str,
    vhost: str,
    *,
    protocol: str = "",
    client_id: str | None = None,
) -> Access:
    """The access of ``user`` to ``vhost``, refused as RabbitMQ does without any grant there.

    Raises:
        NotAllowed: the user has no permission in the vhost (AMQP 530).
    """
    access = Access(source, user, vhost, protocol=protocol, client_id=client_id)
    if not access.granted:
        text = f"access to vhost '{vhost}' refused for user '{user}'"
        access._record(text, f"vhost '{vhost}'", "access")
        raise NotAllowed(text)
    return access
