"""Policies applied to live queues and exchanges, kept in and restored from the store."""

from __future__ import annotations

from typing import Any

import pytest
from core_support import WALL_CLOCK_S, Client, FakeClock, connect, msg
from hypothesis import given, settings
from hypothesis import strategies as st

from rapidmq.core import Broker, PublishResult
from rapidmq.core.arguments import QueueSettings
from rapidmq.core.policy import make_policy
from rapidmq.core.vhost import VirtualHost
from rapidmq.storage.memory import MemoryMetadataStore


def vhost_of(broker: Broker, name: str = "/") -> VirtualHost:
    host = broker.vhost(name)
    assert host is not None
    return host


def set_policy(
    broker: Broker,
    name: str,
    definition: dict[str, Any],
    *,
    pattern: str = "^q",
    priority: int = 0,
    apply_to: str = "all",
    operator: bool = False,
) -> bool:
    body = {"pattern": pattern, "definition": definition, "priority": priority}
    policy = make_policy("/", name, body | {"apply-to": apply_to}, operator=operator)
    return vhost_of(broker).set_policy(policy, operator=operator)


def bodies(client: Client, queue: str) -> list[bytes]:
    out = []
    while (got := client.session.get(queue, no_ack=True)) is not None:
        out.append(got.message.body)
    return out


def fill(client: Client, queue: str, count: int) -> None:
    for i in range(count):
        client.session.publish(msg(f"m{i}", queue))


def test_a_policy_max_length_drops_the_head_of_an_existing_queue_at_once(
    broker: Broker, client: Client
) -> None:
    client.session.declare_queue("q1")
    fill(client, "q1", 5)
    assert set_policy(broker, "limit", {"max-length": 2}) is True
    assert bodies(client, "q1") == [b"m3", b"m4"]


def test_a_policy_dead_letter_exchange_takes_what_the_limit_drops(
    broker: Broker, client: Client
) -> None:
    s = client.session
    s.declare_queue("dead")
    s.bind_queue("dead", "amq.fanout", "")
    s.declare_queue("q1")
    fill(client, "q1", 3)
    set_policy(broker, "dlx", {"dead-letter-exchange": "amq.fanout", "max-length": 1})
    assert (bodies(client, "dead"), bodies(client, "q1")) == ([b"m0", b"m1"], [b"m2"])


def test_a_policy_message_ttl_applies_to_messages_published_after_it(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    client.session.declare_queue("q1")
    client.session.publish(msg("before", "q1"))
    set_policy(broker, "ttl", {"message-ttl": 100})
    client.session.publish(msg("after", "q1"))
    clock.advance(0.2)
    broker.tick()
    assert bodies(client, "q1") == [b"before"]


def test_queue_arguments_take_precedence_as_in_rabbitmq(broker: Broker, client: Client) -> None:
    client.session.declare_queue(
        "q1", arguments={"x-max-length": 3, "x-overflow": "reject-publish"}
    )
    set_policy(broker, "p", {"max-length": 5, "overflow": "drop-head"})
    fill(client, "q1", 4)
    assert bodies(client, "q1") == [b"m0", b"m1", b"m2"]  # 3 (the lower), publish refused
    set_policy(broker, "p", {"max-length": 2})
    fill(client, "q1", 3)
    assert bodies(client, "q1") == [b"m0", b"m1"]


def test_clearing_a_policy_gives_the_queue_its_own_settings_back(
    broker: Broker, client: Client
) -> None:
    client.session.declare_queue("q1", arguments={"x-max-length": 3})
    set_policy(broker, "p", {"max-length": 1, "message-ttl": 5})
    host = vhost_of(broker)
    assert host.clear_policy("p") is True
    assert host.clear_policy("p") is False
    assert host.queues["q1"].settings == QueueSettings(max_length=3)
    assert host.policies.of_queue("q1").policy is None


def test_a_queue_declared_after_the_policy_starts_with_it(broker: Broker, client: Client) -> None:
    set_policy(broker, "p", {"max-length": 1, "overflow": "reject-publish"})
    client.session.declare_queue("q1")
    results = [client.session.publish(msg(body, "q1")) for body in ("a", "b")]
    assert results == [PublishResult(True), PublishResult(True, rejected=True)]
    applied = vhost_of(broker).policies.of_queue("q1")
    assert (applied.policy is not None and applied.policy.name, dict(applied.definition)) == (
        "p",
        {"max-length": 1, "overflow": "reject-publish"},
    )


def test_higher_priority_wins_and_the_operator_policy_lowers_limits(
    broker: Broker, client: Client
) -> None:
    client.session.declare_queue("q1")
    set_policy(broker, "low", {"max-length": 1}, priority=1)
    set_policy(broker, "high", {"max-length": 6, "expires": 900000}, priority=5)
    set_policy(broker, "op", {"max-length": 4, "message-ttl": 200000}, operator=True)
    applied = vhost_of(broker).policies.of_queue("q1")
    assert applied.policy is not None and applied.operator_policy is not None
    assert (applied.policy.name, applied.operator_policy.name, dict(applied.definition)) == (
        "high",
        "op",
        {"expires": 900000, "max-length": 4, "message-ttl": 200000},
    )
    fill(client, "q1", 6)
    assert len(bodies(client, "q1")) == 4


def test_a_policy_expires_deletes_an_unused_queue(
    broker: Broker, client: Client, clock: FakeClock
) -> None:
    client.session.declare_queue("q1")
    set_policy(broker, "exp", {"expires": 1000})
    clock.advance(1.0)
    broker.tick()
    assert "q1" not in vhost_of(broker).queues


def test_a_policy_alternate_exchange_takes_unroutable_messages(
    broker: Broker, client: Client
) -> None:
    s = client.session
    s.declare_exchange("x1", "direct")
    s.declare_queue("q-ae")
    s.bind_queue("q-ae", "amq.fanout", "")
    set_policy(broker, "ae", {"alternate-exchange": "amq.fanout"}, pattern="^x1$")
    s.publish(msg("lost", "nowhere", "x1"))
    assert bodies(client, "q-ae") == [b"lost"]
    assert vhost_of(broker).exchanges["x1"].alternate == "amq.fanout"
    vhost_of(broker).clear_policy("ae")
    assert vhost_of(broker).exchanges["x1"].alternate is None


def test_apply_to_exchanges_leaves_queues_alone(broker: Broker, client: Client) -> None:
    client.session.declare_queue("q1")
    set_policy(broker, "p", {"max-length": 1}, apply_to="exchanges")
    fill(client, "q1", 2)
    assert bodies(client, "q1") == [b"m0", b"m1"]


# -- durability ---------------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryMetadataStore:
    return MemoryMetadataStore()


def stored_broker(store: MemoryMetadataStore, clock: FakeClock) -> Broker:
    broker = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, metadata=store)
    broker.restore()
    return broker


def test_policies_are_stored_and_restored_before_the_queues(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    before = stored_broker(store, clock)
    connect(before).session.declare_queue("q1", durable=True)
    set_policy(before, "p", {"max-length": 2, "ha-mode": "all"}, priority=3)
    set_policy(before, "op", {"max-length": 1}, operator=True)
    assert sorted(store.items("policy")) == [
        (
            ("/", "p"),
            {
                "pattern": "^q",
                "apply-to": "all",
                "definition": {"max-length": 2, "ha-mode": "all"},
                "priority": 3,
            },
        )
    ]
    after = Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S, metadata=store)
    counts = after.restore()
    assert counts == {"vhosts": 1, "policies": 2, "exchanges": 0, "queues": 1, "bindings": 0}
    host = vhost_of(after)
    assert [p.as_json() for p in host.policies.list()] == [
        p.as_json() for p in vhost_of(before).policies.list()
    ]
    assert host.queues["q1"].settings.max_length == 1
    cleared = host.clear_policy("op", operator=True)
    assert (cleared, list(store.items("operator_policy"))) == (True, [])


def test_a_restored_policy_applies_to_the_predeclared_exchanges(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    before = stored_broker(store, clock)
    set_policy(before, "ae", {"alternate-exchange": "amq.fanout"}, pattern="^amq.direct$")
    after = stored_broker(store, clock)
    host = vhost_of(after)
    applied = host.policies.of_exchange("amq.direct").policy
    assert (host.exchanges["amq.direct"].alternate, applied and applied.name) == (
        "amq.fanout",
        "ae",
    )


def test_deleting_a_vhost_deletes_its_policies(
    store: MemoryMetadataStore, clock: FakeClock
) -> None:
    broker = stored_broker(store, clock)
    broker.add_vhost("v2")
    host = vhost_of(broker, "v2")
    host.set_policy(
        make_policy("v2", "p", {"pattern": ".", "definition": {"max-length": 1}}, operator=False)
    )
    broker.delete_vhost("v2")
    assert list(store.items("policy")) == []


# -- live changes agree with resolving from scratch -------------------------------------------

policy_bodies = st.fixed_dictionaries(
    {
        "pattern": st.sampled_from(["^q", "^q1$", "2", "^x"]),
        "priority": st.integers(0, 3),
        "apply-to": st.sampled_from(["all", "queues", "exchanges"]),
        "definition": st.dictionaries(
            st.sampled_from(["max-length", "message-ttl", "expires"]),
            st.integers(1, 50),
            min_size=1,
        )
        | st.just({"overflow": "reject-publish"})
        | st.just({"dead-letter-exchange": "amq.fanout"}),
    }
)
changes = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), st.none() | policy_bodies),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(changes)
def test_live_policy_changes_leave_each_queue_as_if_declared_now(
    steps: list[tuple[str, bool, dict[str, Any] | None]],
) -> None:
    broker = Broker(clock=FakeClock(), wall_clock=lambda: WALL_CLOCK_S)
    session = connect(broker).session
    arguments = {"q1": {"x-max-length": 20, "x-overflow": "drop-head"}, "q2": {}, "q12": {}}
    for name, args in arguments.items():
        session.declare_queue(name, arguments=args)
    host = vhost_of(broker)
    for name, operator, body in steps:
        if body is None:
            host.clear_policy(name, operator=operator)
            continue
        if operator:
            body = dict(body, definition={"max-length": 7})
        host.set_policy(make_policy("/", name, body, operator=operator), operator=operator)
    live = {name: queue.settings for name, queue in host.queues.items()}
    for name, args in arguments.items():
        session.delete_queue(name)
        session.declare_queue(name, arguments=args)
    assert {name: queue.settings for name, queue in host.queues.items()} == live


def test_quorum_fallbacks_hold_for_settings_a_policy_sets(broker: Broker, client: Client) -> None:
    client.session.declare_queue(
        "qq", durable=True, arguments={"x-queue-type": "quorum", "x-max-length": 1}
    )
    queue = vhost_of(broker).queues["qq"]
    set_policy(broker, "dlx", {"overflow": "reject-publish-dlx"}, apply_to="quorum_queues")
    assert queue.settings.overflow == "drop-head"  # as RabbitMQ's quorum queues act
    set_policy(broker, "dlx", {"dead-letter-strategy": "at-least-once"}, apply_to="quorum_queues")
    # at-least-once needs reject-publish: with the default drop-head it falls back.
    assert (queue.settings.overflow, queue.settings.dead_letter_strategy) == (
        "drop-head",
        "at-most-once",
    )
    set_policy(
        broker,
        "dlx",
        {"overflow": "reject-publish", "dead-letter-strategy": "at-least-once"},
        apply_to="quorum_queues",
    )
    assert (queue.settings.overflow, queue.settings.dead_letter_strategy) == (
        "reject-publish",
        "at-least-once",
    )
