from __future__ import annotations

import pytest
from core_support import Client, connect, msg

from rapidmq.core import (
    AccessRefused,
    Broker,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    PublishResult,
    ResourceLocked,
)
from rapidmq.core.errors import CoreError


def error(exc: pytest.ExceptionInfo[CoreError]) -> tuple[str, str, str]:
    return type(exc.value).__name__, exc.value.scope, exc.value.text


def queues_reached(client: Client, names: list[str]) -> dict[str, int]:
    vhost = client.connection.vhost
    return {n: vhost.queues[n].ready_count for n in names}


def test_predeclared_exchanges_exist_in_default_vhost(broker: Broker) -> None:
    vhost = broker.vhost("/")
    assert vhost is not None
    assert {name: x.type for name, x in vhost.exchanges.items()} == {
        "": "direct",
        "amq.direct": "direct",
        "amq.fanout": "fanout",
        "amq.topic": "topic",
        "amq.headers": "headers",
        "amq.match": "headers",
    }


def test_unknown_exchange_type_is_command_invalid(client: Client) -> None:
    with pytest.raises(CommandInvalid) as exc:
        client.session.declare_exchange("x", "foo")
    assert error(exc) == ("CommandInvalid", "connection", "unknown exchange type 'foo'")


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda s: s.declare_exchange("", "direct"),
            "operation not permitted on the default exchange",
        ),
        (
            lambda s: s.declare_exchange("", "direct", passive=True),
            "operation not permitted on the default exchange",
        ),
        (lambda s: s.delete_exchange(""), "operation not permitted on the default exchange"),
        (lambda s: s.bind_queue("q", "", "q"), "operation not permitted on the default exchange"),
        (
            lambda s: s.bind_exchange("amq.direct", "", "k"),
            "operation not permitted on the default exchange",
        ),
        (
            lambda s: s.bind_exchange("", "amq.direct", "k"),
            "operation not permitted on the default exchange",
        ),
        (
            lambda s: s.declare_exchange("amq.x", "direct"),
            "exchange name 'amq.x' contains reserved prefix 'amq.*'",
        ),
        (
            lambda s: s.delete_exchange("amq.direct"),
            "deletion of system exchange 'amq.direct' in vhost '/' not allowed",
        ),
    ],
)
def test_reserved_exchanges_are_access_refused(client: Client, call, expected: str) -> None:  # type: ignore[no-untyped-def]
    client.session.declare_queue("q")
    with pytest.raises(AccessRefused) as exc:
        call(client.session)
    assert error(exc) == ("AccessRefused", "channel", expected)


def test_redeclare_of_predeclared_exchange_is_allowed(client: Client) -> None:
    client.session.declare_exchange("amq.direct", "direct", durable=True)


def test_passive_declare_of_missing_exchange_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as exc:
        client.session.declare_exchange("nope", "direct", passive=True)
    assert error(exc) == ("NotFound", "channel", "no exchange 'nope' in vhost '/'")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"type": "fanout"},
            "inequivalent arg 'type' for exchange 'x' in vhost '/': "
            "received 'fanout' but current is 'direct'",
        ),
        (
            {"durable": True},
            "inequivalent arg 'durable' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"auto_delete": True},
            "inequivalent arg 'auto_delete' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"internal": True},
            "inequivalent arg 'internal' for exchange 'x' in vhost '/': "
            "received 'true' but current is 'false'",
        ),
        (
            {"arguments": {"alternate-exchange": "zz"}},
            "inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': "
            "received the value 'zz' of type 'longstr' but current is none",
        ),
    ],
)
def test_mismatching_exchange_redeclare_is_precondition_failed(
    client: Client, kwargs: dict[str, object], expected: str
) -> None:
    client.session.declare_exchange("x", "direct")
    call = {"type": "direct", **kwargs}
    with pytest.raises(PreconditionFailed) as exc:
        client.session.declare_exchange("x", **call)  # type: ignore[arg-type]
    assert error(exc) == ("PreconditionFailed", "channel", expected)


def test_other_exchange_arguments_are_not_compared(client: Client) -> None:
    client.session.declare_exchange("x", "direct", arguments={"foo": 1})
    client.session.declare_exchange("x", "direct", arguments={"foo": 2})


def test_delete_exchange_if_unused_refuses_when_bound_and_ignores_unknown(client: Client) -> None:
    s = client.session
    s.declare_exchange("x", "direct")
    s.declare_queue("q")
    s.bind_queue("q", "x", "k")
    with pytest.raises(PreconditionFailed) as exc:
        s.delete_exchange("x", if_unused=True)
    assert error(exc) == ("PreconditionFailed", "channel", "exchange 'x' in vhost '/' in use")
    s.delete_exchange("x")
    s.delete_exchange("x")
    assert "x" not in client.connection.vhost.exchanges


def test_bind_errors_name_the_missing_exchange_before_the_queue(client: Client) -> None:
    with pytest.raises(NotFound) as exc:
        client.session.bind_queue("nq", "nx", "k")
    assert error(exc) == ("NotFound", "channel", "no exchange 'nx' in vhost '/'")
    with pytest.raises(NotFound) as exc:
        client.session.bind_queue("nq", "amq.direct", "k")
    assert error(exc) == ("NotFound", "channel", "no queue 'nq' in vhost '/'")


def test_unbind_of_missing_binding_is_ok(client: Client) -> None:
    client.session.declare_queue("q")
    client.session.unbind_queue("q", "amq.direct", "nokey")


def test_unbind_with_missing_source_or_destination_is_ok_as_in_rabbitmq_3(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.declare_exchange("x", "direct")
    s.unbind_queue("q", "no-such-x", "k")
    s.unbind_queue("no-such-q", "x", "k")
    s.unbind_exchange("x", "no-such-x", "k")
    s.unbind_exchange("no-such-x", "x", "k")
    s.declare_exchange("auto", "fanout", auto_delete=True)
    s.bind_queue("q", "auto", "")
    s.unbind_queue("q", "auto", "")  # the exchange goes with its last binding
    assert "auto" not in client.connection.vhost.exchanges
    s.unbind_queue("q", "auto", "")


def test_unbind_still_refuses_the_default_exchange_at_either_end(client: Client) -> None:
    for call in (
        lambda: client.session.unbind_queue("no-such-q", "", "k"),
        lambda: client.session.unbind_exchange("", "amq.direct", "k"),
        lambda: client.session.unbind_exchange("amq.direct", "", "k"),
    ):
        with pytest.raises(AccessRefused) as exc:
            call()
        assert error(exc) == (
            "AccessRefused",
            "channel",
            "operation not permitted on the default exchange",
        )


def test_unbind_of_an_existing_binding_to_anothers_exclusive_queue_is_locked(
    broker: Broker,
) -> None:
    owner, other = connect(broker), connect(broker)
    owner.session.declare_queue("mine", exclusive=True)
    owner.session.bind_queue("mine", "amq.direct", "k")
    other.session.unbind_queue("mine", "amq.direct", "absent")  # no binding: ok
    with pytest.raises(ResourceLocked):
        other.session.unbind_queue("mine", "amq.direct", "k")
    assert len(broker.vhost("/").queues["mine"].bindings_in) == 1  # type: ignore[union-attr]


def test_direct_fanout_topic_routing(client: Client) -> None:
    s = client.session
    for name in ["d", "f", "t1", "t2"]:
        s.declare_queue(name)
    s.bind_queue("d", "amq.direct", "k")
    s.bind_queue("f", "amq.fanout", "ignored")
    s.bind_queue("t1", "amq.topic", "a.*")
    s.bind_queue("t2", "amq.topic", "a.#")
    results = [
        s.publish(msg("1", "k", "amq.direct")),
        s.publish(msg("2", "other", "amq.direct")),
        s.publish(msg("3", "anything", "amq.fanout")),
        s.publish(msg("4", "a.b", "amq.topic")),
        s.publish(msg("5", "a.b.c", "amq.topic")),
        s.publish(msg("6", "q-none", "")),
    ]
    assert results == [
        PublishResult(True),
        PublishResult(False),
        PublishResult(True),
        PublishResult(True),
        PublishResult(True),
        PublishResult(False),
    ]
    assert queues_reached(client, ["d", "f", "t1", "t2"]) == {"d": 1, "f": 1, "t1": 1, "t2": 2}


def test_same_queue_bound_twice_receives_one_copy(client: Client) -> None:
    s = client.session
    s.declare_queue("q")
    s.bind_queue("q", "amq.topic", "a.*")
    s.bind_queue("q", "amq.topic", "#")
    s.bind_queue("q", "amq.topic", "#")
    s.publish(msg("m", "a.b", "amq.topic"))
    assert queues_reached(client, ["q"]) == {"q": 1}


@pytest.mark.parametrize(
    ("binding", "headers", "routed"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 2}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"a": 1}, {"a": 1}, True),
        ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
        ({"x-match": "any", "a": 1}, {"a": 2}, False),
        ({"x-match": "all"}, None, True),
        ({"x-match": "any"}, {"a": 1}, False),
        ({"x-match": "all", "a": None}, {"a": "whatever"}, True),
        ({"x-match": "all", "a": None}, {"b": 1}, False),
        ({"x-match": "any", "x-tag": "t"}, {"x-tag": "t"}, False),
        ({"x-match": "any-with-x", "x-tag": "t"}, {"x-tag": "t"}, True),
        ({"x-match": "all", "x-tag": "t", "a": 1}, {"a": 1}, True),
        ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"a": 1}, False),
        ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"a": 1, "x-tag": "t"}, True),
        ({"x-match": "all", "a": 1}, {"a": True}, False),
        ({"x-match": "all", "a": "v"}, {"a": b"v"}, True),
    ],
)
def test_headers_exchange_matches_as_rabbitmq(
    client: Client, binding: dict[str, object], headers: dict[str, object] | None, routed: bool
) -> None:
    s = client.session
    s.declare_queue("q")
    s.bind_queue("q", "amq.headers", "", binding)
    assert s.publish(msg("m", "", "amq.headers", headers=headers)) == PublishResult(routed)


@pytest.mark.parametrize(
    ("x_match", "expected"),
    [
        (
            "foo",
            'Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x',
        ),
        (1, "Invalid x-match field type signedint (value 1); expected longstr"),
    ],
)
def test_headers_binding_with_bad_x_match_is_refused(
    client: Client, x_match: object, expected: str
) -> None:
    client.session.declare_queue("q")
    with pytest.raises(PreconditionFailed) as exc:
        client.session.bind_queue("q", "amq.headers", "", {"x-match": x_match})
    assert error(exc) == ("PreconditionFailed", "channel", expected)


def test_exchange_to_exchange_bindings_route_each_queue_once_through_cycles(
    client: Client,
) -> None:
    s = client.session
    s.declare_exchange("a", "fanout")
    s.declare_exchange("b", "topic")
    s.declare_exchange("c", "direct")
    s.declare_queue("qa")
    s.declare_queue("qb")
    s.bind_exchange("b", "a", "")
    s.bind_exchange("c", "b", "#")
    s.bind_exchange("a", "c", "k")  # cycle a -> b -> c -> a
    s.bind_queue("qa", "a", "")
    s.bind_queue("qb", "b", "k")
    s.bind_queue("qb", "c", "k")
    assert s.publish(msg("m", "k", "c")) == PublishResult(True)
    assert queues_reached(client, ["qa", "qb"]) == {"qa": 1, "qb": 1}
    s.unbind_exchange("b", "a", "")
    assert s.publish(msg("m", "k", "a")) == PublishResult(True)
    assert queues_reached(client, ["qa", "qb"]) == {"qa": 2, "qb": 1}


def test_alternate_exchange_receives_unroutable_messages_only(client: Client) -> None:
    s = client.session
    s.declare_exchange("ae", "fanout")
    s.declare_exchange("x", "direct", arguments={"alternate-exchange": "ae"})
    s.declare_queue("unrouted")
    s.declare_queue("routed")
    s.bind_queue("unrouted", "ae", "")
    s.bind_queue("routed", "x", "k")
    assert [s.publish(msg("1", "k", "x")), s.publish(msg("2", "other", "x"))] == [
        PublishResult(True),
        PublishResult(True),
    ]
    assert queues_reached(client, ["routed", "unrouted"]) == {"routed": 1, "unrouted": 1}


def test_missing_alternate_exchange_leaves_message_unroutable(client: Client) -> None:
    s = client.session
    s.declare_exchange("x", "direct", arguments={"alternate-exchange": "missing"})
    assert s.publish(msg("1", "k", "x")) == PublishResult(False)


def test_bad_alternate_exchange_type_is_refused(client: Client) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        client.session.declare_exchange("x", "direct", arguments={"alternate-exchange": 5})
    assert error(exc) == (
        "PreconditionFailed",
        "channel",
        "invalid type 'signedint' for arg 'alternate-exchange' in exchange 'x' in vhost '/'",
    )


def test_publish_to_internal_exchange_is_refused_but_it_routes_from_bindings(
    client: Client,
) -> None:
    s = client.session
    s.declare_exchange("inner", "fanout", internal=True)
    s.declare_queue("q")
    s.bind_queue("q", "inner", "")
    s.bind_exchange("inner", "amq.direct", "k")
    with pytest.raises(AccessRefused) as exc:
        s.publish(msg("m", "k", "inner"))
    assert error(exc) == (
        "AccessRefused",
        "channel",
        "cannot publish to internal exchange 'inner' in vhost '/'",
    )
    assert s.publish(msg("m", "k", "amq.direct")) == PublishResult(True)
    assert queues_reached(client, ["q"]) == {"q": 1}


def test_auto_delete_exchange_goes_with_its_last_source_binding(client: Client) -> None:
    s = client.session
    s.declare_exchange("x", "direct", auto_delete=True)
    s.declare_queue("q1")
    s.declare_queue("q2")
    s.bind_queue("q1", "x", "a")
    s.bind_queue("q2", "x", "b")
    s.unbind_queue("q1", "x", "a")
    assert "x" in client.connection.vhost.exchanges
    s.delete_queue("q2")
    assert "x" not in client.connection.vhost.exchanges


def test_auto_delete_exchange_without_bindings_stays(client: Client) -> None:
    client.session.declare_exchange("x", "direct", auto_delete=True)
    assert "x" in client.connection.vhost.exchanges


def test_publish_to_missing_exchange_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as exc:
        client.session.publish(msg("m", "k", "nope"))
    assert error(exc) == ("NotFound", "channel", "no exchange 'nope' in vhost '/'")


def test_user_id_must_match_authenticated_user(client: Client) -> None:
    client.session.declare_queue("q")
    assert client.session.publish(msg("m", user_id="guest")) == PublishResult(True)
    with pytest.raises(PreconditionFailed) as exc:
        client.session.publish(msg("m", user_id="bob"))
    assert error(exc) == (
        "PreconditionFailed",
        "channel",
        "user_id property set to 'bob' but authenticated user was 'guest'",
    )


def test_cc_and_bcc_route_to_extra_keys_and_bcc_is_stripped(client: Client) -> None:
    s = client.session
    for name in ["main", "cc", "bcc"]:
        s.declare_queue(name)
    s.consume("main", "t-main", no_ack=True)
    s.consume("bcc", "t-bcc", no_ack=True)
    s.consume("cc", "t-cc", no_ack=True)
    headers = {"CC": ["cc"], "BCC": ["bcc"], "h": 1}
    assert s.publish(msg("m", "main", headers=headers)) == PublishResult(True)
    assert [(m.routing_key, m.properties.headers) for m in client.sink.messages] == [
        ("main", {"CC": ["cc"], "h": 1}),
        ("main", {"CC": ["cc"], "h": 1}),
        ("main", {"CC": ["cc"], "h": 1}),
    ]
    assert sorted(e[1] for e in client.sink.events) == ["t-bcc", "t-cc", "t-main"]


def test_cc_header_that_is_not_an_array_is_refused(client: Client) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        client.session.publish(msg("m", "k", "amq.direct", headers={"CC": "a"}))
    assert error(exc) == (
        "PreconditionFailed",
        "channel",
        'invalid message: {unacceptable_type_in_header,"CC",longstr}',
    )


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [
        ("abc", "invalid expiration 'abc': no_integer"),
        ("-1", "invalid expiration '-1': {value_negative,-1}"),
        ("10x", "invalid expiration '10x': {leftover_string,\"x\"}"),
    ],
)
def test_invalid_expiration_is_refused(client: Client, expiration: str, expected: str) -> None:
    with pytest.raises(PreconditionFailed) as exc:
        client.session.publish(msg("m", "k", "amq.direct", expiration=expiration))
    assert error(exc) == ("PreconditionFailed", "channel", expected)


def test_exchange_statistics(client: Client) -> None:
    s = client.session
    s.declare_exchange("x", "topic", durable=True)
    s.declare_queue("q")
    s.bind_queue("q", "x", "a.#")
    s.declare_queue("q2")
    s.bind_queue("q2", "x", "a.*")
    s.publish(msg("both", "a.b", "x"))
    s.publish(msg("one", "a.b.c", "x"))
    s.publish(msg("none", "b", "x"))
    assert client.connection.vhost.exchanges["x"].statistics() == {
        "name": "x",
        "vhost": "/",
        "type": "topic",
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
        "bindings_as_source": 2,
        "bindings_as_destination": 0,
        "published_in": 3,
        "published_out": 3,
    }
