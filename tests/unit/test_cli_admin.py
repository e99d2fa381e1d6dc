"""The admin commands' argument parsing and output formatting, without a broker."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from rapidmq.admin_cli.client import AdminError, Client
from rapidmq.admin_cli.common import Context, json_object
from rapidmq.admin_cli.messages import message_property
from rapidmq.admin_cli.objects import LISTS
from rapidmq.admin_cli.output import cell, key_values, lookup, table, to_json
from rapidmq.cli import build_parser, main

ADMIN_COMMANDS = (
    "status",
    "list",
    "declare",
    "delete",
    "purge",
    "set",
    "clear",
    "publish",
    "get",
    "close",
    "definitions",
)


# --- output ------------------------------------------------------------------------------------


def test_table_aligns_columns_under_a_header_without_trailing_blanks() -> None:
    rows = [
        {"vhost": "/", "name": "orders", "messages": 12},
        {"vhost": "/prod", "name": "q", "messages": 0},
    ]
    assert table(rows, ("vhost", "name", "messages")) == (
        "vhost  name    messages\n/      orders  12\n/prod  q       0"
    )


def test_table_with_no_rows_still_has_its_header() -> None:
    assert table([], ("name", "user")) == "name  user"


def test_table_reads_dotted_columns_and_keeps_each_row_on_one_line() -> None:
    rows = [{"queue": {"name": "jobs"}, "payload": "a\nb\tc", "flag": True}, {"queue": None}]
    assert table(rows, ("queue.name", "payload", "flag")).split("\n") == [
        "queue.name  payload  flag",
        "jobs        a\\nb\\tc  true",
        "",
    ]


def test_cells_render_api_values_compactly() -> None:
    assert [cell(None), cell(False), cell(0.25), cell(3), cell(["a", "b"])] == [
        "",
        "false",
        "0.25",
        "3",
        "a,b",
    ]
    assert cell({"b": 1, "a": "x"}) == '{"a":"x","b":1}'


def test_lookup_is_none_for_anything_missing() -> None:
    item = {"channel_details": {"name": "c 1"}, "tags": []}
    assert lookup(item, "channel_details.name") == "c 1"
    assert lookup(item, "channel_details.user") is None
    assert lookup(item, "tags.x") is None
    assert lookup(item, "nope") is None


def test_key_values_align_the_values() -> None:
    assert key_values([("node", "rapidmq@a"), ("messages ready", 3), ("alarms", "")]) == (
        "node            rapidmq@a\nmessages ready  3\nalarms"
    )


def test_json_output_is_pretty_and_keeps_the_api_order() -> None:
    assert to_json({"b": 1, "a": ["é"]}) == '{\n  "b": 1,\n  "a": [\n    "é"\n  ]\n}'


def test_every_list_kind_has_default_columns() -> None:
    assert set(LISTS) == {
        "queues",
        "exchanges",
        "bindings",
        "connections",
        "channels",
        "consumers",
        "users",
        "vhosts",
        "permissions",
        "policies",
        "operator-policies",
    }
    assert LISTS["queues"].columns[:2] == ("vhost", "name")
    assert all(spec.columns for spec in LISTS.values())


# --- argument values ---------------------------------------------------------------------------


def test_arguments_must_be_a_json_object() -> None:
    assert json_object('{"x-max-length": 10}') == {"x-max-length": 10}
    with pytest.raises(argparse.ArgumentTypeError, match="not valid JSON"):
        json_object("{x")
    with pytest.raises(argparse.ArgumentTypeError, match="must be a JSON object"):
        json_object("[1]")


def test_message_properties_parse_numbers_and_headers() -> None:
    assert message_property("delivery_mode=2") == ("delivery_mode", 2)
    assert message_property("content_type=text/plain; q=1") == (
        "content_type",
        "text/plain; q=1",
    )
    assert message_property("headers.origin=web") == ("headers.origin", "web")
    for bad in ("no-equals", "priority=high", "=x", "headers.=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            message_property(bad)


# --- parsing -----------------------------------------------------------------------------------


def test_global_options_work_before_and_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--url", "http://a:1", "--vhost", "v", "list", "queues"])
    after = parser.parse_args(["list", "queues", "--url", "http://a:1", "--vhost", "v"])
    for args in (before, after):
        ctx = Context.resolve(args, {})
        assert (ctx.url, ctx.vhost, ctx.vhost_given, ctx.v) == ("http://a:1", "v", True, "v")
        assert args.kind == "queues"


def test_flags_win_over_environment_over_defaults() -> None:
    parser = build_parser()
    environ = {
        "RAPIDMQ_URL": "http://env:2",
        "RAPIDMQ_USER": "envuser",
        "RAPIDMQ_PASSWORD": "envpass",
        "RAPIDMQ_VHOST": "a/b",
    }
    args = parser.parse_args(["--user", "flaguser", "status", "--format", "json"])
    ctx = Context.resolve(args, environ)
    assert (ctx.url, ctx.user, ctx.password, ctx.format) == (
        "http://env:2",
        "flaguser",
        "envpass",
        "json",
    )
    assert (ctx.vhost, ctx.v, ctx.vhost_given) == ("a/b", "a%2Fb", True)
    defaults = Context.resolve(parser.parse_args(["status"]), {})
    assert defaults == Context(
        url="http://localhost:15672",
        user="guest",
        password="guest",
        vhost="/",
        vhost_given=False,
        format="table",
    )


def test_declare_and_binding_arguments_are_parsed() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["declare", "exchange", "ev", "--type", "topic", "--durable", "--internal"]
    )
    assert (args.name, args.type, args.durable, args.auto_delete, args.internal) == (
        "ev",
        "topic",
        True,
        False,
        True,
    )
    args = parser.parse_args(["delete", "binding", "--source", "ev", "--destination", "q"])
    assert (args.destination_type, args.routing_key, args.arguments) == ("queue", "", None)
    args = parser.parse_args(["get", "q", "--count", "3", "--requeue"])
    assert (args.queue, args.count, args.requeue) == ("q", 3, True)


def test_set_policy_takes_name_pattern_definition_priority_and_apply_to() -> None:
    parser = build_parser()
    options = ["--priority", "3", "--apply-to", "quorum_queues", "--vhost", "/prod"]
    args = parser.parse_args(["set", "policy", "limits", "^orders", '{"max-length": 5}', *options])
    assert (args.name, args.pattern, args.definition, args.priority, args.apply_to) == (
        "limits",
        "^orders",
        {"max-length": 5},
        3,
        "quorum_queues",
    )
    assert args.vhost == "/prod"
    args = parser.parse_args(["set", "operator-policy", "cap", ".*", '{"max-length": 1}'])
    assert (args.priority, args.apply_to) == (0, "all")
    assert parser.parse_args(["clear", "operator-policy", "cap"]).name == "cap"


def test_a_policy_definition_must_be_a_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["set", "policy", "p", ".*", "[1]"]) == 2
    assert main(["set", "policy", "p", ".*", '{"max-length": 1}', "--apply-to", "bad"]) == 2
    errors = capsys.readouterr().err
    assert "must be a JSON object" in errors and "invalid choice: 'bad'" in errors


def test_usage_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ["lsit"],
        ["list", "queuez"],
        ["declare", "queue", "q", "--arguments", "{x"],
        ["declare", "exchange", "x"],
        ["declare"],
        ["get", "q", "--count", "0"],
        ["publish", "--routing-key", "k", "--property", "oops", "body"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("rapidmq: error: ") and err.count("\n") == 1, err
    main(["declare", "exchange", "x"])
    assert capsys.readouterr().err == (
        "rapidmq: error: the following arguments are required: --type; "
        "see 'rapidmq declare exchange --help'\n"
    )


def test_a_url_that_is_not_http_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "localhost:15672", "status"]) == 2
    assert capsys.readouterr() == (
        "",
        "rapidmq: --url 'localhost:15672' is not an http:// or https:// URL "
        "(for example http://localhost:15672)\n",
    )
    with pytest.raises(AdminError):
        Client("ftp://host", "guest", "guest")


def test_help_lists_every_command_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    commands = text.split("commands:", 1)[1]
    for name in ("serve", *ADMIN_COMMANDS):
        line = next(line for line in commands.splitlines() if line.split()[:1] == [name])
        assert len(line.split()) > 1, line
    for option in ("--url", "--user", "--password", "--vhost", "--format"):
        assert option in text


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["list"],
        ["declare", "queue"],
        ["declare", "exchange"],
        ["declare", "binding"],
        ["delete", "queue"],
        ["delete", "exchange"],
        ["delete", "binding"],
        ["purge", "queue"],
        ["set", "policy"],
        ["set", "operator-policy"],
        ["clear", "policy"],
        ["clear", "operator-policy"],
        ["publish"],
        ["get"],
        ["close", "connection"],
        ["definitions", "export"],
        ["definitions", "import"],
    ],
)
def test_each_command_help_has_an_example(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: rapidmq {' '.join(argv)} ")
    examples = text.split("examples:\n", 1)[1]
    assert examples.lstrip().startswith(f"rapidmq {argv[0]}") or " | rapidmq " in examples


def test_help_and_parsing_do_not_import_httpx_or_the_broker() -> None:
    code = (
        "import sys, rapidmq.cli as c; c.main(['list', '--help']); c.build_parser(); "
        "print(sorted(sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    modules = result.stdout.splitlines()[-1]
    assert "'rapidmq.admin_cli.commands'" in modules
    assert "'httpx'" not in modules
    assert "'rapidmq.server'" not in modules
