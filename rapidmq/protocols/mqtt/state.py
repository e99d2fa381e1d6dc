"""What the MQTT front end keeps across connections: sessions, retained messages, wills.

Theory of operation
-------------------
One :class:`MQTTState` per server.  Sessions are kept by (vhost, client id)
and live connections by the same key, so a second CONNECT can take the first
one over.  A session whose connection went away either ends at once (expiry
0, clean session) or waits in :attr:`MQTTState.expiries` until
:meth:`MQTTState.tick` ends it, deleting its queue.  A will with a delay waits
in :attr:`MQTTState.wills` until its deadline, the end of its session, or a
reconnect, which cancels it.

Shared subscriptions: each (vhost, group, filter) has one queue,
``mqtt-shared-<group>-<filter>``, bound to ``amq.topic``; its members are
sessions, each consuming from it while connected.  The queue is deleted when
its last member leaves (unsubscribes or its session ends); a persistent
member that is offline keeps it, and the connected members drain it.

Durability: after :meth:`MQTTState.restore` the state writes persistent
sessions and retained messages to the metadata store (see
:mod:`rapidmq.protocols.mqtt.records`) and has rebuilt those stored before: the
sessions detached, with their expiry running from the stored wall-clock
deadline.  Without it (no store) all of this lives in memory only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rapidmq.core.api import ClientInfo, NoDeliveries, PublishResult
from rapidmq.core.broker import Broker
from rapidmq.core.errors import CoreError
from rapidmq.core.message import Message
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.session import Session
from rapidmq.protocols.mqtt.mapping import TOPIC_EXCHANGE, publish_to_message
from rapidmq.protocols.mqtt.packets import Publish, Will
from rapidmq.protocols.mqtt.records import MQTTRecorder
from rapidmq.protocols.mqtt.retained import RetainedStore
from rapidmq.protocols.mqtt.session import MQTTSession, SessionKey, SessionSubscription
from rapidmq.protocols.mqtt.topics import filter_to_binding_key
from rapidmq.storage.api import MetadataStore

__all__ = ["MQTTState", "PendingWill"]

log = logging.getLogger("rapidmq.mqtt")


@dataclass(slots=True, frozen=True)
class PendingWill:
    """A will waiting for its delay to pass."""

    deadline: float
    vhost: str
    origin: str
    will: Will


class MQTTState:
    """Sessions, live connections, retained messages and pending wills of one server."""

    def __init__(
        self,
        broker: Broker,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.wall_clock = wall_clock
        self.recorder: MQTTRecorder | None = None
        self.sessions: dict[SessionKey, MQTTSession] = {}
        self.connections: dict[SessionKey, Any] = {}  # MQTTConnection, by session key
        self.expiries: dict[SessionKey, float] = {}
        self.wills: dict[SessionKey, PendingWill] = {}
        self.shared: dict[tuple[str, str], set[SessionKey]] = {}
        self._retained: dict[str, RetainedStore] = {}
        self._publishers: dict[str, Session] = {}
        self.wills_published = 0
        self.sessions_expired = 0

    # -- sessions ----------------------------------------------------------------------

    def open_session(
        self, vhost: str, client_id: str, client: ClientInfo, expiry_s: int | None
    ) -> MQTTSession:
        """A new session (any old one with this key must have been ended)."""
        core = self.broker.connect(vhost, client)
        session = MQTTSession(self, core, client_id, expiry_s=expiry_s, clock=self.clock)
        self.sessions[session.key] = session
        return session

    def resume_session(self, key: SessionKey) -> MQTTSession | None:
        """The stored session for ``key``, its expiry and delayed will cancelled."""
        session = self.sessions.get(key)
        if session is None:
            return None
        self.expiries.pop(key, None)
        self.wills.pop(key, None)
        return session

    def end_session(self, session: MQTTSession) -> None:
        """End a session now, publishing its delayed will if one is waiting."""
        key = session.key
        if self.sessions.get(key) is session:
            del self.sessions[key]
        self.expiries.pop(key, None)
        pending = self.wills.pop(key, None)
        session.end()
        if self.recorder is not None:
            self.recorder.session_ended(session)
        if pending is not None:
            self.publish_will(pending.vhost, pending.origin, pending.will)

    def session_detached(self, session: MQTTSession, now: float) -> None:
        """Its connection closed: end the session or start its expiry."""
        session.detach()
        self.broker.suspend(session.core)
        if session.expiry_s == 0:
            self.end_session(session)
        else:
            if session.expiry_s is not None:
                self.expiries[session.key] = now + session.expiry_s
            self.record(session, away_since=now)

    def record(self, session: MQTTSession, away_since: float | None = None) -> None:
        """Write the session's stored record after a change (no-op without a store)."""
        session.record_due = False
        if self.recorder is not None:
            self.recorder.session_changed(session, away_since)

    def record_later(self, session: MQTTSession) -> None:
        """Write the record before the connection's next output goes out.

        Per-message changes (QoS 2 states) of one read are written once: the
        acknowledgements they allow wait in the output buffer until then.
        """
        if self.recorder is not None and (session.recorded or session.expiry_s != 0):
            session.record_due = True

    def restore(self, store: MetadataStore, codec: MessageCodec | None = None) -> dict[str, int]:
        """Rebuild stored sessions and retained messages, and record changes from now on.

        Call once, after the broker restored its queues and bindings.  ``codec``
        defaults to the broker's message codec; without one nothing is stored.
        Unreadable records are logged and skipped.

        Returns:
            How many ``sessions`` and ``retained`` messages came back.
        """
        counts = {"sessions": 0, "retained": 0}
        if codec is None:
            persistence = self.broker.persistence
            if persistence is None:
                return counts
            codec = persistence.codec
        recorder = MQTTRecorder(store, codec, self.wall_clock)
        now = self.clock()
        for retained in recorder.retained(now):
            self.retained(retained.vhost).put(retained.topic, retained.message)
            counts["retained"] += 1
        wall_now = self.wall_clock()
        for record in recorder.sessions(now):
            if self.broker.vhost(record.vhost) is None:
                log.warning("stored MQTT session %s skipped: no such vhost", record.client_id)
                continue
            info = ClientInfo(protocol="mqtt", peer="restored", name=record.client_id)
            try:
                session = self.open_session(record.vhost, record.client_id, info, record.expiry_s)
            except CoreError as err:
                log.warning("stored MQTT session %s skipped: %s", record.client_id, err.text)
                continue
            self.broker.suspend(session.core)  # no client yet: not a connection that counts
            subscriptions = {
                name: SessionSubscription(sub.options, sub.identifier, sub.share)
                for name, sub in record.subscriptions.items()
            }
            session.restore(subscriptions, record.released, record.incoming_qos2)
            session.recorded = True
            if record.expiry_s is not None:
                # A session that was connected at the stop starts its expiry now.
                deadline = wall_now + record.expiry_s
                if record.expires_at is not None:
                    deadline = record.expires_at
                self.expiries[session.key] = now + max(0.0, deadline - wall_now)
            counts["sessions"] += 1
        self.recorder = recorder
        return counts

    # -- shared subscriptions ----------------------------------------------------------

    def join_shared(self, session: MQTTSession, group: str, topic_filter: str) -> str:
        """Make ``session`` a member of a share group; returns the group's queue name.

        Raises:
            CoreError: the core refused the queue or the binding.
        """
        name = f"mqtt-shared-{group}-{topic_filter}"
        core = session.core_session
        core.declare_queue(name, durable=False)  # the group lives while members do
        core.bind_queue(name, TOPIC_EXCHANGE, filter_to_binding_key(topic_filter))
        self.shared.setdefault((session.vhost, name), set()).add(session.key)
        return name

    def leave_shared(self, session: MQTTSession, queue: str) -> None:
        """``session`` left a share group; the last member out deletes the queue."""
        key = (session.vhost, queue)
        members = self.shared.get(key)
        if members is None:
            return
        members.discard(session.key)
        if members:
            return
        del self.shared[key]
        vhost = self.broker.vhost(session.vhost)
        found = None if vhost is None else vhost.queues.get(queue)
        if vhost is not None and found is not None:
            vhost.remove_queue(found)

    # -- publishing --------------------------------------------------------------------

    def retained(self, vhost: str) -> RetainedStore:
        """The retained messages of ``vhost``."""
        store = self._retained.get(vhost)
        if store is None:
            store = self._retained[vhost] = RetainedStore()
        return store

    def publish(
        self, session: Session, topic: str, message: Message, retain: bool
    ) -> PublishResult:
        """Route a message (and retain it when asked).

        Raises:
            CoreError: the core refused the publish.
        """
        if retain:
            vhost = session.vhost.name
            self.retained(vhost).put(topic, message)
            if self.recorder is not None:
                self.recorder.retained_changed(vhost, topic, message)
        return session.publish(message)

    def publish_will(self, vhost: str, origin: str, will: Will) -> None:
        """Publish a will message now."""
        props = will.properties
        if props is not None and props.will_delay_interval is not None:
            props = replace(props, will_delay_interval=None)
        packet = Publish(will.topic, will.payload, will.qos, will.retain, properties=props)
        message = publish_to_message(packet, will.topic, origin=origin, now=self.clock())
        try:
            self.publish(self._publisher(vhost), will.topic, message, will.retain)
        except CoreError as err:
            log.warning("will of %s on '%s' not published: %s", origin, will.topic, err.text)
            return
        self.wills_published += 1

    def delay_will(self, session: MQTTSession, will: Will, delay_s: float, now: float) -> None:
        """Publish ``will`` after ``delay_s`` unless the session comes back or ends first."""
        self.wills[session.key] = PendingWill(now + delay_s, session.vhost, session.origin, will)

    def _publisher(self, vhost: str) -> Session:
        session = self._publishers.get(vhost)
        if session is None or session.closed:
            info = ClientInfo(protocol="mqtt", peer="internal", name="mqtt-wills")
            core = self.broker.connect(vhost, info)
            session = self._publishers[vhost] = core.open_session(NoDeliveries())
        return session

    # -- time --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Publish due wills and end expired sessions."""
        for key, pending in list(self.wills.items()):
            if pending.deadline <= now:
                del self.wills[key]
                self.publish_will(pending.vhost, pending.origin, pending.will)
        for key, deadline in list(self.expiries.items()):
            if deadline <= now:
                session = self.sessions.get(key)
                self.expiries.pop(key, None)
                if session is not None and session.outlet is None:
                    self.sessions_expired += 1
                    self.end_session(session)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has work, or None."""
        times = [w.deadline for w in self.wills.values()]
        times.extend(self.expiries.values())
        return min(times) if times else None

    def statistics(self) -> dict[str, Any]:
        """Sessions, connections, retained messages and wills."""
        return {
            "sessions": len(self.sessions),
            "connected_sessions": sum(1 for s in self.sessions.values() if s.outlet is not None),
            "connections": len(self.connections),
            "expiring_sessions": len(self.expiries),
            "pending_wills": len(self.wills),
            "wills_published": self.wills_published,
            "sessions_expired": self.sessions_expired,
            "shared_groups": len(self.shared),
            "retained_messages": sum(len(r) for r in self._retained.values()),
        }
