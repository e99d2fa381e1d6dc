"""PermissionStore: grants, topic grants, cascades, and what the metadata store keeps."""

from __future__ import annotations

from typing import Any

import pytest

from rapidmq.auth.permissions import InvalidPattern, Permission, PermissionStore, TopicPermission
from rapidmq.storage.api import StorageError
from rapidmq.storage.memory import MemoryMetadataStore


class RefusingStore(MemoryMetadataStore):
    """A metadata store whose disk is full: every write fails."""

    def put(self, kind: str, key: tuple[str, ...], value: dict[str, Any]) -> None:
        raise StorageError("disk full")


def test_a_permission_is_granted_replaced_and_cleared() -> None:
    store = PermissionStore()
    store.set(Permission("alice", "/", "^a", "^b", "^c"))
    assert store.get("alice", "/") == Permission("alice", "/", "^a", "^b", "^c")
    assert store.get("alice", "other") is None
    store.set(Permission("alice", "/", "", ".*", ".*"))
    assert list(store) == [Permission("alice", "/", "", ".*", ".*")]
    assert store.clear("alice", "/") is True
    assert store.clear("alice", "/") is False
    assert store.get("alice", "/") is None


def test_an_invalid_pattern_is_refused_and_changes_nothing() -> None:
    store = PermissionStore()
    store.set(Permission("alice", "/", "^a"))
    with pytest.raises(InvalidPattern, match=r"\("):
        store.set(Permission("alice", "/", "(", ".*", ".*"))
    with pytest.raises(InvalidPattern):
        store.set_topic(TopicPermission("alice", "/", "amq.topic", ".*", "[z-a]"))
    assert store.get("alice", "/") == Permission("alice", "/", "^a")
    assert store.topic_permissions() == []


def test_topic_permissions_are_listed_by_exchange_and_cleared_one_or_all() -> None:
    store = PermissionStore()
    store.set_topic(TopicPermission("alice", "/", "zeta", "^z"))
    store.set_topic(TopicPermission("alice", "/", "amq.topic", "^a"))
    store.set_topic(TopicPermission("alice", "other", "amq.topic"))
    store.set_topic(TopicPermission("bob", "/", "amq.topic"))
    assert [t.exchange for t in store.topic("alice", "/")] == ["amq.topic", "zeta"]
    store.set_topic(TopicPermission("alice", "/", "zeta", "^zz"))
    assert store.topic("alice", "/")[1].write == "^zz"
    assert store.clear_topic("alice", "/", "zeta") == 1
    assert [t.exchange for t in store.topic("alice", "/")] == ["amq.topic"]
    assert store.clear_topic("alice", "/") == 1
    assert store.clear_topic("alice", "/") == 0
    assert len(store.topic_permissions()) == 2


def test_deleting_a_user_forgets_only_their_grants() -> None:
    store = PermissionStore()
    for user in ("alice", "bob"):
        store.set(Permission(user, "/"))
        store.set(Permission(user, "b"))
        store.set_topic(TopicPermission(user, "/", "amq.topic"))
    store.user_deleted("alice")
    assert {(p.user, p.vhost) for p in store} == {("bob", "/"), ("bob", "b")}
    assert [t.user for t in store.topic_permissions()] == ["bob"]


def test_deleting_a_vhost_forgets_every_grant_in_it() -> None:
    store = PermissionStore()
    for user in ("alice", "bob"):
        store.set(Permission(user, "/"))
        store.set(Permission(user, "gone"))
        store.set_topic(TopicPermission(user, "gone", "amq.topic"))
    store.set_topic(TopicPermission("alice", "/", "amq.topic"))
    store.vhost_deleted("gone")
    assert {(p.user, p.vhost) for p in store} == {("alice", "/"), ("bob", "/")}
    assert [(t.user, t.vhost) for t in store.topic_permissions()] == [("alice", "/")]


def test_grants_survive_a_restart_through_the_metadata_store() -> None:
    metadata = MemoryMetadataStore()
    store = PermissionStore(metadata=metadata)
    store.set(Permission("alice", "/", "^c", "^w", "^r"))
    store.set(Permission("bob", "/"))
    store.set_topic(TopicPermission("alice", "/", "amq.topic", "^tw", "^tr"))
    store.set_topic(TopicPermission("bob", "/", "amq.topic"))
    store.user_deleted("bob")
    restored = PermissionStore(metadata=metadata)
    assert restored.restore() == 2
    assert list(restored) == [Permission("alice", "/", "^c", "^w", "^r")]
    assert restored.topic_permissions() == [
        TopicPermission("alice", "/", "amq.topic", "^tw", "^tr")
    ]


def test_a_refused_write_grants_nothing() -> None:
    store = PermissionStore(metadata=RefusingStore())
    with pytest.raises(StorageError):
        store.set(Permission("alice", "/"))
    with pytest.raises(StorageError):
        store.set_topic(TopicPermission("alice", "/", "amq.topic"))
    assert store.get("alice", "/") is None
    assert store.topic("alice", "/") == []
