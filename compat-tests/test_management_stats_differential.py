"""Management statistics and probe endpoints, RabbitMQ 3.10 against RapidMQ.

Each scenario drives one broker (AMQP through pika, then its management API)
and returns what it read; the two observations, token replaced, must be equal.
RabbitMQ publishes its statistics every few seconds, so a scenario waits, with
a deadline, until the figures it reads have arrived before reading them.

Keys that describe the Erlang VM (memory, reductions, garbage collection, the
classic queue's backing store) and the byte counts RapidMQ does not track per
queue are left out of the key-set comparisons; everything else must match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from management_support import Api, Cleanup, keys_of, observe, pick

pytestmark = pytest.mark.differential

Observation = Any
Scenario = Callable[[Api, str, Cleanup], Observation]
SCENARIOS: list[Scenario] = []
STATS_DEADLINE_S = 30.0
#: Keys about the Erlang VM, with no RapidMQ counterpart.
ERLANG_ONLY = frozenset(
    {"backing_queue_status", "garbage_collection", "memory", "reductions", "reductions_details"}
)
#: Byte counts of unacknowledged messages, which RapidMQ does not keep per queue.
NOT_TRACKED = frozenset({"message_bytes_ram", "message_bytes_unacknowledged"})
Q = {"x-queue-type": "quorum"}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def amqp(api: Api) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", api.amqp_port))


def wait_for(api: Api, path: str, ready: Callable[[Any], bool]) -> Any:
    """GET ``path`` until ``ready(body)`` or the deadline; the last body either way."""
    deadline = time.monotonic() + STATS_DEADLINE_S
    while True:
        body = api.get(path).body
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def compared_keys(body: Any) -> list[str]:
    return [k for k in keys_of(body) if k not in ERLANG_ONLY | NOT_TRACKED]


def has(body: Any, key: str, value: Any = None) -> bool:
    return isinstance(body, dict) and key in body and (value is None or body[key] == value)


# --- queues ----------------------------------------------------------------------------


@scenario
def classic_and_quorum_queue_json_keys(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    observed = {}
    for kind, arguments in (("classic", {}), ("quorum", Q)):
        q = f"{tok}-{kind}"
        cleanup.add(f"/api/queues/%2F/{q}")
        api.put(f"/api/queues/%2F/{q}", {"durable": True, "arguments": arguments})
        connection = amqp(api)
        ch = connection.channel()
        ch.confirm_delivery()
        ch.basic_publish("", q, b"one")
        ch.basic_publish("", q, b"two")
        method, _, _ = ch.basic_get(q)
        ch.basic_ack(method.delivery_tag)
        connection.close()
        path = f"/api/queues/%2F/{q}"
        body = wait_for(
            api,
            path,
            lambda b, q=q: _counted([b], q) and "deliver_get" in b.get("message_stats", {}),
        )
        listed = wait_for(api, "/api/queues/%2F", lambda items, q=q: _counted(items, q))
        item = next((i for i in listed if i.get("name") == q), {})
        observed[kind] = {
            "get": compared_keys(body),
            "list": compared_keys(item),
            "values": pick(
                body,
                (
                    "type",
                    "messages",
                    "messages_ready",
                    "messages_persistent",
                    "consumer_utilisation",
                    "consumer_capacity",
                    "durable",
                    "arguments",
                ),
            ),
            "message_stats": keys_of(body.get("message_stats")),
        }
    return observed


def _counted(items: Any, q: str) -> bool:
    """RabbitMQ's figures for ``q`` arrived: counts and the queue process's own."""
    return any(
        has(i, "messages", 1) and has(i, "consumer_utilisation") and has(i, "state")
        for i in items
        if i.get("name") == q
    )


@scenario
def quorum_queue_members_name_the_node(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    q = f"{tok}-quorum"
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/queues/%2F/{q}", {"durable": True, "arguments": Q})
    body = wait_for(api, f"/api/queues/%2F/{q}", lambda b: has(b, "leader") and has(b, "node"))
    node = body.get("node")
    return {
        "leader_is_node": body.get("leader") == node,
        "members": body.get("members") == [node],
        "online": body.get("online") == [node],
    }


@scenario
def at_least_once_dead_letters_wait_in_the_source_queue(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    q = f"{tok}-alo"
    cleanup.add(f"/api/queues/%2F/{q}")
    arguments = {
        **Q,
        "x-dead-letter-exchange": f"{tok}-missing",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    api.put(f"/api/queues/%2F/{q}", {"durable": True, "arguments": arguments})
    connection = amqp(api)
    ch = connection.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"dead")
    ch.basic_publish("", q, b"alive!")
    method, _, _ = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    connection.close()
    body = wait_for(api, f"/api/queues/%2F/{q}", lambda b: has(b, "messages_dlx", 1))
    return pick(
        body,
        ("messages", "messages_ready", "messages_dlx", "message_bytes", "message_bytes_dlx"),
    )


@scenario
def consumer_utilisation_with_and_without_a_consumer(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    q = f"{tok}-q"
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/queues/%2F/{q}", {"durable": False})
    path = f"/api/queues/%2F/{q}"
    idle = wait_for(api, path, lambda b: has(b, "consumer_utilisation"))
    connection = amqp(api)
    ch = connection.channel()
    ch.basic_qos(prefetch_count=10)
    ch.basic_consume(q, lambda *args: None)
    busy = wait_for(api, path, lambda b: has(b, "consumers", 1) and b["consumer_utilisation"])
    connection.close()
    return [
        pick(b, ("consumers", "consumer_utilisation", "consumer_capacity")) for b in (idle, busy)
    ]


@scenario
def consumer_utilisation_while_a_full_consumer_leaves_messages_waiting(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    """A classic queue's figure falls below 1; RabbitMQ 3.10's quorum queue stays at 1."""
    observed = {}
    for kind, arguments in (("classic", {}), ("quorum", Q)):
        q = f"{tok}-{kind}"
        path = f"/api/queues/%2F/{q}"
        cleanup.add(path)
        api.put(path, {"durable": True, "arguments": arguments})
        connection = amqp(api)
        ch = connection.channel()
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume(q, lambda *args: None)  # never acks: its one credit stays used
        for body in (b"taken", b"waits", b"waits too"):
            ch.basic_publish("", q, body)

        def blocked(b: Any, kind: str = kind) -> bool:
            waiting = has(b, "consumers", 1) and has(b, "messages_ready", 2)
            utilisation = b.get("consumer_utilisation") if waiting else None
            if kind == "quorum":
                return utilisation is not None
            return utilisation is not None and 0 < utilisation < 1

        body = wait_for(api, path, blocked)
        connection.close()
        utilisation = body["consumer_utilisation"]
        observed[kind] = [
            pick(body, ("consumers", "messages_ready", "messages_unacknowledged")),
            "between 0 and 1" if 0 < utilisation < 1 else repr(utilisation),
            # RabbitMQ reads its clock once for each of the two, so they differ in the last digits.
            abs(body["consumer_capacity"] - utilisation) < 1e-3,
        ]
    return observed


# --- exchanges -------------------------------------------------------------------------


@scenario
def exchange_message_stats_count_in_and_out(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    fan, direct, quiet = f"{tok}-fan", f"{tok}-direct", f"{tok}-quiet"
    queues = [f"{tok}-q1", f"{tok}-q2"]
    for x, kind in ((fan, "fanout"), (direct, "direct"), (quiet, "direct")):
        cleanup.add(f"/api/exchanges/%2F/{x}")
        api.put(f"/api/exchanges/%2F/{x}", {"type": kind})
    for q in queues:
        cleanup.add(f"/api/queues/%2F/{q}")
        api.put(f"/api/queues/%2F/{q}", {"durable": False})
        api.post(f"/api/bindings/%2F/e/{fan}/q/{q}", {"routing_key": ""})
    api.post(f"/api/bindings/%2F/e/{direct}/q/{queues[0]}", {"routing_key": "k"})
    connection = amqp(api)
    ch = connection.channel()
    ch.confirm_delivery()
    for _ in range(3):
        ch.basic_publish(fan, "", b"to both")
    ch.basic_publish(direct, "k", b"routed")
    ch.basic_publish(direct, "nowhere", b"unroutable")
    connection.close()

    def stats(x: str, published: int) -> Any:
        body = wait_for(
            api,
            f"/api/exchanges/%2F/{x}",
            lambda b: b.get("message_stats", {}).get("publish_in") == published,
        )
        figures = body.get("message_stats", {})
        return {
            "keys": keys_of(figures),
            "counts": pick(figures, ("publish_in", "publish_out")),
            "rates": sorted(k for k, v in figures.items() if isinstance(v, dict) and "rate" in v),
        }

    listed = api.get("/api/exchanges/%2F").body
    quiet_item = next((i for i in listed if i.get("name") == quiet), {})
    return {
        "fanout": stats(fan, 3),
        "direct": stats(direct, 2),
        # RapidMQ does not record who declared an exchange.
        "quiet": [
            k
            for k in keys_of(api.get(f"/api/exchanges/%2F/{quiet}").body)
            if k != "user_who_performed_action"
        ],
        "quiet_listed": "message_stats" in quiet_item,
    }


# --- bindings --------------------------------------------------------------------------

BINDING_ARGUMENTS: list[dict[str, Any]] = [
    {"a": 1},
    {"b": 2, "a": 1},
    {"x-match": "any", "k": "v", "n": -5, "flag": True},
    {"big": 2**40, "neg": -(2**31) - 5, "small": 100000000},
    {"list": [1, "a", False], "t": {"b": 1, "a": "two"}},
    {"bytes": b"\x00\x01raw", "empty": "", "none": None},
    {"long": "a text longer than twelve bytes, to hash in blocks"},
]


@scenario
def binding_properties_keys_hash_the_arguments(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    x, q = f"{tok}-x", f"{tok}-q"
    cleanup.add(f"/api/exchanges/%2F/{x}")
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/exchanges/%2F/{x}", {"type": "headers"})
    api.put(f"/api/queues/%2F/{q}", {"durable": False})
    connection = amqp(api)
    ch = connection.channel()
    for i, arguments in enumerate(BINDING_ARGUMENTS):
        ch.queue_bind(q, x, f"amqp.{i} key/with %", arguments=arguments)
    connection.close()
    posted = [
        api.post(f"/api/bindings/%2F/e/{x}/q/{q}", {"routing_key": "http", "arguments": a})
        for a in ({"a": 1}, {"s": "x", "a": 1, "b": True}, {"nested": {"n": 2}})
    ]
    listed = api.get(f"/api/bindings/%2F/e/{x}/q/{q}").body
    return {
        "listed": sorted((b["routing_key"], b["properties_key"]) for b in listed),
        "locations": [reply.headers.get("location") for reply in posted],
    }


# --- probe endpoints -------------------------------------------------------------------


@scenario
def queue_actions(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    q = f"{tok}-q"
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/queues/%2F/{q}", {"durable": True})
    path = f"/api/queues/%2F/{q}/actions"
    replies = [
        api.post(path, {"action": "sync"}),
        api.post(path, {"action": "cancel_sync"}),
        api.post(path, {"action": "purge"}),
        api.post(path, {}),
        api.call("POST", path, content=b"not json"),
        api.get(path),
    ]
    # A 405's body is not compared: RapidMQ answers every 405 in JSON.
    return [(r.status, r.body if r.status != 405 else None) for r in replies]


@scenario
def feature_flags_rapidmq_lists_are_enabled_in_rabbitmq(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    names = (
        "implicit_default_bindings",
        "quorum_queue",
        "user_limits",
        "virtual_host_metadata",
    )
    reply = api.get("/api/feature-flags")
    flags = {f["name"]: f for f in reply.body if f.get("name") in names}
    return {
        "status": reply.status,
        "keys": sorted({tuple(keys_of(f)) for f in reply.body}),
        "flags": {name: flags.get(name) for name in names},
    }


@scenario
def runtime_parameters_list_vhost_limits(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    vhost = f"{tok}-vh"
    cleanup.add(f"/api/vhosts/{vhost}")
    api.put(f"/api/vhosts/{vhost}")
    api.put(f"/api/vhost-limits/{vhost}/max-queues", {"value": 5})

    def mine(body: Any) -> Any:
        return [p for p in body if p.get("vhost") == vhost] if isinstance(body, list) else body

    replies = {
        "all": api.get("/api/parameters"),
        "component": api.get("/api/parameters/vhost-limits"),
        "vhost": api.get(f"/api/parameters/vhost-limits/{vhost}"),
        "other_component": api.get(f"/api/parameters/shovel/{vhost}"),
        "unknown_component": api.get("/api/parameters/no-such-component"),
    }
    one = api.get(f"/api/parameters/vhost-limits/{vhost}/limits")
    missing = api.get(f"/api/parameters/vhost-limits/{vhost}/nope")
    no_vhost = api.get(f"/api/parameters/vhost-limits/{tok}-absent")
    return {
        **{name: (r.status, mine(r.body)) for name, r in replies.items()},
        "one": (one.status, one.body),
        "missing": (missing.status, missing.body),
        "no_vhost": (no_vhost.status, no_vhost.body),
    }


@scenario
def global_parameters(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    listed = api.get("/api/global-parameters")
    cluster_id = api.get("/api/global-parameters/internal_cluster_id")
    missing = api.get(f"/api/global-parameters/{tok}")
    return {
        "listed": (listed.status, sorted({tuple(keys_of(p)) for p in listed.body})),
        "has_cluster_id": any(p.get("name") == "internal_cluster_id" for p in listed.body),
        "cluster_id": (cluster_id.status, keys_of(cluster_id.body)),
        "missing": (missing.status, missing.body),
    }


@pytest.fixture(params=SCENARIOS, ids=lambda fn: fn.__name__)
def run(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    yield request.param


@pytest.fixture
def watchdog_s() -> float:
    return 120.0  # RabbitMQ's statistics take up to a collection interval to show


def test_management_statistics_match_rabbitmq(
    rabbitmq_api: Api, rapidmq_api: Api, run: Scenario
) -> None:
    expected = observe(rabbitmq_api, run)
    actual = observe(rapidmq_api, run)
    assert actual == expected
