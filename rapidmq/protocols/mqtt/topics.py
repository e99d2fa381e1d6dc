"""MQTT topic names and filters: validation, shared subscriptions, AMQP mapping, matching.

RapidMQ maps MQTT onto each vhost's ``amq.topic`` exchange as RabbitMQ's MQTT
plugin does: the topic ``a/b/c`` is the routing key ``a.b.c`` (``/`` and ``.``
swap both ways, so ``a.b/c`` becomes ``a/b.c``), and the filter wildcards
``+`` and ``#`` become ``*`` and ``#``.
"""

from __future__ import annotations

from rapidmq.protocols.mqtt.errors import InvalidTopic, InvalidTopicFilter

__all__ = [
    "SHARE_PREFIX",
    "filter_to_binding_key",
    "parse_shared",
    "routing_key_to_topic",
    "topic_matches",
    "topic_to_routing_key",
    "validate_topic_filter",
    "validate_topic_name",
]

SHARE_PREFIX = "$share/"
_MAX_LENGTH = 65535
_SWAP = str.maketrans({"/": ".", ".": "/"})
_TO_BINDING = str.maketrans({"/": ".", ".": "/", "+": "*"})


def _too_long(text: str) -> bool:
    # A str of n characters is at most 4n and at least n octets of UTF-8.
    return len(text) > _MAX_LENGTH // 4 and len(text.encode()) > _MAX_LENGTH


def validate_topic_name(topic: str, *, allow_empty: bool = False) -> None:
    """Check a PUBLISH topic name (or a will topic).

    Args:
        topic: the topic name.
        allow_empty: accept ``""`` (an MQTT 5 PUBLISH that carries a topic alias).

    Raises:
        InvalidTopic: empty, a wildcard, U+0000, or over 65,535 octets.
    """
    if not topic and not allow_empty:
        raise InvalidTopic("topic name is empty")
    if "+" in topic or "#" in topic:
        raise InvalidTopic(f"topic name {topic!r} contains a wildcard")
    if "\x00" in topic:
        raise InvalidTopic("topic name contains U+0000")
    if _too_long(topic):
        raise InvalidTopic("topic name is longer than 65,535 octets")


def _check_filter_levels(topic_filter: str) -> None:
    if not topic_filter:
        raise InvalidTopicFilter("topic filter is empty")
    if "\x00" in topic_filter:
        raise InvalidTopicFilter("topic filter contains U+0000")
    if "+" not in topic_filter and "#" not in topic_filter:
        return
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and index != last:
                raise InvalidTopicFilter(f"'#' is not the last level of {topic_filter!r}")
        elif "+" in level or "#" in level:
            raise InvalidTopicFilter(f"wildcard inside a level of {topic_filter!r}")


def validate_topic_filter(topic_filter: str) -> None:
    """Check a SUBSCRIBE or UNSUBSCRIBE topic filter, shared ones included.

    Raises:
        InvalidTopicFilter: empty, a wildcard that is not a whole level, ``#`` not
            last, U+0000, over 65,535 octets, or a malformed ``$share/`` filter.
    """
    if _too_long(topic_filter):
        raise InvalidTopicFilter("topic filter is longer than 65,535 octets")
    shared = parse_shared(topic_filter)
    _check_filter_levels(shared[1] if shared is not None else topic_filter)


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """Split ``$share/group/filter`` into ``(group, filter)``; ``None`` if not shared.

    Raises:
        InvalidTopicFilter: the share name is empty or has ``+`` or ``#``, or no
            filter follows it.  The filter part itself is not checked here.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, slash, rest = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group or "+" in group or "#" in group:
        raise InvalidTopicFilter(f"invalid share name in {topic_filter!r}")
    if not slash or not rest:
        raise InvalidTopicFilter(f"no topic filter after the share name in {topic_filter!r}")
    return group, rest


def _swap(text: str) -> str:
    # Runs twice per message: str.replace passes are several times faster than
    # str.translate, whose table is a dict looked up per character.
    if "/" not in text:
        return text.replace(".", "/")
    if "." not in text:
        return text.replace("/", ".")
    if "\x00" in text:
        return text.translate(_SWAP)
    return text.replace(".", "\x00").replace("/", ".").replace("\x00", "/")


def topic_to_routing_key(topic: str) -> str:
    """``a/b.c`` -> ``a.b/c``: the AMQP routing key of an MQTT topic."""
    return _swap(topic)


def routing_key_to_topic(key: str) -> str:
    """``a.b/c`` -> ``a/b.c``: the MQTT topic of an AMQP routing key."""
    return _swap(key)


def filter_to_binding_key(topic_filter: str) -> str:
    """``a/+/#`` -> ``a.*.#``: the amq.topic binding key of an MQTT topic filter."""
    return topic_filter.translate(_TO_BINDING)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` by the MQTT rules.

    ``+`` matches exactly one level (an empty one too), ``#`` the parent level and
    any number below it.  A topic starting with ``$`` is not matched by a filter
    whose first level is a wildcard.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    levels = topic.split("/")
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels):
            return False
        if part != "+" and part != levels[index]:
            return False
    return len(parts) == len(levels)
