"""Permission decisions of the core: each operation against RabbitMQ's rules, caching, changes."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from core_support import WALL_CLOCK_S, FakeClock, msg

from rapidmq.auth.permissions import Permission, PermissionStore, TopicPermission
from rapidmq.core import Broker, ClientInfo, Session
from rapidmq.core.access import Access, open_access
from rapidmq.core.api import NoDeliveries
from rapidmq.core.errors import AccessRefused, NotAllowed, NotFound


def refused(user: str, kind: str, name: str, vhost: str = "/") -> str:
    return re.escape(f"access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'")


@pytest.fixture
def store() -> PermissionStore:
    return PermissionStore()


@pytest.fixture
def broker(store: PermissionStore) -> Broker:
    broker = Broker(clock=FakeClock(), wall_clock=lambda: WALL_CLOCK_S)
    broker.permissions = store
    return broker


def session_of(broker: Broker, user: str, vhost: str = "/", *, name: str = "") -> Session:
    info = ClientInfo("amqp091", "127.0.0.1:1", name=name, user=user)
    return broker.connect(vhost, info).open_session(NoDeliveries())


def admin(broker: Broker, store: PermissionStore) -> Session:
    store.set(Permission("root", "/"))
    return session_of(broker, "root")


# -- the patterns ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "allowed"),
    [
        (".*", "anything", True),
        ("", "anything", False),  # RabbitMQ reads "" as "^$"
        ("^$", "anything", False),
        ("^user-", "user-q", True),
        ("^user-", "my-user-q", False),
        ("user-", "my-user-q", True),  # re:run is unanchored
        ("^(a|b)$", "b", True),
        ("^(a|b)$", "bb", False),
        ("q$", "a-q", True),
    ],
)
def test_patterns_are_searched_unanchored_and_empty_denies(
    store: PermissionStore, pattern: str, name: str, allowed: bool
) -> None:
    store.set(Permission("u", "/", pattern, pattern, pattern))
    access = Access(store, "u", "/")
    for permission in ("configure", "write", "read"):
        assert access.allows("queue", name, permission) is allowed  # type: ignore[arg-type]


def test_the_default_exchange_is_matched_as_amq_default(store: PermissionStore) -> None:
    store.set(Permission("u", "/", ".*", "^amq\\.default$", ""))
    access = Access(store, "u", "/")
    assert access.allows("exchange", "", "write")
    assert not access.allows("exchange", "other", "write")
    store.set(Permission("u", "/", ".*", "^$", ""))
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "amq.default")):
        access.check_publish("")


def test_a_user_without_permission_in_the_vhost_is_refused_at_connect(
    broker: Broker, store: PermissionStore
) -> None:
    store.set(Permission("u", "other", ".*", ".*", ".*"))
    broker.add_vhost("other")
    with pytest.raises(NotAllowed, match=re.escape("access to vhost '/' refused for user 'u'")):
        session_of(broker, "u")
    assert session_of(broker, "u", "other").access is not None
    # Empty patterns still grant access to the vhost, as in RabbitMQ.
    store.set(Permission("u", "/", "", "", ""))
    assert session_of(broker, "u").access is not None


def test_vhost_refusal_is_audited(store: PermissionStore, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="rapidmq.audit")
    with pytest.raises(NotAllowed):
        open_access(store, "eve", "/", protocol="amqp091")
    (record,) = [r for r in caplog.records if r.name == "rapidmq.audit"]
    assert record.event == "access.refused"  # type: ignore[attr-defined]
    assert record.user == "eve"  # type: ignore[attr-defined]
    assert record.permission == "access"  # type: ignore[attr-defined]


def test_internal_and_full_access_connections_are_not_checked(broker: Broker) -> None:
    # No grant at all: "" is the broker's own user, full_access is definitions import.
    internal = broker.connect("/", ClientInfo("mqtt", "internal", name="mqtt-wills"))
    assert internal.access is None
    imported = broker.connect("/", ClientInfo("http", "m", user="nobody"), full_access=True)
    assert imported.access is None
    imported.open_session(NoDeliveries()).declare_queue("anything")


def test_a_broker_without_permissions_checks_nothing() -> None:
    broker = Broker()
    session = session_of(broker, "whoever")
    assert session.access is None
    session.declare_queue("q")


# -- each operation ----------------------------------------------------------------


@pytest.fixture
def user(broker: Broker, store: PermissionStore) -> Session:
    """A user who may configure, write and read only names starting with ``user-``."""
    root = admin(broker, store)
    root.declare_exchange("other-x", "direct")
    root.declare_queue("other-q")
    root.declare_exchange("user-x", "direct")
    root.declare_queue("user-q")
    store.set(Permission("u", "/", "^user-", "^user-", "^user-"))
    return session_of(broker, "u")


def test_exchange_declare_and_delete_need_configure(user: Session) -> None:
    user.declare_exchange("user-new", "fanout")
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-new")):
        user.declare_exchange("other-new", "fanout")
    user.declare_exchange("other-x", "direct", passive=True)  # passive: no check
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-x")):
        user.delete_exchange("other-x")
    user.delete_exchange("user-new")
    # Reserved names keep their own refusals.
    with pytest.raises(AccessRefused, match="deletion of system exchange"):
        user.delete_exchange("amq.direct")
    with pytest.raises(AccessRefused, match="default exchange"):
        user.declare_exchange("", "direct")


def test_an_alternate_exchange_needs_write_on_it_when_the_exchange_is_new(user: Session) -> None:
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "ae")):
        user.declare_exchange("user-y", "direct", arguments={"alternate-exchange": "ae"})
    user.declare_exchange("user-y", "direct", arguments={"alternate-exchange": "user-ae"})
    assert "user-y" in user.vhost.exchanges


def test_queue_declare_delete_purge(user: Session) -> None:
    assert user.declare_queue("user-new").name == "user-new"
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-new")):
        user.declare_queue("other-new")
    user.declare_queue("other-q", passive=True)
    with pytest.raises(AccessRefused, match=re.escape("access to queue 'amq.gen-")):
        user.declare_queue("")  # server-named queues are checked by their name
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-q")):
        user.delete_queue("other-q")
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-q")):
        user.purge_queue("other-q")
    assert user.purge_queue("user-q") == 0
    user.delete_queue("user-new")


def test_a_dead_letter_exchange_needs_write_on_it(user: Session) -> None:
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "dlx")):
        user.declare_queue("user-dl", arguments={"x-dead-letter-exchange": "dlx"})
    user.declare_queue("user-dl", arguments={"x-dead-letter-exchange": "user-dlx"})


def test_bindings_need_write_on_the_destination_and_read_on_the_source(user: Session) -> None:
    user.bind_queue("user-q", "user-x", "k")
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-q")):
        user.bind_queue("other-q", "user-x", "k")
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-x")):
        user.bind_queue("user-q", "other-x", "k")
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-x")):
        user.unbind_queue("user-q", "other-x", "k")
    user.unbind_queue("user-q", "user-x", "k")
    user.declare_exchange("user-x2", "direct")
    user.bind_exchange("user-x2", "user-x", "k")
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-x")):
        user.bind_exchange("other-x", "user-x", "k")
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "other-x")):
        user.bind_exchange("user-x2", "other-x", "k")
    user.unbind_exchange("user-x2", "user-x", "k")


def test_publish_needs_write_checked_before_the_exchange_exists(user: Session) -> None:
    assert not user.publish(msg("a", "k", exchange="user-x")).routed
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "amq.default")):
        user.publish(msg("a", "user-q"))
    # RabbitMQ refuses first, even for an exchange that does not exist.
    with pytest.raises(AccessRefused, match=refused("u", "exchange", "nowhere")):
        user.publish(msg("a", "k", exchange="nowhere"))
    with pytest.raises(NotFound):
        user.publish(msg("a", "k", exchange="user-nowhere"))


def test_consume_and_get_need_read(user: Session) -> None:
    assert user.get("user-q") is None
    user.consume("user-q", "c1")
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-q")):
        user.get("other-q")
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other-q")):
        user.consume("other-q", "c2")


# -- topic permissions -------------------------------------------------------------


def topic_refused(key: str, user: str = "u") -> str:
    return re.escape(
        f"access to topic '{key}' in exchange 'amq.topic' in vhost '/' refused for user '{user}'"
    )


def test_topic_permissions_narrow_publish_and_bind(broker: Broker, store: PermissionStore) -> None:
    admin(broker, store).declare_queue("tq")
    store.set(Permission("u", "/"))
    store.set_topic(TopicPermission("u", "/", "amq.topic", "^{username}\\.", "^news\\."))
    user = session_of(broker, "u")
    user.publish(msg("a", "u.x", exchange="amq.topic"))
    with pytest.raises(AccessRefused, match=topic_refused("v.x")):
        user.publish(msg("a", "v.x", exchange="amq.topic"))
    user.bind_queue("tq", "amq.topic", "news.#")
    with pytest.raises(AccessRefused, match=topic_refused("sport.#")):
        user.bind_queue("tq", "amq.topic", "sport.#")
    # Another topic exchange without a topic permission: every key goes.
    user.declare_exchange("t2", "topic")
    user.publish(msg("a", "v.x", exchange="t2"))
    user.bind_queue("tq", "t2", "sport.#")


def test_topic_permissions_only_apply_to_topic_exchanges(
    broker: Broker, store: PermissionStore
) -> None:
    store.set(Permission("u", "/"))
    store.set_topic(TopicPermission("u", "/", "amq.direct", "^$", "^$"))
    user = session_of(broker, "u")
    user.declare_queue("q")
    user.bind_queue("q", "amq.direct", "any")
    assert user.publish(msg("a", "any", exchange="amq.direct")).routed


@pytest.mark.parametrize(
    ("protocol", "client_id", "key", "allowed"),
    [
        ("mqtt", "dev1", "u.dev1./.x", True),
        ("mqtt", "dev2", "u.dev1./.x", False),
        # AMQP has no client id: RabbitMQ leaves "{client_id}" as it is.
        ("amqp091", "dev1", "u.dev1./.x", False),
        ("amqp091", "dev1", "u.{client_id}./.x", True),
    ],
)
def test_topic_patterns_expand_username_vhost_and_client_id(
    broker: Broker,
    store: PermissionStore,
    protocol: str,
    client_id: str,
    key: str,
    allowed: bool,
) -> None:
    store.set(Permission("u", "/"))
    pattern = "^{username}\\.{client_id}\\.{vhost}\\."
    store.set_topic(TopicPermission("u", "/", "amq.topic", pattern, pattern))
    info = ClientInfo(protocol, "p", name=client_id, user="u")
    session = broker.connect("/", info).open_session(NoDeliveries())
    access = session.access
    assert access is not None
    assert access.topic_allows("amq.topic", key, "write") is allowed


# -- caching and changes -----------------------------------------------------------


class CountingStore(PermissionStore):
    """A store that counts how often grants are read (each read compiles patterns)."""

    __slots__ = ("reads",)

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, user: str, vhost: str) -> Permission | None:
        self.reads += 1
        return super().get(user, vhost)


def test_decisions_are_cached_until_the_grants_change() -> None:
    store = CountingStore()
    store.set(Permission("u", "/", ".*", "^a$", ".*"))
    access = Access(store, "u", "/")
    reads = store.reads
    for _ in range(1000):
        access.check_publish("a")
    assert store.reads == reads
    assert access.write_exchange == {"a": True}
    # Any change anywhere bumps the version: the next check re-reads.
    store.set(Permission("other", "/"))
    access.check_publish("a")
    assert store.reads == reads + 1


def test_topic_cache_is_bounded(store: PermissionStore) -> None:
    from rapidmq.core import access as access_module

    store.set(Permission("u", "/"))
    store.set_topic(TopicPermission("u", "/", "amq.topic", "^k", "^k"))
    access = Access(store, "u", "/")
    for i in range(access_module.TOPIC_CACHE_SIZE * 3):
        assert access.topic_allows("amq.topic", f"k{i}", "write")
    assert len(access._topic_write["amq.topic"]) <= access_module.TOPIC_CACHE_SIZE


def test_changes_apply_to_open_sessions_at_their_next_operation(
    broker: Broker, store: PermissionStore
) -> None:
    store.set(Permission("u", "/"))
    session = session_of(broker, "u")
    session.declare_queue("q")
    assert session.publish(msg("a", "q")).routed
    store.set(Permission("u", "/", ".*", "^$", ".*"))
    with pytest.raises(AccessRefused):
        session.publish(msg("a", "q"))
    # Losing the vhost permission closes nothing, but refuses every operation.
    store.clear("u", "/")
    assert not session.closed
    with pytest.raises(AccessRefused, match=refused("u", "queue", "q")):
        session.get("q")
    store.set(Permission("u", "/"))
    assert session.get("q") is not None
    # Topic permissions are picked up the same way.
    store.set_topic(TopicPermission("u", "/", "amq.topic", "^ok$", ".*"))
    with pytest.raises(AccessRefused, match=topic_refused("no")):
        session.publish(msg("a", "no", exchange="amq.topic"))
    store.clear_topic("u", "/")
    session.publish(msg("a", "no", exchange="amq.topic"))


def test_refusals_are_audited(user: Session, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="rapidmq.audit")
    with pytest.raises(AccessRefused):
        user.consume("other-q", "c")
    (record,) = [r for r in caplog.records if r.name == "rapidmq.audit"]
    assert record.event == "access.refused"  # type: ignore[attr-defined]
    assert (record.user, record.vhost) == ("u", "/")  # type: ignore[attr-defined]
    assert record.resource == "queue 'other-q'"  # type: ignore[attr-defined]
    assert record.permission == "read"  # type: ignore[attr-defined]
    assert record.protocol == "amqp091"  # type: ignore[attr-defined]


def test_unchecked_blocks_skip_checks_and_restore_them(user: Session) -> None:
    with user.unchecked():
        assert user.publish(msg("a", "other-q")).routed
    with pytest.raises(AccessRefused):
        user.publish(msg("a", "other-q"))


def test_a_connection_can_be_given_another_users_access(
    broker: Broker, store: PermissionStore
) -> None:
    # An MQTT session restored without a user, resumed by a login of "u".
    connection = broker.connect("/", ClientInfo("mqtt", "restored", name="c1"))
    session = connection.open_session(NoDeliveries())
    store.set(Permission("u", "/", "^mqtt-", "^mqtt-", "^mqtt-"))
    info = ClientInfo("mqtt", "127.0.0.1:2", name="c1", user="u")
    connection.grant(broker.access_for("/", info))
    session.declare_queue("mqtt-session-c1")
    with pytest.raises(AccessRefused, match=refused("u", "queue", "other")):
        session.declare_queue("other")
    assert connection.open_session(NoDeliveries()).access is connection.access
    with pytest.raises(NotAllowed):
        broker.access_for("/", ClientInfo("mqtt", "p", name="c2", user="nobody"))
    assert broker.access_for("/", ClientInfo("mqtt", "internal")) is None
