"""The broker: virtual hosts, client connections and the timers of the core.

Time is passed in, never waited for: the server calls :meth:`Broker.tick` at
:meth:`Broker.next_deadline` (message TTL expiry, queue ``x-expires``).

With a metadata store, durable topology is written as it changes (see
:mod:`rapidmq.core.durable`) and :meth:`Broker.restore` rebuilds it at start-up.
With a :class:`~rapidmq.core.persistence.Persistence`, durable queues keep their
persistent messages in its store and :meth:`Broker.recover_messages` puts them
back after the restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rapidmq.core.access import Access, PermissionSource, open_access
from rapidmq.core.alarms import ResourceAlarms
from rapidmq.core.api import ClientInfo, DeliverySink
from rapidmq.core.durable import (
    Recorder,
    read_bindings,
    read_exchanges,
    read_policies,
    read_queues,
    unreadable,
)
from rapidmq.core.errors import CoreError, NotAllowed
from rapidmq.core.persistence import Persistence
from rapidmq.core.policy import InvalidPolicy, make_policy
from rapidmq.core.queue import Queue
from rapidmq.core.session import Session
from rapidmq.core.vhost import VirtualHost
from rapidmq.storage.api import MetadataStore

__all__ = ["Broker", "CoreConnection"]

#: What RabbitMQ calls the vhost it creates on first boot.
DEFAULT_VHOST_DESCRIPTION = "Default virtual host"

_COUNTERS = ("published", "unroutable", "delivered", "acked", "rejected")
#: The protocols whose connections count toward max-connections (not the API's).
_CLIENT_PROTOCOLS = frozenset({"amqp091", "mqtt"})


def _is_client(client: ClientInfo) -> bool:
    """A client's connection, which counts toward max-connections (not the broker's own)."""
    return client.protocol in _CLIENT_PROTOCOLS and client.peer != "internal"


log = logging.getLogger("rapidmq.core")


class CoreConnection:
    """One client connection: its sessions and the exclusive queues it owns.

    ``access`` is what its user may do (None: everything, for the broker's own
    connections and brokers without permissions).
    """

    def __init__(
        self,
        broker: Broker,
        vhost: VirtualHost,
        client: ClientInfo,
        access: Access | None = None,
    ) -> None:
        self.broker = broker
        self.vhost = vhost
        self.client = client
        self.access = access
        self.sessions: list[Session] = []
        self.exclusive_queues: dict[str, Queue] = {}
        self.closed = False
        #: Whether it counts toward max-connections (a live client's connection).
        self.counted = False

    def grant(self, access: Access | None) -> None:
        """Check this connection's sessions, present and future, against ``access``."""
        self.access = access
        for session in self.sessions:
            session.access = access

    def open_session(self, sink: DeliverySink) -> Session:
        """A new session (AMQP channel) delivering through ``sink``."""
        session = Session(self, self.vhost, sink)
        self.sessions.append(session)
        return session

    def session_closed(self, session: Session) -> None:
        """Called by :meth:`Session.close`: keep its counters, forget the session."""
        if session in self.sessions:
            self.sessions.remove(session)
            self.broker.retire_counters(session)

    def close(self) -> None:
        """Close every session (requeueing unacked) and delete the exclusive queues."""
        if self.closed:
            return
        self.closed = True
        for session in list(self.sessions):
            session.close()
        for queue in list(self.exclusive_queues.values()):
            self.vhost.remove_queue(queue)
        self.exclusive_queues.clear()
        self.broker.connection_closed(self)

    def statistics(self) -> dict[str, Any]:
        """Who this is, and per-session figures."""
        return {
            "protocol": self.client.protocol,
            "peer": self.client.peer,
            "name": self.client.name,
            "user": self.client.user,
            "vhost": self.vhost.name,
            "sessions": len(self.sessions),
            "exclusive_queues": sorted(self.exclusive_queues),
            "channels": [s.statistics() for s in self.sessions],
        }


class Broker:
    """The root of the core: vhosts and connections, driven by plain calls.

    Without ``metadata`` the broker starts with the vhost ``default_vhost``.
    With it, call :meth:`restore` once before use: it rebuilds what the store
    holds, or creates ``default_vhost`` in a store that holds no vhost.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        metadata: MetadataStore | None = None,
        persistence: Persistence | None = None,
        default_vhost: str = "/",
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._metadata = metadata
        self.persistence = persistence
        self._default_vhost = default_vhost
        # Set by the server: the resource alarms, reported in statistics().
        self.alarms: ResourceAlarms | None = None
        # Set by the server: the grants that connections of named users are checked against.
        self.permissions: PermissionSource | None = None
        self._vhosts: dict[str, VirtualHost] = {}
        self._connections: dict[CoreConnection, None] = {}
        #: Per-user limits (RabbitMQ's user-limits), kept by the server's LimitStore.
        self.user_max_connections: dict[str, int] = {}
        self.user_max_channels: dict[str, int] = {}
        # Client connections by vhost (a count) and by user, kept as they open and
        # close, so that a limit check costs no scan of every connection.
        self._clients_in_vhost: dict[str, int] = {}
        self._clients_of_user: dict[str, dict[CoreConnection, None]] = {}
        self._retired = dict.fromkeys(_COUNTERS, 0)
        if metadata is None:
            self.add_vhost(default_vhost, description=DEFAULT_VHOST_DESCRIPTION)

    def _new_vhost(self, name: str) -> VirtualHost:
        store = self._metadata
        recorder = None if store is None else Recorder(store, name)
        return VirtualHost(
            name,
            clock=self._clock,
            wall_clock=self._wall_clock,
            recorder=recorder,
            persistence=self.persistence,
        )

    def add_vhost(
        self, name: str, *, description: str | None = None, tags: tuple[str, ...] | None = None
    ) -> VirtualHost:
        """Create a vhost with the predeclared exchanges (or return the existing one).

        A ``description`` or ``tags`` given for an existing vhost replace its own.

        Raises:
            StorageFailed: the vhost could not be recorded.
        """
        existing = self._vhosts.get(name)
        if existing is not None and description is None and tags is None:
            return existing
        vhost = self._new_vhost(name) if existing is None else existing
        new_description = vhost.description if description is None else description
        new_tags = vhost.tags if tags is None else tuple(tags)
        if vhost.recorder is not None:
            vhost.recorder.vhost_added(new_description, new_tags)
        vhost.description, vhost.tags = new_description, new_tags
        if existing is None:
            self._vhosts[name] = vhost
        return vhost

    def vhosts(self) -> list[VirtualHost]:
        """Every vhost, in creation order."""
        return list(self._vhosts.values())

    def connections(self) -> list[CoreConnection]:
        """Every open client connection, in opening order."""
        return list(self._connections)

    def delete_vhost(self, name: str) -> None:
        """Close the vhost's connections and delete its queues and exchanges."""
        vhost = self._vhosts.pop(name, None)
        if vhost is None:
            return
        for connection in [c for c in self._connections if c.vhost is vhost]:
            connection.close()
        vhost.clear()
        if vhost.recorder is not None:
            vhost.recorder.vhost_deleted()  # last, so no record outlives its vhost's

    def vhost(self, name: str) -> VirtualHost | None:
        """The vhost ``name``, if any."""
        return self._vhosts.get(name)

    def restore(self) -> dict[str, int]:
        """Rebuild vhosts, durable exchanges, queues and bindings from the store.

        Nothing read is written back.  A store with no vhost is new: the default
        vhost is created (and recorded) then, as RabbitMQ does on first boot.
        Records whose vhost, source or destination is gone are skipped with a
        warning.

        Returns:
            How many of each were restored: ``vhosts``, ``policies`` (operator
            policies included), ``exchanges``, ``queues``, ``bindings``.

        Raises:
            StorageError: a record is unreadable (one line naming the fix), or
                the store failed.
        """
        store = self._metadata
        counts = {"vhosts": 0, "policies": 0, "exchanges": 0, "queues": 0, "bindings": 0}
        if store is None:
            return counts
        for key, value in store.items("vhost"):
            name = key[0]
            if name not in self._vhosts:
                restored = self._vhosts[name] = self._new_vhost(name)
                restored.description = str(value.get("description", ""))
                restored.tags = tuple(str(t) for t in value.get("tags", ()))
                counts["vhosts"] += 1
        if not self._vhosts:
            self.add_vhost(self._default_vhost, description=DEFAULT_VHOST_DESCRIPTION)
        self._restore_policies(store, counts)
        for exchange in read_exchanges(store):
            vhost = self._vhosts.get(exchange.vhost)
            try:
                if vhost is not None and vhost.restore_exchange(exchange):
                    counts["exchanges"] += 1
            except CoreError as err:  # an exchange type this build does not know
                raise unreadable("exchange", (exchange.vhost, exchange.name), err.text) from None
        for queue in read_queues(store):
            vhost = self._vhosts.get(queue.vhost)
            try:
                if vhost is not None and vhost.restore_queue(queue):
                    counts["queues"] += 1
            except CoreError as err:  # arguments this build refuses
                raise unreadable("queue", (queue.vhost, queue.name), err.text) from None
        for binding in read_bindings(store):
            vhost = self._vhosts.get(binding.vhost)
            if vhost is not None and vhost.restore_binding(binding):
                counts["bindings"] += 1
            else:
                log.warning("stored binding %s skipped: its vhost or an end is gone", binding)
        return counts

    def _restore_policies(self, store: MetadataStore, counts: dict[str, int]) -> None:
        """Policies come back before the queues and exchanges they apply to."""
        for operator in (False, True):
            kind = "operator_policy" if operator else "policy"
            for record in read_policies(store, operator=operator):
                vhost = self._vhosts.get(record.vhost)
                if vhost is None:
                    log.warning("stored %s %s skipped: its vhost is gone", kind, record.name)
                    continue
                try:
                    policy = make_policy(record.vhost, record.name, record.body, operator=operator)
                except InvalidPolicy as err:
                    raise unreadable(kind, (record.vhost, record.name), err.text) from None
                vhost.policies.restore(policy, operator=operator)
                counts["policies"] += 1
        for vhost in self._vhosts.values():
            # The predeclared exchanges exist before any policy is restored.
            vhost.policies.reapply(vhost.queues, vhost.exchanges)

    def recover_messages(self) -> dict[str, int]:
        """Put the stored persistent messages back into their queues (after :meth:`restore`).

        Messages of queues that no longer exist (or are not durable) are dropped
        from the store.  Messages delivered but not acked before the stop come
        back flagged redelivered; a quorum queue's messages keep their count of
        returns.

        Returns:
            ``messages`` recovered, in how many ``queues``, and ``dropped``.

        Raises:
            StorageError: a stored message is unreadable.
        """
        counts = {"messages": 0, "queues": 0, "dropped": 0}
        persist = self.persistence
        if persist is None:
            return counts
        gone: dict[tuple[str, str], None] = {}
        last: tuple[str, str] | None = None
        queue: Queue | None = None
        for stored in persist.store.recover():
            if stored.queue != last:
                last = stored.queue
                vhost = self._vhosts.get(stored.queue[0])
                queue = None if vhost is None else vhost.queues.get(stored.queue[1])
                if queue is not None and not queue.durable:
                    queue = None
                if queue is None:
                    gone[stored.queue] = None
                else:
                    counts["queues"] += 1
            if queue is None:
                counts["dropped"] += 1
                continue
            try:
                queue.recover(
                    stored.data, stored.seq, delivered=stored.delivered, returns=stored.returns
                )
            except ValueError as err:
                raise unreadable("message", (*stored.queue, str(stored.seq)), err) from None
            counts["messages"] += 1
        for key in gone:
            log.warning("stored messages of %s dropped: the queue is gone", key)
            persist.drop_queue(key)
        return counts

    def connect(
        self, vhost: str, client: ClientInfo, *, full_access: bool = False
    ) -> CoreConnection:
        """A new client connection to ``vhost``.

        With :attr:`permissions` set, a connection of ``client.user`` is checked
        on every operation, and refused here if the user has no permission in
        the vhost, as RabbitMQ does (after the connection limits, as it does).
        ``full_access`` (definitions import, which RabbitMQ runs as its internal
        user) and connections with no user (the broker's own publishers) are
        not checked.

        Raises:
            NotAllowed: the vhost does not exist, or the user may not use it
                (connection scope).
        """
        host = self._vhosts.get(vhost)
        if host is None:
            raise NotAllowed(f"vhost {vhost} not found", scope="connection")
        if client.protocol in _CLIENT_PROTOCOLS:
            self._check_connection_limits(host, client.user)
        access = None if full_access else self.access_for(vhost, client)
        connection = CoreConnection(self, host, client, access)
        self._connections[connection] = None
        if _is_client(client):
            self._count_client(connection)
        return connection

    def _count_client(self, connection: CoreConnection) -> None:
        name = connection.vhost.name
        self._clients_in_vhost[name] = self._clients_in_vhost.get(name, 0) + 1
        self._clients_of_user.setdefault(connection.client.user, {})[connection] = None
        connection.counted = True

    def suspend(self, connection: CoreConnection) -> None:
        """Its client is gone but the connection stays (an MQTT persistent session).

        It no longer counts toward max-connections, as RabbitMQ counts only
        connected clients.
        """
        if connection.counted:
            self._forget_client(connection)

    def resume(self, connection: CoreConnection, client: ClientInfo) -> None:
        """A client takes a suspended connection back: it counts again, for ``client``.

        Raises:
            NotAllowed: a connection limit of the vhost or of ``client.user`` is reached.
        """
        if connection.counted or not _is_client(client):
            return
        self._check_connection_limits(connection.vhost, client.user)
        connection.client = client
        self._count_client(connection)

    def _check_connection_limits(self, host: VirtualHost, user: str) -> None:
        """RabbitMQ's vhost and user max-connections, refused with its texts.

        The broker's own connections (wills, management) never count.
        """
        vhost_limit = host.max_connections
        if vhost_limit is not None and self._clients_in_vhost.get(host.name, 0) >= vhost_limit:
            raise NotAllowed(
                f"access to vhost '{host.name}' refused for user '{user}': "
                f"connection limit ({vhost_limit}) is reached"
            )
        user_limit = self.user_max_connections.get(user)
        if user_limit is not None and len(self._clients_of_user.get(user, ())) >= user_limit:
            raise NotAllowed(
                f"connection refused for user '{user}': user connection limit ({user_limit}) "
                "is reached"
            )

    def user_channel_limit(self, user: str) -> int | None:
        """``user``'s max-channels if they have reached it (checked at channel.open), else None."""
        limit = self.user_max_channels.get(user)
        if limit is None:
            return None
        open_channels = sum(
            len(c.sessions)
            for c in self._clients_of_user.get(user, ())
            if c.client.protocol == "amqp091"
        )
        return limit if open_channels >= limit else None

    def access_for(self, vhost: str, client: ClientInfo) -> Access | None:
        """What ``client.user`` may do in ``vhost``; None when nothing is checked.

        For a front end that gives an existing connection a new user (an MQTT
        session resumed by a new login): see :meth:`CoreConnection.grant`.

        Raises:
            NotAllowed: the user has no permission in the vhost.
        """
        source = self.permissions
        if source is None or not client.user:
            return None
        client_id = client.name if client.protocol == "mqtt" else None
        return open_access(
            source, client.user, vhost, protocol=client.protocol, client_id=client_id
        )

    def connection_closed(self, connection: CoreConnection) -> None:
        """Called by :meth:`CoreConnection.close`."""
        if connection in self._connections and connection.counted:
            self._forget_client(connection)
        self._connections.pop(connection, None)

    def _forget_client(self, connection: CoreConnection) -> None:
        connection.counted = False
        name, user = connection.vhost.name, connection.client.user
        left = self._clients_in_vhost.get(name, 0) - 1
        if left > 0:
            self._clients_in_vhost[name] = left
        else:
            self._clients_in_vhost.pop(name, None)
        of_user = self._clients_of_user.get(user)
        if of_user is not None:
            of_user.pop(connection, None)
            if not of_user:
                del self._clients_of_user[user]

    def retire_counters(self, session: Session) -> None:
        """Keep a closed session's counters in the broker totals."""
        for name in _COUNTERS:
            self._retired[name] += getattr(session, name)

    def tick(self, now: float | None = None) -> None:
        """Run every due timer (message expiry, queue expiry)."""
        if now is None:
            now = self._clock()
        for vhost in list(self._vhosts.values()):
            vhost.tick(now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has work, or None."""
        deadlines = [d for v in self._vhosts.values() if (d := v.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def statistics(self) -> dict[str, Any]:
        """Totals over the whole broker."""
        totals = dict(self._retired)
        sessions = 0
        for connection in self._connections:
            for session in connection.sessions:
                sessions += 1
                for name in _COUNTERS:
                    totals[name] += getattr(session, name)
        vhosts = [v.statistics() for v in self._vhosts.values()]
        persist = self.persistence
        totals_out = {
            "vhosts": len(self._vhosts),
            "connections": len(self._connections),
            "sessions": sessions,
            "queues": sum(v["queues"] for v in vhosts),
            "exchanges": sum(v["exchanges"] for v in vhosts),
            "consumers": sum(v["consumers"] for v in vhosts),
            "messages_ready": sum(v["messages_ready"] for v in vhosts),
            "messages_unacknowledged": sum(v["messages_unacknowledged"] for v in vhosts),
            "published": totals["published"],
            "unroutable": totals["unroutable"],
            "delivered": totals["delivered"],
            "acknowledged": totals["acked"],
            "rejected": totals["rejected"],
        }
        if persist is not None:
            totals_out["messages_persistent"] = sum(v["messages_persistent"] for v in vhosts)
            totals_out["message_store"] = persist.statistics()
        if self.alarms is not None:
            totals_out.update(self.alarms.statistics())
        return totals_out
