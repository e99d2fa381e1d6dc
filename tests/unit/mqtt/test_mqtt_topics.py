"""Topic names and filters: validation, shared subscriptions, AMQP mapping and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.protocols.mqtt.errors import InvalidTopic, InvalidTopicFilter
from rapidmq.protocols.mqtt.topics import (
    filter_to_binding_key,
    parse_shared,
    routing_key_to_topic,
    topic_matches,
    topic_to_routing_key,
    validate_topic_filter,
    validate_topic_name,
)

LONGEST = "é" * 32767 + "a"  # 65,535 octets of UTF-8


@pytest.mark.parametrize("topic", ["a", "a/b/c", "/", "a//b", "$SYS/x", "sp ace", "ü/ñ", LONGEST])
def test_valid_topic_names_pass(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize(
    ("topic", "text"),
    [
        ("", "topic name is empty"),
        ("a/+", "topic name 'a/+' contains a wildcard"),
        ("a/#", "topic name 'a/#' contains a wildcard"),
        ("a+b", "topic name 'a+b' contains a wildcard"),
        ("a\x00b", "topic name contains U+0000"),
        (LONGEST + "a", "topic name is longer than 65,535 octets"),
    ],
)
def test_invalid_topic_names_are_refused(topic: str, text: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        validate_topic_name(topic)
    assert (caught.value.reason_code, caught.value.text) == (0x90, text)


def test_an_empty_topic_name_is_allowed_with_a_topic_alias() -> None:
    validate_topic_name("", allow_empty=True)
    with pytest.raises(InvalidTopic):
        validate_topic_name("+", allow_empty=True)


@pytest.mark.parametrize(
    "topic_filter",
    ["a", "#", "+", "a/#", "a/+/b", "+/+", "/+", "a//#", "$SYS/#", "$share/g/a/+", "$share/g/#"],
)
def test_valid_topic_filters_pass(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "text"),
    [
        ("", "topic filter is empty"),
        ("a/#/b", "'#' is not the last level of 'a/#/b'"),
        ("a#", "wildcard inside a level of 'a#'"),
        ("a/b+", "wildcard inside a level of 'a/b+'"),
        ("+a/b", "wildcard inside a level of '+a/b'"),
        ("a\x00", "topic filter contains U+0000"),
        (LONGEST + "a", "topic filter is longer than 65,535 octets"),
        ("$share/g", "no topic filter after the share name in '$share/g'"),
        ("$share/g/", "no topic filter after the share name in '$share/g/'"),
        ("$share//a", "invalid share name in '$share//a'"),
        ("$share/g+/a", "invalid share name in '$share/g+/a'"),
        ("$share/#/a", "invalid share name in '$share/#/a'"),
        ("$share/g/a/#/b", "'#' is not the last level of 'a/#/b'"),
    ],
)
def test_invalid_topic_filters_are_refused(topic_filter: str, text: str) -> None:
    with pytest.raises(InvalidTopicFilter) as caught:
        validate_topic_filter(topic_filter)
    assert (caught.value.reason_code, caught.value.text) == (0x8F, text)


@pytest.mark.parametrize(
    ("topic_filter", "parsed"),
    [
        ("$share/group/a/b", ("group", "a/b")),
        ("$share/g/#", ("g", "#")),
        ("$share/g//", ("g", "/")),
        ("a/b", None),
        ("$share", None),
        ("$SHARE/g/a", None),
        ("$sharex/g/a", None),
    ],
)
def test_shared_subscriptions_are_split(topic_filter: str, parsed: tuple[str, str] | None) -> None:
    assert parse_shared(topic_filter) == parsed


@pytest.mark.parametrize(
    ("topic", "key"),
    [("a/b/c", "a.b.c"), ("a.b/c", "a/b.c"), ("/", "."), ("", ""), ("x", "x"), ("a*b", "a*b")],
)
def test_topics_map_to_routing_keys_both_ways(topic: str, key: str) -> None:
    assert (topic_to_routing_key(topic), routing_key_to_topic(key)) == (key, topic)


@pytest.mark.parametrize(
    ("topic_filter", "key"),
    [("a/+/c", "a.*.c"), ("#", "#"), ("a/#", "a.#"), ("+", "*"), ("a.b/+", "a/b.*")],
)
def test_filters_map_to_binding_keys(topic_filter: str, key: str) -> None:
    assert filter_to_binding_key(topic_filter) == key


@given(st.text())
def test_routing_key_mapping_is_its_own_inverse(topic: str) -> None:
    assert routing_key_to_topic(topic_to_routing_key(topic)) == topic


MATCHES = [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/", True),
    ("a/+", "a", False),
    ("a/+", "a/b/c", False),
    ("+/+", "/x", True),
    ("+", "/x", False),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("a/#", "ab", False),
    ("#", "a/b", True),
    ("#", "/", True),
    ("+/b/#", "x/b", True),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/+", "$SYS/x", True),
    ("a/b/c", "a/b", False),
    ("a/b", "a/b/c", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_topic_matching_follows_mqtt_rules(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


levels = st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=4)


@given(levels, levels)
def test_matching_agrees_with_a_level_by_level_reading(
    filter_levels: list[str], topic: list[str]
) -> None:
    """Wildcards put in place of topic levels still match; a changed level does not."""
    name = "/".join(topic)
    assert topic_matches(name, name)
    plus = "/".join("+" if i % 2 else level for i, level in enumerate(topic))
    assert topic_matches(plus, name)
    hashed = "/".join([*topic[: len(filter_levels) % len(topic)], "#"])
    assert topic_matches(hashed, name)
    other = "/".join(filter_levels)
    assert topic_matches(other, name) is (other == name)


def test_topic_swap_handles_both_separators_and_nul() -> None:
    from rapidmq.protocols.mqtt.topics import routing_key_to_topic, topic_to_routing_key

    cases = {"a/b.c": "a.b/c", "a/b/c": "a.b.c", "a.b": "a/b", "": "", "x\x00/.": "x\x00./"}
    for topic, key in cases.items():
        assert topic_to_routing_key(topic) == key
        assert routing_key_to_topic(key) == topic
