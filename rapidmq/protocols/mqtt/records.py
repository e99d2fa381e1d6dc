"""MQTT state as metadata records: persistent sessions and retained messages.

Theory of operation
-------------------
An ``mqtt_session`` record, keyed (vhost, client id), holds what a persistent
session (session expiry other than 0) needs after a restart beyond its durable
queue, whose bindings and messages the core keeps itself:

- ``subscriptions``: filter -> options and subscription identifier;
- ``expiry_s`` and ``expires_at``, the wall-clock deadline while the client is
  away (``None`` while connected, or when it never expires);
- ``incoming_qos2``: packet id -> the stored form of a QoS 2 message held
  between PUBREC and PUBREL (it must survive a crash once PUBREC went out);
- ``outgoing``: packet id -> state of a QoS 2 delivery whose PUBREC came back,
  so the PUBREL is re-sent after a restart.

The record is rewritten whenever one of these changes: (re)connect, detach,
subscribe, unsubscribe, and per QoS 2 message.  Metadata writes are synced, so
a PUBREC sent after the write is safe.  Deliveries that were in flight but not
yet PUBRECed are not recorded: their messages come back from the durable queue
flagged redelivered and are re-sent with DUP, under new packet ids.

A ``retained`` record, keyed (vhost, topic), holds one retained message, its
wall-clock publication time (so a message expiry interval keeps running) and
nothing else; clearing the topic deletes the record.

Messages are stored with the core's :class:`~rapidmq.core.message_codec.MessageCodec`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rapidmq.core.message import Message
from rapidmq.core.message_codec import MessageCodec
from rapidmq.protocols.mqtt.packets import Subscription
from rapidmq.storage.api import MetadataStore, StorageError

if TYPE_CHECKING:
    from rapidmq.protocols.mqtt.session import MQTTSession

__all__ = [
    "MQTTRecorder",
    "RetainedRecord",
    "SessionRecord",
    "SubscriptionRecord",
]

log = logging.getLogger("rapidmq.storage")


@dataclass(slots=True, frozen=True)
class SubscriptionRecord:
    """One stored subscription."""

    options: Subscription
    identifier: int | None
    share: tuple[str, str] | None


@dataclass(slots=True, frozen=True)
class SessionRecord:
    """A persistent session as stored."""

    vhost: str
    client_id: str
    expiry_s: int | None
    expires_at: float | None  # wall clock
    subscriptions: dict[str, SubscriptionRecord]
    incoming_qos2: dict[int, tuple[str, Message, bool]]
    released: tuple[int, ...]  # outbound QoS 2 packet ids awaiting PUBCOMP


@dataclass(slots=True, frozen=True)
class RetainedRecord:
    """A retained message as stored."""

    vhost: str
    topic: str
    message: Message
    published_wall: float


def _subscription_value(options: Subscription, identifier: int | None, share: Any) -> Any:
    return {
        "qos": options.qos,
        "no_local": options.no_local,
        "retain_as_published": options.retain_as_published,
        "retain_handling": options.retain_handling,
        "identifier": identifier,
        "share": None if share is None else list(share),
    }


class MQTTRecorder:
    """Writes and reads the MQTT records of one metadata store.

    Write failures are logged, never raised: the session goes on in memory, as
    it would with a transient store.
    """

    __slots__ = ("codec", "store", "wall_clock")

    def __init__(
        self, store: MetadataStore, codec: MessageCodec, wall_clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.codec = codec
        self.wall_clock = wall_clock

    def _put(self, kind: str, key: tuple[str, str], value: dict[str, Any]) -> None:
        try:
            self.store.put(kind, key, value)
        except (StorageError, TypeError, ValueError) as err:
            log.error("cannot record MQTT %s %s: %s", kind, key, err)

    def _delete(self, kind: str, key: tuple[str, str]) -> None:
        try:
            self.store.delete(kind, key)
        except StorageError as err:
            log.error("cannot forget MQTT %s %s: %s", kind, key, err)

    # -- sessions ----------------------------------------------------------------------

    def session_changed(self, session: MQTTSession, away_since: float | None = None) -> None:
        """Write the session's record (or drop it once the session is not persistent).

        Args:
            session: the session.
            away_since: the monotonic time its client went away, when it is away.
        """
        if session.expiry_s == 0 or session.ended:
            if session.recorded:
                session.recorded = False
                self._delete("mqtt_session", session.key)
            return
        expires_at = None
        if session.outlet is None and session.expiry_s is not None:
            now = session.state.clock()
            since = now if away_since is None else away_since
            expires_at = self.wall_clock() - (now - since) + session.expiry_s
        subscriptions = {
            name: _subscription_value(sub.options, sub.identifier, sub.share)
            for name, sub in session.subscriptions.items()
        }
        incoming = {
            str(packet_id): {
                "topic": topic,
                "retain": retain,
                "message": self.codec.encode(message),
            }
            for packet_id, (topic, message, retain) in (
                *session.releasing.items(),
                *session.incoming_qos2.items(),
            )
        }
        outgoing = {
            str(packet_id): {"qos": out.qos, "released": True}
            for packet_id, out in session.inflight.items()
            if out.released
        }
        value = {
            "expiry_s": session.expiry_s,
            "expires_at": expires_at,
            "subscriptions": subscriptions,
            "incoming_qos2": incoming,
            "outgoing": outgoing,
        }
        self._put("mqtt_session", session.key, value)
        session.recorded = True

    def session_ended(self, session: MQTTSession) -> None:
        """Forget an ended session."""
        if session.recorded:
            session.recorded = False
            self._delete("mqtt_session", session.key)

    def sessions(self, now: float) -> Iterator[SessionRecord]:
        """Every readable stored session; unreadable ones are logged and skipped.

        Args:
            now: the monotonic time held messages are taken as published at.
        """
        for key, value in self.store.items("mqtt_session"):
            try:
                yield self._read_session(key, value, now)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                log.error("stored MQTT session %s skipped: unreadable (%s)", key, err)

    def _read_session(self, key: tuple[str, ...], value: dict[str, Any], now: float) -> Any:
        vhost, client_id = key
        subscriptions = {}
        for name, sub in value.get("subscriptions", {}).items():
            options = Subscription(
                name,
                int(sub["qos"]),
                no_local=bool(sub.get("no_local", False)),
                retain_as_published=bool(sub.get("retain_as_published", False)),
                retain_handling=int(sub.get("retain_handling", 0)),
            )
            share = sub.get("share")
            subscriptions[name] = SubscriptionRecord(
                options,
                None if sub.get("identifier") is None else int(sub["identifier"]),
                None if share is None else (str(share[0]), str(share[1])),
            )
        incoming = {}
        for packet_id, held in value.get("incoming_qos2", {}).items():
            message = self._message(held["message"], now)
            incoming[int(packet_id)] = (str(held["topic"]), message, bool(held["retain"]))
        released = tuple(
            int(packet_id)
            for packet_id, out in value.get("outgoing", {}).items()
            if out.get("released")
        )
        expiry = value.get("expiry_s")
        expires_at = value.get("expires_at")
        return SessionRecord(
            vhost,
            client_id,
            None if expiry is None else int(expiry),
            None if expires_at is None else float(expires_at),
            subscriptions,
            incoming,
            released,
        )

    def _message(self, data: Any, published_at: float) -> Message:
        if not isinstance(data, bytes):
            raise TypeError("a stored message is not bytes")
        message = self.codec.decode(data)
        annotations = dict(message.annotations or {})
        annotations["published_at"] = published_at
        message.annotations = annotations
        return message

    # -- retained messages -------------------------------------------------------------

    def retained_changed(self, vhost: str, topic: str, message: Message) -> None:
        """Record the topic's new retained message, or forget it (empty body)."""
        if not message.body:
            self._delete("retained", (vhost, topic))
            return
        value = {"message": self.codec.encode(message), "published_wall": self.wall_clock()}
        self._put("retained", (vhost, topic), value)

    def retained(self, now: float) -> Iterator[RetainedRecord]:
        """Every readable retained message, its ``published_at`` moved to the ``now`` clock."""
        wall_now = self.wall_clock()
        for key, value in self.store.items("retained"):
            vhost, topic = key
            try:
                published_wall = float(value.get("published_wall", wall_now))
                message = self._message(value["message"], now - (wall_now - published_wall))
            except (KeyError, TypeError, ValueError) as err:
                log.error("stored retained message %s skipped: unreadable (%s)", key, err)
                continue
            yield RetainedRecord(vhost, topic, message, published_wall)
