"""Parsing of ``rapidmq users``, ``vhosts`` and ``permissions``, without a broker."""

from __future__ import annotations

import io

import pytest

from rapidmq.admin_cli.access_commands import _new_password, parse_tags
from rapidmq.admin_cli.client import AdminError
from rapidmq.admin_cli.common import Context
from rapidmq.cli import build_parser, main


def parse(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(list(argv)))


def test_users_add_takes_the_new_password_not_the_login() -> None:
    args = parse("--password", "adminpw", "users", "add", "alice", "--password", "s3cret")
    assert args["name"] == "alice"
    assert args["new_password"] == "s3cret"
    assert args["password"] == "adminpw"
    assert args["tags"] is None


def test_users_add_with_tags_and_global_options_after_the_command() -> None:
    args = parse(
        "users", "add", "bob", "--password", "pw", "--tags", "a,b",
        "--url", "http://h:1", "--user", "root", "--format", "json",
    )  # fmt: skip
    assert (args["url"], args["user"], args["format"]) == ("http://h:1", "root", "json")
    assert args["tags"] == "a,b"


def test_change_password_needs_a_password() -> None:
    assert main(["users", "change-password", "alice"]) == 2
    args = parse("users", "change-password", "alice", "--password", "-")
    assert args["new_password"] == "-"


def test_set_tags_takes_several_forms() -> None:
    assert parse("users", "set-tags", "a")["tags"] == []
    args = parse("users", "set-tags", "a", "administrator,monitoring", "management")
    assert parse_tags(args["tags"]) == ["administrator", "monitoring", "management"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "tags"),
    [
        (None, []),
        ("", []),
        ("a,b", ["a", "b"]),
        (" a , b ,a", ["a", "b"]),
        (["a b", "c,"], ["a", "b", "c"]),
    ],
)
def test_parse_tags(given: list[str] | str | None, tags: list[str]) -> None:
    assert parse_tags(given) == tags


def test_vhosts_commands() -> None:
    args = parse("vhosts", "add", "staging", "--description", "d", "--tags", "qa")
    assert (args["name"], args["description"], args["tags"]) == ("staging", "d", "qa")
    assert parse("vhosts", "delete", "x")["name"] == "x"
    assert parse("vhosts", "list")["vhosts_action"] == "list"


def test_permissions_set_keeps_the_user_apart_from_the_login() -> None:
    args = parse(
        "--user", "admin", "permissions", "set", "alice", "--vhost", "v",
        "--configure", "^a", "--write", "w", "--read", "r",
    )  # fmt: skip
    assert (args["username"], args["user"]) == ("alice", "admin")
    assert (args["configure"], args["write"], args["read"]) == ("^a", "w", "r")
    ctx = Context.resolve(build_parser().parse_args(["permissions", "list", "--vhost", "v"]), {})
    assert (ctx.vhost, ctx.vhost_given) == ("v", True)


def test_permissions_set_needs_all_three_patterns() -> None:
    assert main(["permissions", "set", "alice", "--configure", ".*", "--write", ".*"]) == 2


@pytest.mark.parametrize("group", ["users", "vhosts", "permissions"])
def test_a_group_without_an_action_is_a_usage_error(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_password_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("line one\r\nline two\n"))
    assert _new_password("-") == "line one"
    assert _new_password("given") == "given"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(AdminError) as info:
        _new_password("-")
    assert info.value.exit_code == 2
