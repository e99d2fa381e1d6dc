"""Differential scenarios for policies and operator policies: RabbitMQ and RapidMQ, one script.

Each scenario drives one broker's management API and returns what it read:
status codes, policy JSON, error bodies, and the ``policy``,
``operator_policy`` and ``effective_policy_definition`` of queues and
exchanges, with what the queue holds after a policy changed.  RabbitMQ reports
a queue's policy fields and counts with its statistics, every few seconds, so a
scenario waits (with a deadline) until they show what it is waiting for; the
messages themselves are read with ``POST …/get``, which answers at once.

Ties between policies of equal priority are left out: RabbitMQ breaks them by
the hash order of its table, RapidMQ by name.  ``apply-to`` values newer than
3.10 (``classic_queues``, ``quorum_queues``, ``streams``) are left out too:
RabbitMQ 3.10 refuses them and RapidMQ takes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from management_support import Api, Cleanup, observe, token

pytestmark = pytest.mark.differential

Observation = dict[str, Any]
Scenario = Callable[[Api, str, Cleanup], Observation]
SCENARIOS: list[Scenario] = []
STATS_DEADLINE_S = 30.0
POLICY_FIELDS = ("policy", "operator_policy", "effective_policy_definition")


@pytest.fixture
def watchdog_s() -> float:
    return 150.0


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def put_policy(api: Api, cleanup: Cleanup, kind: str, name: str, body: dict[str, Any]) -> int:
    path = f"/api/{kind}/%2F/{name}"
    cleanup.add(path)
    return api.put(path, body).status


def queue(api: Api, cleanup: Cleanup, name: str, arguments: dict[str, Any] | None = None) -> None:
    path = f"/api/queues/%2F/{name}"
    cleanup.add(path)
    assert api.put(path, {"durable": False, "arguments": arguments or {}}).status in (201, 204)


def publish(api: Api, name: str, *bodies: str) -> list[Any]:
    """Publish through the API; what it answered to each (a refusal is a 400 there)."""
    replies = []
    for body in bodies:
        message = {
            "properties": {},
            "routing_key": name,
            "payload": body,
            "payload_encoding": "string",
        }
        reply = api.post("/api/exchanges/%2F/amq.default/publish", message)
        replies.append(reply.body)
    return replies


def take_all(api: Api, name: str) -> list[str]:
    """Every message of the queue, taken (acked) in order."""
    body = {"count": 100, "ackmode": "ack_requeue_false", "encoding": "auto"}
    reply = api.post(f"/api/queues/%2F/{name}/get", body)
    return [m["payload"] for m in reply.body] if isinstance(reply.body, list) else [reply.status]


def wait_for_queue(api: Api, name: str, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The queue's JSON once ``want`` holds for it (RabbitMQ's statistics lag)."""
    deadline = time.monotonic() + STATS_DEADLINE_S
    while True:
        body = api.get(f"/api/queues/%2F/{name}").body
        shown = body if isinstance(body, dict) else {}
        if "policy" in shown and want(shown):
            return shown
        if time.monotonic() > deadline:
            return shown
        time.sleep(0.25)


def policy_fields(shown: dict[str, Any]) -> dict[str, Any]:
    return {key: shown.get(key, "<missing>") for key in POLICY_FIELDS}


# --- the API -----------------------------------------------------------------------------


@scenario
def policy_put_get_list_delete(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    body = {"pattern": f"^{tok}", "definition": {"max-length": 5}, "priority": 3}
    created = put_policy(api, cleanup, "policies", f"{tok}-p", body)
    again = put_policy(api, cleanup, "policies", f"{tok}-p", {**body, "apply-to": "queues"})
    one = api.get(f"/api/policies/%2F/{tok}-p")
    listed = [p for p in api.get("/api/policies").body if tok in p["name"]]
    in_vhost = [p for p in api.get("/api/policies/%2F").body if tok in p["name"]]
    deleted = api.delete(f"/api/policies/%2F/{tok}-p")
    gone = api.delete(f"/api/policies/%2F/{tok}-p")
    missing = api.get(f"/api/policies/%2F/{tok}-p")
    return {
        "put": (created, again),
        "get": (one.status, one.body),
        "listed": listed,
        "in_vhost": in_vhost,
        "delete": deleted.status,
        "gone": (gone.status, gone.body),
        "missing": (missing.status, missing.body),
        "no_vhost": api.get(f"/api/policies/{tok}-nowhere").status,
    }


@scenario
def operator_policy_put_get_delete(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    body = {"pattern": f"^{tok}", "definition": {"max-length": 5, "delivery-limit": 3}}
    created = put_policy(api, cleanup, "operator-policies", f"{tok}-op", body)
    one = api.get(f"/api/operator-policies/%2F/{tok}-op")
    listed = [p for p in api.get("/api/operator-policies").body if tok in p["name"]]
    deleted = api.delete(f"/api/operator-policies/%2F/{tok}-op")
    missing = api.get(f"/api/operator-policies/%2F/{tok}-op")
    return {
        "put": created,
        "get": (one.status, one.body),
        "listed": listed,
        "delete": deleted.status,
        "missing": (missing.status, missing.body),
    }


REFUSED_POLICIES: list[dict[str, Any]] = [
    {"pattern": "(", "definition": {"max-length": 5}},
    {"pattern": "a[", "definition": {"max-length": 5}},
    {"pattern": "*a", "definition": {"max-length": 5}},
    {"pattern": 1, "definition": {"max-length": 5}},
    {"pattern": "a", "definition": {"max-length": "x"}},
    {"pattern": "a", "definition": {"max-length": -1}},
    {"pattern": "a", "definition": {"message-ttl": 1.5}},
    {"pattern": "a", "definition": {"expires": 0}},
    {"pattern": "a", "definition": {"message-ttl": "y", "expires": "z"}},
    {"pattern": "a", "definition": {"overflow": "foo"}},
    {"pattern": "a", "definition": {"dead-letter-exchange": 1}},
    {"pattern": "a", "definition": {"alternate-exchange": 3}},
    {"pattern": "a", "definition": {"queue-mode": "x"}},
    {"pattern": "a", "definition": {"delivery-limit": "x"}},
    {"pattern": "a", "definition": {"ha-params": 2}},
    {"pattern": "a", "definition": {"ha-mode": "all", "ha-params": 1}},
    {"pattern": "a", "definition": {"unknown-key": 1, "b": {"c": 1.5}}},
    {"pattern": "a", "definition": {}},
    {"pattern": "a", "definition": {"max-length": 1}, "priority": "x"},
    {"definition": {"max-length": 1}},
    {"pattern": "a"},
]


@scenario
def refused_policies_answer_with_rabbitmq_texts(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    path = f"/api/policies/%2F/{tok}-bad"
    cleanup.add(path)
    replies = [api.put(path, body) for body in REFUSED_POLICIES]
    unknown_apply_to = api.put(
        path, {"pattern": "a", "definition": {"max-length": 1}, "apply-to": "x"}
    )
    missing_vhost = api.put(
        f"/api/policies/{tok}-nowhere/p", {"pattern": "a", "definition": {"max-length": 1}}
    )
    return {
        "refused": [(r.status, r.body) for r in replies],
        # RabbitMQ 3.10 lists three values in this text, RapidMQ the six it takes.
        "unknown_apply_to": unknown_apply_to.status,
        "missing_vhost": (missing_vhost.status, missing_vhost.body),
        "none_created": api.get(path).status,
    }


@scenario
def refused_operator_policies_answer_with_rabbitmq_texts(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    path = f"/api/operator-policies/%2F/{tok}-bad"
    cleanup.add(path)
    bodies: list[dict[str, Any]] = [
        {"pattern": "a", "definition": {"overflow": "drop-head"}},
        {"pattern": "a", "definition": {"dead-letter-exchange": "x"}},
        {"pattern": "a", "definition": {"ha-mode": "all"}},
        {"pattern": "a", "definition": {"max-length": "x"}},
        {"pattern": "(", "definition": {"max-length": 1}},
        {"pattern": "a"},
    ]
    return {"refused": [(r.status, r.body) for r in (api.put(path, b) for b in bodies)]}


# --- what a policy does --------------------------------------------------------------------


@scenario
def the_highest_priority_policy_applies(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    low = {"pattern": f"^{tok}", "definition": {"max-length": 7}, "priority": 1}
    high = {
        "pattern": f"^{tok}-q",
        "definition": {"max-length": 4, "ha-mode": "all"},
        "priority": 5,
    }
    other = {"pattern": "^nothing-matches$", "definition": {"max-length": 1}, "priority": 9}
    put_policy(api, cleanup, "policies", f"{tok}-low", low)
    put_policy(api, cleanup, "policies", f"{tok}-high", high)
    put_policy(api, cleanup, "policies", f"{tok}-other", other)
    queue(api, cleanup, f"{tok}-q")
    queue(api, cleanup, f"{tok}-other-name")
    first = wait_for_queue(api, f"{tok}-q", lambda q: q["policy"] == f"{tok}-high")
    second = wait_for_queue(api, f"{tok}-other-name", lambda q: q["policy"] == f"{tok}-low")
    publish(api, f"{tok}-q", *(f"m{i}" for i in range(6)))
    return {
        "first": policy_fields(first),
        "second": policy_fields(second),
        "kept": take_all(api, f"{tok}-q"),
    }


@scenario
def an_operator_policy_merges_with_the_lower_limit_winning(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    mine = {
        "pattern": f"^{tok}",
        "definition": {"max-length": 6, "message-ttl": 100000, "expires": 900000},
    }
    cap = {"pattern": f"^{tok}", "definition": {"max-length": 4, "message-ttl": 200000}}
    put_policy(api, cleanup, "policies", f"{tok}-p", mine)
    put_policy(api, cleanup, "operator-policies", f"{tok}-op", cap)
    queue(api, cleanup, f"{tok}-q")
    shown = wait_for_queue(
        api, f"{tok}-q", lambda q: q["policy"] is not None and q["operator_policy"] is not None
    )
    publish(api, f"{tok}-q", *(f"m{i}" for i in range(6)))
    return {"fields": policy_fields(shown), "kept": take_all(api, f"{tok}-q")}


@scenario
def a_policy_change_applies_to_an_existing_queue_at_once(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    name = f"{tok}-q"
    queue(api, cleanup, name)
    publish(api, name, *(f"m{i}" for i in range(5)))
    put_policy(
        api,
        cleanup,
        "policies",
        f"{tok}-p",
        {"pattern": f"^{tok}", "definition": {"max-length": 2}},
    )
    after_set = take_all(api, name)
    publish(api, name, *(f"n{i}" for i in range(3)))
    assert api.delete(f"/api/policies/%2F/{tok}-p").status == 204
    shown = wait_for_queue(api, name, lambda q: q["policy"] is None)
    publish(api, name, *(f"o{i}" for i in range(2)))
    return {
        "after_set": after_set,
        "after_clear": take_all(api, name),
        "fields_after_clear": policy_fields(shown),
    }


@scenario
def queue_arguments_and_a_policy_combine(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    name = f"{tok}-q"
    queue(api, cleanup, name, {"x-max-length": 3, "x-overflow": "reject-publish"})
    body = {"pattern": f"^{tok}", "definition": {"max-length": 5, "overflow": "drop-head"}}
    put_policy(api, cleanup, "policies", f"{tok}-p", body)
    refused = publish(api, name, *(f"m{i}" for i in range(5)))
    below = take_all(api, name)
    lower = {"pattern": f"^{tok}", "definition": {"max-length": 2}}
    put_policy(api, cleanup, "policies", f"{tok}-p", lower)
    publish(api, name, *(f"n{i}" for i in range(4)))
    shown = wait_for_queue(
        api, name, lambda q: q["effective_policy_definition"] == {"max-length": 2}
    )
    return {
        "refused": refused,
        "below": below,
        "lower": take_all(api, name),
        "fields": policy_fields(shown),
    }


@scenario
def a_policy_dead_letter_exchange_takes_what_max_length_drops(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    dead = f"{tok}-dead"
    queue(api, cleanup, dead)
    exchange = f"/api/exchanges/%2F/{tok}-dlx"
    cleanup.add(exchange)
    assert api.put(exchange, {"type": "fanout"}).status == 201
    assert api.post(f"/api/bindings/%2F/e/{tok}-dlx/q/{dead}", {"routing_key": ""}).status == 201
    name = f"{tok}-q"
    queue(api, cleanup, name)
    publish(api, name, "a", "b", "c")
    body = {
        "pattern": f"^{tok}-q$",
        "definition": {"max-length": 1, "dead-letter-exchange": f"{tok}-dlx"},
    }
    put_policy(api, cleanup, "policies", f"{tok}-p", body)
    return {"dead": take_all(api, dead), "kept": take_all(api, name)}


@scenario
def an_exchange_shows_its_policy_and_routes_to_its_alternate(
    api: Api, tok: str, cleanup: Cleanup
) -> Observation:
    path = f"/api/exchanges/%2F/{tok}-x"
    cleanup.add(path)
    assert api.put(path, {"type": "direct"}).status == 201
    alternate = f"/api/exchanges/%2F/{tok}-ae"
    cleanup.add(alternate)
    assert api.put(alternate, {"type": "fanout"}).status == 201
    queue(api, cleanup, f"{tok}-unrouted")
    binding = f"/api/bindings/%2F/e/{tok}-ae/q/{tok}-unrouted"
    assert api.post(binding, {"routing_key": ""}).status == 201
    body = {
        "pattern": f"^{tok}-x$",
        "definition": {"alternate-exchange": f"{tok}-ae"},
        "apply-to": "exchanges",
    }
    put_policy(api, cleanup, "policies", f"{tok}-p", body)
    message = {
        "properties": {},
        "routing_key": "nowhere",
        "payload": "lost",
        "payload_encoding": "string",
    }
    routed = api.post(f"{path}/publish", message).body
    deadline = time.monotonic() + STATS_DEADLINE_S
    while (shown := api.get(path).body).get("policy") is None and time.monotonic() < deadline:
        time.sleep(0.25)
    plain = api.get("/api/exchanges/%2F/amq.direct").body
    return {
        "routed": routed,
        "unrouted": take_all(api, f"{tok}-unrouted"),
        "policy": shown.get("policy", "<missing>"),
        "plain": "policy" in plain,
    }


@pytest.mark.parametrize("fn", SCENARIOS, ids=lambda fn: fn.__name__)
def test_policies_match_rabbitmq(rabbitmq_api: Api, rapidmq_api: Api, fn: Scenario) -> None:
    expected = observe(rabbitmq_api, fn)
    actual = observe(rapidmq_api, fn)
    assert actual == expected


# --- definitions -----------------------------------------------------------------------------


def test_policies_from_rabbitmq_come_back_identical_from_rapidmq(
    rabbitmq_api: Api, rapidmq_api: Api
) -> None:
    tok = token()
    policies = {
        f"{tok}-a": {
            "pattern": f"^{tok}\\.orders",
            "definition": {"max-length": 500, "dead-letter-exchange": "dlx", "ha-mode": "all"},
            "priority": 7,
            "apply-to": "queues",
        },
        f"{tok}-b": {
            "pattern": f"^{tok}-x",
            "definition": {"alternate-exchange": "ae"},
            "priority": 0,
            "apply-to": "exchanges",
        },
        f"{tok}-c": {
            "pattern": ".*",
            "definition": {"expires": 3600000, "max-age": "1D"},
            "priority": -2,
        },
    }
    cleanup = Cleanup(rabbitmq_api)
    mine = Cleanup(rapidmq_api)
    try:
        for name, body in policies.items():
            assert put_policy(rabbitmq_api, cleanup, "policies", name, body) == 201
            mine.add(f"/api/policies/%2F/{name}")
        exported = rabbitmq_api.get("/api/definitions").body
        theirs = [p for p in exported["policies"] if tok in p["name"]]
        assert len(theirs) == 3
        imported = rapidmq_api.post("/api/definitions", {"policies": theirs})
        assert imported.status == 204, imported.body
        back = rapidmq_api.get("/api/definitions").body
        ours = [p for p in back["policies"] if tok in p["name"]]
        key = lambda p: p["name"]  # noqa: E731
        assert json.dumps(sorted(ours, key=key)) == json.dumps(sorted(theirs, key=key))
        per_vhost = rapidmq_api.get("/api/definitions/%2F").body
        assert sorted((p for p in per_vhost["policies"] if tok in p["name"]), key=key) == sorted(
            theirs, key=key
        )
    finally:
        cleanup.run()
        mine.run()
    assert [p for p in rabbitmq_api.get("/api/policies").body if tok in p["name"]] == []
