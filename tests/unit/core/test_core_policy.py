"""Policy records, validation, matching, precedence and merging: pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.core.arguments import QueueSettings, parse_queue_arguments
from rapidmq.core.policy import (
    QUEUE_POLICY_KEYS,
    InvalidPolicy,
    Policy,
    applies,
    choose,
    effective_definition,
    erlang_term,
    exchange_alternate,
    make_policy,
    queue_settings,
)


def policy(
    name: str,
    definition: dict[str, Any],
    *,
    pattern: str = ".*",
    priority: int = 0,
    apply_to: str = "all",
    operator: bool = False,
) -> Policy:
    body = {"pattern": pattern, "definition": definition, "priority": priority}
    return make_policy("/", name, body | {"apply-to": apply_to}, operator=operator)


def refusal(body: dict[str, Any], *, operator: bool = False) -> str:
    with pytest.raises(InvalidPolicy) as caught:
        make_policy("/", "p", body, operator=operator)
    return caught.value.text


# -- validation ------------------------------------------------------------------------


def test_a_policy_takes_rabbitmq_defaults_for_priority_and_apply_to() -> None:
    made = make_policy("/", "p", {"pattern": "^a", "definition": {"max-length": 5}}, operator=False)
    assert made.as_json() == {
        "vhost": "/",
        "name": "p",
        "pattern": "^a",
        "apply-to": "all",
        "definition": {"max-length": 5},
        "priority": 0,
    }


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            {"pattern": "(", "definition": {"max-length": 5}},
            'pattern should be regular expression but is invalid: {"missing )",1}',
        ),
        (
            {"pattern": "*a", "definition": {"max-length": 1}},
            'pattern should be regular expression but is invalid: {"nothing to repeat",0}',
        ),
        ({"pattern": 1, "definition": {"max-length": 1}}, "pattern should be a binary but was 1"),
        (
            {"pattern": "a", "definition": {"max-length": 1}, "priority": "x"},
            'priority should be a number, actually was <<"x">>',
        ),
        (
            {"pattern": "a", "definition": {"max-length": 5}, "apply-to": "foo"},
            "apply-to 'foo' unrecognised; should be one of: 'queues', 'classic_queues', "
            "'quorum_queues', 'streams', 'exchanges', or 'all'",
        ),
        ({"pattern": "a", "definition": {}}, "no policy provided"),
        (
            {"pattern": "a", "definition": {"max-length": "x"}},
            '<<"x">> is not a valid maximum length',
        ),
        ({"pattern": "a", "definition": {"max-length": -1}}, "-1 is not a valid maximum length"),
        (
            {"pattern": "a", "definition": {"max-length": True}},
            "true is not a valid maximum length",
        ),
        (
            {"pattern": "a", "definition": {"max-length": {"a": 1}}},
            '#{<<"a">> => 1} is not a valid maximum length',
        ),
        ({"pattern": "a", "definition": {"message-ttl": 1.5}}, "1.5 is not a valid message TTL"),
        ({"pattern": "a", "definition": {"expires": 0}}, "0 is not a valid queue expiry"),
        (
            # RabbitMQ reads the definition as a map: the first key in order is reported.
            {"pattern": "a", "definition": {"message-ttl": "y", "expires": "z"}},
            '<<"z">> is not a valid queue expiry',
        ),
        (
            {"pattern": "a", "definition": {"overflow": "foo"}},
            '<<"foo">> is not a valid overflow value',
        ),
        (
            {"pattern": "a", "definition": {"dead-letter-exchange": 1}},
            "1 is not a valid dead letter exchange name",
        ),
        (
            {"pattern": "a", "definition": {"alternate-exchange": 3}},
            "3 is not a valid alternate exchange name",
        ),
        (
            {"pattern": "a", "definition": {"queue-mode": "x"}},
            '<<"x">> is not a valid queue-mode value',
        ),
        (
            {"pattern": "a", "definition": {"ha-params": 2}},
            "ha-mode must be specified to specify ha-params, ha-sync-mode or "
            "ha-promote-on-shutdown",
        ),
        (
            {"pattern": "a", "definition": {"x-a": [1, "a"], "b": {"c": 1.5}}},
            '[{<<"b">>,#{<<"c">> => 1.5}},{<<"x-a">>,[1,<<"a">>]}] are not recognised '
            "policy settings",
        ),
    ],
)
def test_invalid_policies_are_refused_with_rabbitmq_texts(body: dict[str, Any], text: str) -> None:
    assert refusal(body) == text


def test_operator_policies_accept_only_limits() -> None:
    assert refusal({"pattern": "a", "definition": {"overflow": "drop-head"}}, operator=True) == (
        '[{<<"overflow">>,<<"drop-head">>}] are not recognised policy settings'
    )
    made = policy("op", {"max-in-memory-length": 1, "delivery-limit": 3}, operator=True)
    assert made.definition == {"max-in-memory-length": 1, "delivery-limit": 3}


def test_keys_rapidmq_does_not_act_on_are_kept() -> None:
    definition = {"ha-mode": "exactly", "ha-params": 2, "federation-upstream-set": "all"}
    assert policy("p", definition).definition == definition


# -- matching and precedence -----------------------------------------------------------


def test_the_pattern_matches_anywhere_in_the_name() -> None:
    made = policy("p", {"max-length": 1}, pattern="orders")
    assert [applies(made, n, "classic") for n in ("orders", "eu.orders.1", "order")] == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("apply_to", "kinds"),
    [
        ("all", ["classic", "quorum", "stream", "exchange"]),
        ("queues", ["classic", "quorum", "stream"]),
        ("classic_queues", ["classic"]),
        ("quorum_queues", ["quorum"]),
        ("streams", ["stream"]),
        ("exchanges", ["exchange"]),
    ],
)
def test_apply_to_selects_the_kinds_of_object(apply_to: str, kinds: list[str]) -> None:
    made = policy("p", {"max-length-bytes": 1}, apply_to=apply_to)
    found = [k for k in ("classic", "quorum", "stream", "exchange") if applies(made, "x", k)]
    assert found == kinds


def test_queue_types_skip_policies_with_keys_they_do_not_take() -> None:
    lazy = policy("lazy", {"max-length": 4, "queue-mode": "lazy"})
    limits = policy("limits", {"max-length": 4})
    assert [applies(lazy, "q", k) for k in ("classic", "quorum", "stream")] == [True, False, False]
    assert [applies(limits, "q", k) for k in ("classic", "quorum", "stream")] == [True, True, False]


def test_the_highest_priority_wins_and_ties_go_to_the_first_name() -> None:
    low = policy("low", {"max-length": 1}, priority=1)
    high = policy("high", {"max-length": 2}, priority=5)
    other = policy("other", {"max-length": 3}, priority=5, pattern="^nope$")
    assert choose([low, high, other], "q", "classic") is high
    b = policy("b", {"max-length": 1}, priority=5)
    assert choose([b, high], "q", "classic") is b
    assert choose([], "q", "classic") is None


@given(st.lists(st.tuples(st.integers(-3, 3), st.sampled_from("abcdef")), min_size=1))
def test_choose_picks_the_maximum_of_priority_then_name(entries: list[tuple[int, str]]) -> None:
    policies = {name: policy(name, {"max-length": 1}, priority=prio) for prio, name in entries}
    chosen = choose(policies.values(), "q", "classic")
    assert chosen is not None
    expected = min(policies.values(), key=lambda p: (-p.priority, p.name))
    assert chosen is expected


# -- merging -----------------------------------------------------------------------------


def test_operator_policy_merges_with_the_lower_limit_winning() -> None:
    mine = policy("p", {"max-length": 6, "message-ttl": 100000, "expires": 900000})
    operator = policy("op", {"max-length": 4, "message-ttl": 200000}, operator=True)
    assert effective_definition(mine, operator) == {
        "expires": 900000,
        "max-length": 4,
        "message-ttl": 100000,
    }
    assert effective_definition(None, operator) == {"max-length": 4, "message-ttl": 200000}
    assert effective_definition(mine, None) == mine.definition
    assert effective_definition(None, None) == {}


limits = st.integers(1, 10**6)


@given(
    st.dictionaries(st.sampled_from(["max-length", "expires", "message-ttl"]), limits, min_size=1),
    st.dictionaries(st.sampled_from(["max-length", "delivery-limit"]), limits, min_size=1),
)
def test_merge_keeps_every_key_and_never_exceeds_either_limit(
    mine: dict[str, int], theirs: dict[str, int]
) -> None:
    merged = effective_definition(
        policy("p", mine),
        policy("op", theirs, operator=True),
    )
    assert set(merged) == set(mine) | set(theirs)
    for key, value in merged.items():
        assert all(value <= d[key] for d in (mine, theirs) if key in d)


# -- settings ---------------------------------------------------------------------------


def settings_of(arguments: dict[str, Any], definition: dict[str, Any]) -> QueueSettings:
    return queue_settings(parse_queue_arguments(arguments, "q"), arguments, definition)


def test_classic_queue_arguments_and_policy_combine_by_rabbitmq_rules() -> None:
    arguments = {
        "x-max-length": 3,
        "x-message-ttl": 50000,
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "argdlx",
        "x-expires": 700000,
    }
    definition = {
        "max-length": 2,
        "message-ttl": 100000,
        "overflow": "drop-head",
        "dead-letter-exchange": "poldlx",
        "dead-letter-routing-key": "polkey",
        "expires": 600000,
        "max-length-bytes": 4096,
    }
    assert settings_of(arguments, definition) == QueueSettings(
        max_length=2,  # the lower of the two
        message_ttl_ms=50000,  # the lower of the two
        expires_ms=600000,  # the lower of the two
        overflow="reject-publish",  # the argument wins
        dead_letter_exchange="argdlx",  # the argument wins
        dead_letter_routing_key="polkey",  # no argument: the policy's
        max_length_bytes=4096,
    )


def test_quorum_queues_let_the_policy_win_for_overflow_and_expires() -> None:
    arguments = {"x-queue-type": "quorum", "x-overflow": "reject-publish", "x-expires": 1000}
    definition = {"overflow": "drop-head", "expires": 5000}
    got = settings_of(arguments, definition)
    assert (got.overflow, got.expires_ms) == ("drop-head", 5000)


def test_stream_max_age_takes_the_shorter_age() -> None:
    got = settings_of({"x-queue-type": "stream", "x-max-age": "2h"}, {"max-age": "1h"})
    assert got.max_age_s == 3600


def test_every_policy_key_names_a_queue_settings_field() -> None:
    fields = set(QueueSettings.__dataclass_fields__)
    assert [row[1] for row in QUEUE_POLICY_KEYS if row[1] not in fields] == []


def test_no_definition_leaves_the_declared_settings_as_they_are() -> None:
    declared = parse_queue_arguments({"x-max-length": 3}, "q")
    assert queue_settings(declared, {"x-max-length": 3}, {}) is declared


def test_the_exchange_argument_wins_over_the_policy_alternate() -> None:
    assert exchange_alternate({"alternate-exchange": "mine"}, {"alternate-exchange": "p"}) == "mine"
    assert exchange_alternate({}, {"alternate-exchange": "p"}) == "p"
    assert exchange_alternate({}, {}) is None


def test_erlang_terms_print_as_rabbitmq_prints_them() -> None:
    assert [erlang_term(v) for v in ("x", 1, 1.5, True, None, [1, "a"], {"b": 2, "a": 1})] == [
        '<<"x">>',
        "1",
        "1.5",
        "true",
        "null",
        '[1,<<"a">>]',
        '#{<<"a">> => 1,<<"b">> => 2}',
    ]
