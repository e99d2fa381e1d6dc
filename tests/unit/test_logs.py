"""The log formatters, categories, set-up and the once-only connection events."""

from __future__ import annotations

import gc
import io
import json
import logging
import re
import sys
import warnings
import weakref
from collections.abc import Iterator

import pytest
from pamqp import commands, frame

from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.logs import (
    JSONFormatter,
    TextFormatter,
    category_of,
    client_product,
    configure_logging,
    connection_closed,
    connection_opened,
)
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ([\w.]+): (.*)$")
ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(
    name: str,
    level: int,
    msg: str,
    /,
    *args: object,
    exc_info: logging._SysExcInfoType | None = None,
    **extra: object,
) -> logging.LogRecord:
    """A record made the way Logger.makeRecord makes it, extra fields included."""
    rec = logging.getLogger(name).makeRecord(
        name, level, __file__, 1, msg, args, exc_info, extra=extra or None
    )
    return rec


@pytest.fixture
def logging_state() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    names = ["rapidmq", "hypercorn", "hypercorn.error", "hypercorn.access", "asyncio", "trio"]
    saved_levels = {name: logging.getLogger(name).level for name in names}
    saved_root = root.level
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_root)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


# -- categories --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logger", "category"),
    [
        ("rapidmq", "broker"),
        ("rapidmq.core", "broker"),
        ("rapidmq.connection", "connection"),
        ("rapidmq.amqp", "connection"),
        ("rapidmq.mqtt", "connection"),
        ("rapidmq.transport", "connection"),
        ("rapidmq.transport.websocket", "connection"),
        ("rapidmq.channel", "channel"),
        ("rapidmq.auth", "auth"),
        ("rapidmq.storage", "storage"),
        ("rapidmq.admin", "admin"),
        ("rapidmq.admin.http", "admin"),
        ("rapidmq.something.new", "broker"),
        ("hypercorn.error", "hypercorn"),
    ],
)
def test_a_logger_name_maps_to_its_nearest_listed_category(logger: str, category: str) -> None:
    assert category_of(logger) == category


# -- text --------------------------------------------------------------------------------


def test_text_line_is_time_level_category_and_message() -> None:
    line = TextFormatter().format(
        record("rapidmq.connection", logging.INFO, "accepted %s connection", "AMQP")
    )
    match = TEXT_LINE.match(line)
    assert match is not None, line
    assert match.groups() == ("INFO", "connection", "accepted AMQP connection")


def test_text_line_leaves_structured_fields_out() -> None:
    rec = record("rapidmq.auth", logging.WARNING, "login refused", user="bob", event="x.y")
    line = TextFormatter().format(rec)
    assert line.endswith(" WARNING auth: login refused")
    assert "bob" not in line and "x.y" not in line


def test_text_escapes_line_breaks_that_a_client_smuggles_into_a_message() -> None:
    rec = record("rapidmq.connection", logging.INFO, "client '%s'", "evil\n2026 INFO fake\r")
    line = TextFormatter().format(rec)
    assert "\n" not in line and "\r" not in line
    assert line.endswith("client 'evil\\n2026 INFO fake\\r'")


def test_text_keeps_a_traceback_on_the_lines_after_the_message() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("rapidmq.transport", logging.ERROR, "internal error", exc_info=sys.exc_info())
    lines = TextFormatter().format(rec).splitlines()
    assert TEXT_LINE.match(lines[0]) is not None
    assert lines[0].endswith(" ERROR connection: internal error")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom"


# -- JSON --------------------------------------------------------------------------------


def test_json_line_has_the_fixed_keys_and_the_event_fields() -> None:
    rec = record(
        "rapidmq.connection",
        logging.INFO,
        "accepted %s",
        "AMQP connection",
        event="connection.open",
        protocol="amqp",
        user="guest",
        duration_ms=12,
    )
    line = JSONFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert ISO_UTC_MS.match(entry["time"]), entry["time"]
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "info",
        "category": "connection",
        "logger": "rapidmq.connection",
        "message": "accepted AMQP connection",
        "event": "connection.open",
        "protocol": "amqp",
        "user": "guest",
        "duration_ms": 12,
    }


def test_json_time_is_utc_with_milliseconds() -> None:
    rec = record("rapidmq", logging.INFO, "x")
    rec.created = 1_795_942_800.123456  # 2026-11-29 09:00:00.123456 UTC
    assert json.loads(JSONFormatter().format(rec))["time"] == "2026-11-29T09:00:00.123Z"


def test_json_levels_are_lower_case() -> None:
    levels = [
        json.loads(JSONFormatter().format(record("rapidmq", level, "x")))["level"]
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
    ]
    assert levels == ["debug", "info", "warning", "error"]


def test_json_puts_a_traceback_in_one_exception_string_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        rec = record("rapidmq.storage", logging.ERROR, "write failed", exc_info=sys.exc_info())
    line = JSONFormatter().format(rec)
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["category"] == "storage"
    assert entry["exception"].startswith("Traceback (most recent call last):\n")
    assert entry["exception"].endswith("ValueError: bad\nvalue")


def test_json_is_safe_for_non_ascii_and_line_separators() -> None:
    name = "j\u00fcrgen \u65e5\u672c \u2028 \U0001f600 \x00"
    rec = record("rapidmq.auth", logging.WARNING, "user '%s'", name, user=name)
    line = JSONFormatter().format(rec)
    assert line.isascii()
    assert len(line.splitlines()) == 1  # U+2028 would split it if it were written raw
    entry = json.loads(line)
    assert entry["message"] == f"user '{name}'"
    assert entry["user"] == name


def test_json_extra_fields_cannot_replace_the_fixed_keys() -> None:
    rec = record("rapidmq.admin", logging.INFO, "x", level="fake", category="fake", time="t")
    entry = json.loads(JSONFormatter().format(rec))
    assert (entry["level"], entry["category"]) == ("info", "admin")
    assert ISO_UTC_MS.match(entry["time"])


def test_json_writes_values_it_cannot_encode_as_text() -> None:
    rec = record("rapidmq", logging.INFO, "x", peer=("127.0.0.1", 5672), blob=b"\xff")
    entry = json.loads(JSONFormatter().format(rec))
    assert entry["peer"] == ["127.0.0.1", 5672]
    assert entry["blob"] == "b'\\xff'"


# -- configure_logging -------------------------------------------------------------------


def rapidmq_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_rapidmq", False)]


@pytest.mark.usefixtures("logging_state")
def test_configure_logging_twice_keeps_one_handler_and_the_last_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "text")
    configure_logging("info", "json")
    configure_logging("info", "json")
    assert len(rapidmq_handlers()) == 1
    logging.getLogger("rapidmq.auth").warning("refused %s", "bob", extra={"user": "bob"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["category"], entry["level"], entry["user"]) == ("auth", "warning", "bob")


@pytest.mark.usefixtures("logging_state")
def test_configure_logging_sets_rapidmq_to_the_level_and_others_to_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "text")
    logging.getLogger("rapidmq.connection").debug("hidden debug")
    logging.getLogger("rapidmq.connection").info("shown info")
    logging.getLogger("hypercorn.error").info("hidden library info")
    logging.getLogger("somelib").info("hidden other info")
    logging.getLogger("somelib").warning("shown library warning")
    err = capsys.readouterr().err
    assert "shown info" in err and "shown library warning" in err
    assert "hidden" not in err
    assert " WARNING somelib: shown library warning" in err


@pytest.mark.usefixtures("logging_state")
def test_debug_level_lets_third_party_info_through(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    configure_logging("debug", "text")
    logging.getLogger("hypercorn.error").info("library info")
    logging.getLogger("rapidmq.channel").debug("broker debug")
    err = capsys.readouterr().err
    assert " INFO hypercorn: library info" in err
    assert " DEBUG channel: broker debug" in err


@pytest.mark.usefixtures("logging_state")
def test_python_warnings_become_json_lines_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old thing\nis deprecated", DeprecationWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "warning" and "old thing" in entry["message"]


def test_configure_logging_refuses_an_unknown_format_or_level() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "text")


# -- connection events -------------------------------------------------------------------


class FakeHandler:
    """Stands for a protocol connection: only its identity matters to the event table."""


def test_client_product_joins_product_and_version() -> None:
    assert client_product({"product": "pika", "version": "1.3.2"}) == "pika 1.3.2"
    assert client_product({"product": b"Bunny", "version": b"2.0"}) == "Bunny 2.0"
    assert client_product({"product": "only"}) == "only"
    assert client_product({}) == ""


def test_a_connection_logs_one_open_and_exactly_one_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = FakeHandler()
    with caplog.at_level(logging.INFO, logger="rapidmq.connection"):
        assert not connection_closed(conn, "never opened")
        connection_opened(
            conn,
            protocol="AMQP",
            client_address="127.0.0.1:5555",
            user="guest",
            vhost="/",
            product="pika 1.3.2",
            connection_name="orders",
        )
        assert connection_closed(conn, "closed by client")
        assert not connection_closed(conn, "peer gone", level=logging.WARNING)
    records = [r for r in caplog.records if r.name == "rapidmq.connection"]
    assert records[0].getMessage() == (
        "accepted AMQP connection 127.0.0.1:5555 (user 'guest', vhost '/', client 'pika 1.3.2')"
    )
    assert [getattr(r, "event", None) for r in records] == ["connection.open", "connection.close"]
    close = records[1]
    assert close.levelno == logging.INFO
    assert close.getMessage().startswith("closed AMQP connection 127.0.0.1:5555 (user 'guest'")
    assert close.getMessage().endswith(": closed by client")
    fields = {k: getattr(close, k) for k in ("protocol", "user", "vhost", "connection_name")}
    assert fields == {
        "protocol": "amqp",
        "user": "guest",
        "vhost": "/",
        "connection_name": "orders",
    }
    assert getattr(close, "reason") == "closed by client"  # noqa: B009
    assert isinstance(getattr(close, "duration_ms"), int)  # noqa: B009


def test_the_event_table_does_not_keep_connections_alive() -> None:
    from rapidmq import logs

    conn = FakeHandler()
    connection_opened(conn, protocol="MQTT", client_address="x", user="u", vhost="/", product="c")
    assert conn in logs._open_connections
    gone = weakref.ref(conn)
    before = len(logs._open_connections)
    del conn
    gc.collect()
    assert gone() is None
    assert len(logs._open_connections) == before - 1


def test_stream_follows_sys_stderr_when_it_is_swapped(logging_state: None) -> None:
    configure_logging("info", "text")
    swapped = io.StringIO()
    saved, sys.stderr = sys.stderr, swapped
    try:
        logging.getLogger("rapidmq").info("to the new stream")
    finally:
        sys.stderr = saved
    assert swapped.getvalue().endswith(" INFO broker: to the new stream\n")


# -- a real AMQP connection, driven with bytes -------------------------------------------


def amqp_connection(clock: list[float]) -> AMQPConnection:
    users = UserStore()
    users.add_user("guest", "guest", tags=("administrator",))
    return AMQPConnection(
        Broker(), users, AMQPSettings(), ("127.0.0.1", 40000), lambda: None, clock=lambda: clock[0]
    )


def amqp_open(conn: AMQPConnection, password: str, heartbeat: int = 0) -> None:
    conn.data_received(b"AMQP\x00\x00\x09\x01")
    start_ok = commands.Connection.StartOk(
        client_properties={"product": "tester", "version": "9.9"},
        mechanism="PLAIN",
        response=f"\0guest\0{password}",
    )
    conn.data_received(frame.marshal(start_ok, 0))
    if conn.closed:
        return
    tune_ok = commands.Connection.TuneOk(channel_max=0, frame_max=131072, heartbeat=heartbeat)
    conn.data_received(frame.marshal(tune_ok, 0))
    conn.data_received(frame.marshal(commands.Connection.Open(virtual_host="/"), 0))
    conn.data_to_send()


def events_of(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int]]:
    return [
        (getattr(r, "event", ""), r.name, r.levelno)
        for r in caplog.records
        if r.name.startswith("rapidmq.")
    ]


def test_an_amqp_heartbeat_timeout_logs_one_warning_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    conn = amqp_connection(clock)
    with caplog.at_level(logging.INFO, logger="rapidmq"):
        amqp_open(conn, "guest", heartbeat=5)
        clock[0] = 111.0
        conn.handle_timer(clock[0])
        conn.connection_lost()
    assert conn.closed
    assert events_of(caplog) == [
        ("connection.open", "rapidmq.connection", logging.INFO),
        ("connection.close", "rapidmq.connection", logging.WARNING),
    ]
    close = caplog.records[-1]
    assert getattr(close, "reason") == "missed heartbeats from client, timeout: 5s"  # noqa: B009
    assert getattr(close, "client_product") == "tester 9.9"  # noqa: B009
    assert isinstance(getattr(close, "duration_ms"), int)  # noqa: B009


def test_an_amqp_login_refusal_is_one_auth_warning_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = amqp_connection([0.0])
    with caplog.at_level(logging.DEBUG, logger="rapidmq"):
        amqp_open(conn, "Very-Secret-1")
    assert conn.closed
    assert events_of(caplog) == [("auth.refused", "rapidmq.auth", logging.WARNING)]
    line = JSONFormatter().format(caplog.records[0])
    assert "Very-Secret-1" not in line
    entry = json.loads(line)
    assert entry["message"] == (
        "AMQP login refused from 127.0.0.1:40000: user 'guest' failed to log in using PLAIN"
    )
    assert (entry["category"], entry["client_address"]) == ("auth", "127.0.0.1:40000")
