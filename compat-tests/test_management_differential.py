"""Differential scenarios for the management API: the same HTTP script, RabbitMQ and RapidMQ.

Each scenario drives one broker's management API and returns what it read
(status codes, the keys it relies on, deterministic values, error bodies); the
two observations, with the per-run token replaced, must be equal.  Values that
belong to the node (ports, node names, totals of a shared broker, hashes) are
reduced to their shape before comparing.

A second group moves definitions between the two brokers in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from management_support import (
    MISSING,
    Api,
    Cleanup,
    enc,
    keys_of,
    normalize,
    observe,
    pick,
    token,
)

pytestmark = pytest.mark.differential

Observation = dict[str, Any]
Scenario = Callable[[Api, str, Cleanup], Observation]
SCENARIOS: list[Scenario] = []

QUEUE_KEYS = ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments")
EXCHANGE_KEYS = ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")
BINDING_KEYS = ("source", "vhost", "destination", "destination_type", "routing_key", "arguments")
GET_KEYS = (
    "payload_bytes",
    "redelivered",
    "exchange",
    "routing_key",
    "message_count",
    "payload",
    "payload_encoding",
)
PAGE_KEYS = ("page", "page_size", "page_count", "item_count", "filtered_count")


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def error_of(reply: Any) -> Observation:
    return {"status": reply.status, "body": reply.body}


# --- scenarios ----------------------------------------------------------------------------


@scenario
def overview_object_totals(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    reply = api.get("/api/overview")
    body = reply.body if isinstance(reply.body, dict) else {}
    return {"status": reply.status, "object_totals": keys_of(body.get("object_totals"))}


@scenario
def queue_put_get_delete(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    path = f"/api/queues/%2F/{tok}-q"
    cleanup.add(path)
    spec = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}}
    created = api.put(path, spec)
    again = api.put(path, spec)
    got = api.get(path)
    clash = api.put(path, {"durable": False, "auto_delete": False, "arguments": {}})
    deleted = api.delete(path)
    gone = api.get(path)
    return {
        "put": created.status,
        "put_again": again.status,
        "get": (got.status, pick(got.body, QUEUE_KEYS)),
        "clash": (clash.status, (clash.body or {}).get("error")),
        "delete": deleted.status,
        "gone": error_of(gone),
    }


@scenario
def exchange_put_get_delete(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    path = f"/api/exchanges/%2F/{tok}-x"
    cleanup.add(path)
    spec = {
        "type": "topic",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {"alternate-exchange": f"{tok}-ae"},
    }
    created = api.put(path, spec)
    got = api.get(path)
    deleted = api.delete(path)
    gone = api.get(path)
    return {
        "put": created.status,
        "get": (got.status, pick(got.body, EXCHANGE_KEYS)),
        "delete": deleted.status,
        "gone": error_of(gone),
    }


@scenario
def binding_by_properties_key(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    x, q = f"{tok}-x", f"{tok}-q"
    cleanup.add(f"/api/exchanges/%2F/{x}")
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/exchanges/%2F/{x}", {"type": "direct", "durable": False})
    api.put(f"/api/queues/%2F/{q}", {"durable": False})
    base = f"/api/bindings/%2F/e/{x}/q/{q}"
    posted = api.post(base, {"routing_key": "rk", "arguments": {"a": "1"}})
    listed = api.get(base)
    items = listed.body if isinstance(listed.body, list) else []
    key = items[0].get("properties_key", "") if items else ""
    one = api.get(f"{base}/{enc(key)}") if key else None
    deleted = api.delete(f"{base}/{enc(key)}") if key else None
    after = api.get(base)
    return {
        "post": posted.status,
        "list": (listed.status, [pick(i, BINDING_KEYS) for i in items]),
        "properties_key": key,
        "get_one": (one.status, pick(one.body, BINDING_KEYS)) if one else None,
        "delete": deleted.status if deleted else None,
        "after": (after.status, after.body),
    }


@scenario
def publish_and_get_with_ackmodes(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    q = f"{tok}-q"
    cleanup.add(f"/api/queues/%2F/{q}")
    api.put(f"/api/queues/%2F/{q}", {"durable": False})
    published = [
        api.post(
            "/api/exchanges/%2F/amq.default/publish",
            {"properties": {}, "routing_key": q, "payload": body, "payload_encoding": "string"},
        )
        for body in ("first", "second")
    ]
    unroutable = api.post(
        "/api/exchanges/%2F/amq.default/publish",
        {
            "properties": {},
            "routing_key": f"{tok}-none",
            "payload": "x",
            "payload_encoding": "string",
        },
    )
    get = {"count": 1, "ackmode": "reject_requeue_true", "encoding": "auto"}
    requeued = api.post(f"/api/queues/%2F/{q}/get", get)
    get = {"count": 5, "ackmode": "ack_requeue_false", "encoding": "auto"}
    taken = api.post(f"/api/queues/%2F/{q}/get", get)
    empty = api.post(f"/api/queues/%2F/{q}/get", get)

    def messages(reply: Any) -> Any:
        if not isinstance(reply.body, list):
            return reply.body
        return [pick(m, GET_KEYS) | {"properties": m.get("properties") or {}} for m in reply.body]

    return {
        "published": [(r.status, r.body) for r in published],
        "unroutable": (unroutable.status, unroutable.body),
        "reject_requeue_true": (requeued.status, messages(requeued)),
        "ack_requeue_false": (taken.status, messages(taken)),
        "empty": (empty.status, empty.body),
    }


@scenario
def paging_of_queues(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    for i in range(3):
        cleanup.add(f"/api/queues/%2F/{tok}-q{i}")
        api.put(f"/api/queues/%2F/{tok}-q{i}", {"durable": False})
    reply = api.get(f"/api/queues?page=1&page_size=2&name={tok}&use_regex=false")
    second = api.get(f"/api/queues?page=2&page_size=2&name={tok}&use_regex=false")
    body = reply.body if isinstance(reply.body, dict) else {}
    page2 = second.body if isinstance(second.body, dict) else {}
    return {
        "status": (reply.status, second.status),
        "keys": keys_of(body),
        "values": pick(body, PAGE_KEYS),
        "total_count_is_int": isinstance(body.get("total_count"), int),
        "names": [item.get("name") for item in body.get("items", [])],
        "names_page2": [item.get("name") for item in page2.get("items", [])],
    }


@scenario
def vhost_user_permission_lifecycle(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    vhost, user = f"{tok}-vh", f"{tok}-user"
    cleanup.add(f"/api/vhosts/{vhost}")
    cleanup.add(f"/api/users/{user}")
    out: Observation = {}
    out["vhost_put"] = api.put(f"/api/vhosts/{vhost}", {"description": "d", "tags": "a,b"}).status
    got = api.get(f"/api/vhosts/{vhost}")
    out["vhost_get"] = (got.status, pick(got.body, ("name", "description", "tags")))
    out["user_put"] = api.put(
        f"/api/users/{user}", {"password": "pw-1", "tags": "management"}
    ).status
    got = api.get(f"/api/users/{user}")
    out["user_get"] = (got.status, pick(got.body, ("name", "tags", "hashing_algorithm")))
    out["user_keys"] = keys_of(got.body)
    spec = {"configure": "^c", "write": "^w", "read": "^r"}
    out["perm_put"] = api.put(f"/api/permissions/{vhost}/{user}", spec).status
    got = api.get(f"/api/permissions/{vhost}/{user}")
    out["perm_get"] = (got.status, got.body)
    whoami = api.get("/api/whoami", auth=(user, "pw-1"))
    out["whoami"] = (whoami.status, whoami.body)
    out["perm_delete"] = api.delete(f"/api/permissions/{vhost}/{user}").status
    out["perm_gone"] = error_of(api.get(f"/api/permissions/{vhost}/{user}"))
    out["user_delete"] = api.delete(f"/api/users/{user}").status
    out["user_gone"] = error_of(api.get(f"/api/users/{user}"))
    out["vhost_delete"] = api.delete(f"/api/vhosts/{vhost}").status
    out["vhost_gone"] = error_of(api.get(f"/api/vhosts/{vhost}"))
    return out


@scenario
def whoami_of_the_administrator(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    reply = api.get("/api/whoami")
    return {"status": reply.status, "body": reply.body}


@scenario
def health_checks(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    alarms = api.get("/api/health/checks/alarms")
    listening = api.get(f"/api/health/checks/port-listener/{api.amqp_port}")
    body = listening.body if isinstance(listening.body, dict) else {}
    closed = api.get("/api/health/checks/port-listener/1")
    closed_body = closed.body if isinstance(closed.body, dict) else {}
    return {
        "alarms": (alarms.status, alarms.body),
        "port_listener": (listening.status, body.get("status"), body.get("port") == api.amqp_port),
        "port_not_listening": (
            closed.status,
            closed_body.get("status"),
            closed_body.get("reason"),
            closed_body.get("missing"),
        ),
    }


@scenario
def error_bodies(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    missing = api.get(f"/api/queues/%2F/{tok}-absent")
    bad_password = api.get("/api/overview", auth=("guest", f"wrong-{tok}"))
    not_json = api.call("PUT", f"/api/queues/%2F/{tok}-q", content=b"{bad")
    cleanup.add(f"/api/queues/%2F/{tok}-q")
    wrong_method = api.delete("/api/overview")
    return {
        "404": error_of(missing),
        "401": error_of(bad_password),
        "401_challenge": bad_password.headers.get("www-authenticate", MISSING).split(" ")[0],
        "400": error_of(not_json),
        "405": wrong_method.status,
    }


@scenario
def refusals_by_tag_and_vhost(api: Api, tok: str, cleanup: Cleanup) -> Observation:
    monitor, manager, vhost = f"{tok}-mon", f"{tok}-mgr", f"{tok}-vh"
    cleanup.add(f"/api/users/{monitor}")
    cleanup.add(f"/api/users/{manager}")
    cleanup.add(f"/api/vhosts/{vhost}")
    api.put(f"/api/users/{monitor}", {"password": "pw", "tags": "monitoring"})
    api.put(f"/api/users/{manager}", {"password": "pw", "tags": "management"})
    api.put(f"/api/vhosts/{vhost}")
    return {
        "definitions": error_of(api.get("/api/definitions", auth=(monitor, "pw"))),
        "users": error_of(api.get("/api/users", auth=(monitor, "pw"))),
        "nodes": error_of(api.get("/api/nodes", auth=(manager, "pw"))),
        "vhost_not_granted": error_of(api.get(f"/api/queues/{vhost}", auth=(manager, "pw"))),
    }


@pytest.mark.parametrize("fn", SCENARIOS, ids=lambda fn: fn.__name__)
def test_management_api_matches_rabbitmq(rabbitmq_api: Api, rapidmq_api: Api, fn: Scenario) -> None:
    expected = observe(rabbitmq_api, fn)
    actual = observe(rapidmq_api, fn)
    assert actual == expected


# --- definitions across the two brokers ---------------------------------------------------


def seed_definitions(tok: str) -> dict[str, Any]:
    """Users, a vhost, grants and topology, as a definitions file names them."""
    vhost = f"{tok}-vh"
    return {
        "users": [
            {"name": f"{tok}-alice", "password": "alice-pw", "tags": "management"},
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": f"{tok}-alice",
                "vhost": vhost,
                "configure": "^a",
                "write": ".*",
                "read": ".*",
            },
            {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"},
        ],
        "topic_permissions": [
            {
                "user": f"{tok}-alice",
                "vhost": vhost,
                "exchange": "amq.topic",
                "write": "^x",
                "read": ".*",
            }
        ],
        "exchanges": [
            {
                "name": "dlx",
                "vhost": vhost,
                "type": "fanout",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            },
            {
                "name": "orders",
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {"alternate-exchange": "dlx"},
            },
            {
                "name": "audit",
                "vhost": vhost,
                "type": "headers",
                "durable": True,
                "auto_delete": False,
                "internal": True,
                "arguments": {},
            },
        ],
        "queues": [
            {
                "name": "orders.eu",
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": {
                    "x-message-ttl": 60000,
                    "x-dead-letter-exchange": "dlx",
                    "x-max-length": 100,
                },
            },
            {
                "name": "dead",
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            },
        ],
        "bindings": [
            {
                "source": "orders",
                "vhost": vhost,
                "destination": "orders.eu",
                "destination_type": "queue",
                "routing_key": "order.eu.*",
                "arguments": {},
            },
            {
                "source": "dlx",
                "vhost": vhost,
                "destination": "dead",
                "destination_type": "queue",
                "routing_key": "",
                "arguments": {},
            },
            {
                "source": "orders",
                "vhost": vhost,
                "destination": "audit",
                "destination_type": "exchange",
                "routing_key": "#",
                "arguments": {"x-tag": "copy"},
            },
        ],
    }


SECTIONS = (
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "queues",
    "exchanges",
    "bindings",
)


def only_token(definitions: dict[str, Any], tok: str) -> dict[str, Any]:
    """The sections of an export that hold the token, for import elsewhere."""
    out: dict[str, Any] = {}
    for key in SECTIONS:
        out[key] = [item for item in definitions.get(key, []) if tok in json.dumps(item)]
    return out


def comparable(definitions: dict[str, Any], tok: str) -> dict[str, Any]:
    """What both brokers must agree on, order-free and without node-specific values."""
    picked = only_token(definitions, tok)
    picked["users"] = [{"name": u["name"], "tags": u["tags"]} for u in picked["users"]]
    picked["vhosts"] = [{"name": v["name"]} for v in picked["vhosts"]]
    ordered = {
        key: sorted(json.dumps(i, sort_keys=True) for i in items) for key, items in picked.items()
    }
    result: dict[str, Any] = normalize(ordered, tok)
    return result


def forget_in_rabbitmq(api: Api, tok: str) -> None:
    api.delete(f"/api/vhosts/{tok}-vh")
    api.delete(f"/api/users/{tok}-alice")


def test_definitions_exported_from_rabbitmq_import_into_rapidmq(
    rabbitmq_api: Api, rapidmq_api: Api
) -> None:
    tok = token()
    try:
        assert rabbitmq_api.post("/api/definitions", seed_definitions(tok)).status == 204
        exported = rabbitmq_api.get("/api/definitions")
        assert exported.status == 200
        subset = only_token(exported.body, tok)
        # RabbitMQ's own informational keys travel along, as in a real file.
        subset.update({k: exported.body[k] for k in ("rabbit_version", "product_name")})
        imported = rapidmq_api.post("/api/definitions", subset)
        assert imported.status == 204, imported.body
        back = rapidmq_api.get("/api/definitions")
        assert comparable(back.body, tok) == comparable(exported.body, tok)
        login = rapidmq_api.get("/api/whoami", auth=(f"{tok}-alice", "alice-pw"))
        assert login.status == 200
    finally:
        forget_in_rabbitmq(rabbitmq_api, tok)
    assert rabbitmq_api.get(f"/api/vhosts/{tok}-vh").status == 404


def test_definitions_exported_from_rapidmq_import_into_rabbitmq(
    rabbitmq_api: Api, rapidmq_api: Api
) -> None:
    tok = token()
    try:
        assert rapidmq_api.post("/api/definitions", seed_definitions(tok)).status == 204
        exported = rapidmq_api.get("/api/definitions")
        assert exported.status == 200
        # Only the token's objects: the shared RabbitMQ's guest and cluster name stay as they are.
        subset = only_token(exported.body, tok)
        imported = rabbitmq_api.post("/api/definitions", subset)
        assert imported.status == 204, imported.body
        back = rabbitmq_api.get("/api/definitions")
        assert comparable(back.body, tok) == comparable(exported.body, tok)
        login = rabbitmq_api.get("/api/whoami", auth=(f"{tok}-alice", "alice-pw"))
        assert login.status == 200, "RabbitMQ refused the password hash RapidMQ exported"
    finally:
        forget_in_rabbitmq(rabbitmq_api, tok)
    assert rabbitmq_api.get(f"/api/users/{tok}-alice").status == 404


def test_per_vhost_definitions_have_the_same_shape(rabbitmq_api: Api, rapidmq_api: Api) -> None:
    observed = []
    for api in (rabbitmq_api, rapidmq_api):
        reply = api.get("/api/definitions/%2F")
        missing = api.get("/api/definitions/no-such-vhost-mgmt")
        observed.append(
            {"status": reply.status, "keys": keys_of(reply.body), "missing": error_of(missing)}
        )
    assert observed[1] == observed[0]


def test_rabbitmq_is_left_without_scratch_objects(rabbitmq_api: Api) -> None:
    leftovers = [
        item.get("name")
        for kind in ("queues", "exchanges", "vhosts", "users")
        for item in (rabbitmq_api.get(f"/api/{kind}").body or [])
        if isinstance(item, dict) and str(item.get("name", "")).startswith("mgmt")
    ]
    assert leftovers == []
