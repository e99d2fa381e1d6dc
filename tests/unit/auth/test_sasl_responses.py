from __future__ import annotations

import amqp.sasl
import pika.credentials
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import encode

from rapidmq.auth.sasl import (
    MECHANISMS,
    SaslError,
    is_loopback,
    parse_amqplain,
    parse_plain,
    parse_response,
)

no_nul_text = st.text().filter(lambda text: "\0" not in text)


def amqplain_body(table: dict[str, object]) -> bytes:
    """A field table without its 4-byte length, as RabbitMQ's clients send AMQPLAIN."""
    return bytes(encode.field_table(table))[4:]


class _Start:
    mechanisms = b"PLAIN AMQPLAIN"


def test_plain_from_pika() -> None:
    mechanism, response = pika.credentials.PlainCredentials("üser", "pass word").response_for(
        _Start()
    )
    assert (mechanism, parse_response(mechanism, response)) == ("PLAIN", ("üser", "pass word"))


def test_plain_and_amqplain_from_py_amqp() -> None:
    plain = amqp.sasl.PLAIN("guest", "guest")
    amqplain = amqp.sasl.AMQPLAIN("guest", "sécret")
    assert parse_response(plain.mechanism.decode(), plain.start(None)) == ("guest", "guest")
    assert parse_response(amqplain.mechanism.decode(), amqplain.start(None)) == (
        "guest",
        "sécret",
    )


def test_plain_with_an_authzid_ignores_it() -> None:
    assert parse_plain(b"admin\0alice\0pw") == ("alice", "pw")


@given(no_nul_text.filter(bool), no_nul_text, no_nul_text)
def test_plain_reads_back_any_user_and_password(user: str, password: str, authzid: str) -> None:
    response = b"\0".join(part.encode() for part in (authzid, user, password))
    assert parse_plain(response) == (user, password)


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (b"alice", "PLAIN response must be 'authzid NUL user NUL password', got 1 part(s)"),
        (b"alice\0pw", "PLAIN response must be 'authzid NUL user NUL password', got 2 part(s)"),
        (b"\0a\0b\0c", "PLAIN response must be 'authzid NUL user NUL password', got 4 part(s)"),
        (b"\0\0pw", "PLAIN response has an empty user name"),
        (b"\0\xff\0pw", "the user name is not valid UTF-8"),
        (b"\0alice\0\xc3", "the password is not valid UTF-8"),
    ],
)
def test_bad_plain_response_says_why(response: bytes, text: str) -> None:
    with pytest.raises(SaslError) as caught:
        parse_plain(response)
    assert str(caught.value) == text


@given(st.text(), st.text())
def test_amqplain_reads_back_any_login_and_password(login: str, password: str) -> None:
    body = amqplain_body({"LOGIN": login, "PASSWORD": password, "LOCALE": "en_US"})
    assert parse_amqplain(body) == (login, password)


def test_amqplain_cut_anywhere_is_refused() -> None:
    body = amqplain_body({"LOGIN": "guest", "PASSWORD": "guest"})
    outcomes = set()
    for end in range(1, len(body)):
        with pytest.raises(SaslError) as caught:
            parse_amqplain(body[:end])
        outcomes.add(str(caught.value).split(" (")[0])
    assert outcomes == {
        "AMQPLAIN response is cut short inside a field",
        "AMQPLAIN field 'LOGIN' cannot be read",
        "AMQPLAIN field 'LOGIN' is longer than the response",
        "AMQPLAIN response has no PASSWORD",
        "AMQPLAIN field 'PASSWORD' cannot be read",
        "AMQPLAIN field 'PASSWORD' is longer than the response",
    }


@pytest.mark.parametrize(
    ("table", "text"),
    [
        ({}, "AMQPLAIN response has no LOGIN"),
        ({"LOGIN": "guest"}, "AMQPLAIN response has no PASSWORD"),
        ({"LOGIN": 7, "PASSWORD": "x"}, "AMQPLAIN LOGIN must be a string, got int"),
    ],
)
def test_bad_amqplain_table_says_why(table: dict[str, object], text: str) -> None:
    with pytest.raises(SaslError) as caught:
        parse_amqplain(amqplain_body(table))
    assert str(caught.value) == text


def test_unknown_mechanism_names_the_offered_ones() -> None:
    with pytest.raises(SaslError) as caught:
        parse_response("EXTERNAL", b"")
    assert (str(caught.value), MECHANISMS) == (
        "unsupported mechanism 'EXTERNAL'; offered: PLAIN AMQPLAIN",
        ("PLAIN", "AMQPLAIN"),
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("::1%lo", True),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::2", False),
        ("0.0.0.0", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
