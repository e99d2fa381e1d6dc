from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rapidmq.cli import build_parser, main, settings_from_args
from rapidmq.config import SETTINGS, Settings, load_settings
from rapidmq.testing import BrokerProcess

RAPIDMQ_SCRIPT = Path(sys.executable).with_name("rapidmq")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDMQ_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rapidmq", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_help_lists_the_serve_command() -> None:
    result = run_cli("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: rapidmq [-h] [--version] COMMAND ...\n")
    assert re.search(r"^    serve +start the broker$", result.stdout, re.M)


def test_help_does_not_import_the_broker() -> None:
    code = "import sys, rapidmq.cli as c; c.main(['serve', '--help']); print(sorted(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    modules = result.stdout.splitlines()[-1]
    assert "'rapidmq.server'" not in modules
    assert "'rapidmq.config'" in modules


def test_serve_help_describes_every_flag_with_its_default_and_variable() -> None:
    result = run_cli("serve", "--help")
    assert (result.returncode, result.stderr) == (0, "")
    text = " ".join(result.stdout.split())
    described = [
        f"{info.flag_forms[0]} {info.help} (default: {info.show_default()}; "
        f"env {' or '.join(info.env_names)})"
        for info in SETTINGS
    ]
    missing = [line for line in described if line not in text]
    assert missing == []
    assert "--config FILE TOML config file (env RAPIDMQ_CONFIG; default: none)" in text
    assert "rapidmq ready amqp=PORT mqtt=PORT http=PORT" in text


@pytest.mark.skipif(
    not RAPIDMQ_SCRIPT.exists(), reason="the rapidmq console script is not installed"
)
def test_console_script_is_the_same_command() -> None:
    result = subprocess.run([str(RAPIDMQ_SCRIPT), "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "rapidmq 0.1.0\n", "")


def test_bad_flag_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--amqp-port", "70000"]) == 2
    assert capsys.readouterr() == (
        "",
        "rapidmq: --amqp-port '70000': "
        'must be a port number 0..65535 (0 = any free port) or "off"\n',
    )


def test_missing_config_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.toml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert capsys.readouterr() == ("", f"rapidmq: config file {missing} not found; fix --config\n")


def test_bad_environment_in_a_real_process_gives_no_traceback() -> None:
    result = run_cli("serve", env={"RAPIDMQ_BACKEND": "gevent"})
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "rapidmq: RAPIDMQ_BACKEND='gevent': must be one of trio, asyncio\n",
    )


def test_bad_config_file_in_a_real_process_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "rapidmq.toml"
    config.write_text("[listeners]\namqp = 5673\nmqt = 1884\n", encoding="utf-8")
    result = run_cli("serve", "--config", str(config))
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"rapidmq: config file {config} line 3: "
        "unknown key 'listeners.mqt'; did you mean 'mqtt'?\n",
    )


def test_unknown_flag_and_missing_command_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert (main(["serve", "--amqp"]), main([])) == (2, 2)
    err = capsys.readouterr().err
    assert "rapidmq: error: unrecognized arguments: --amqp\n" in err
    assert err.endswith("Run 'rapidmq COMMAND --help' for the flags of a command.\n")


def test_serve_flags_become_settings_over_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "rapidmq.toml"
    config.write_text('amqp_port = 5680\nbackend = "asyncio"\nheartbeat_s = 5\n', encoding="utf-8")
    args = build_parser().parse_args(
        ["serve", "--config", str(config), "--amqp-port", "0", "--mqtt-port", "off"]
    )
    environ = {"RAPIDMQ_AMQP_PORT": "5690", "RAPIDMQ_HEARTBEAT_S": "7", "RAPIDMQ_BIND": "::1"}
    assert settings_from_args(args, environ) == Settings(
        amqp_port=0, mqtt_port=None, bind="::1", backend="asyncio", heartbeat_s=7
    )


def broker_available() -> bool:
    try:
        import rapidmq.server  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not broker_available(), reason="rapidmq.server is not importable yet")
def test_serve_prints_the_ready_line_and_stops_cleanly_on_sigterm() -> None:
    broker = BrokerProcess("--mqtt-port", "off", "--http-port", "off").start()
    try:
        assert isinstance(broker.amqp_port, int) and broker.amqp_port > 0
        assert (broker.mqtt_port, broker.http_port) == (None, None)
        assert f"rapidmq ready amqp={broker.amqp_port} mqtt=off http=off" in broker.output
    finally:
        code = broker.stop()
    assert code == 0


SWITCHES = ("tls_verify_peer", "tls_fail_if_no_peer_cert", "ldap_use_ssl", "ldap_use_starttls")


def serve_setting(argv: list[str], name: str, environ: dict[str, str] | None = None) -> object:
    args = build_parser().parse_args(["serve", *argv])
    options = {info.name: getattr(args, info.name) for info in SETTINGS}
    return getattr(load_settings(options, environ or {}, None), name)


@pytest.mark.parametrize("name", SWITCHES)
def test_every_boolean_flag_is_a_switch_with_a_no_form(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    off = "--no-" + name.replace("_", "-")
    forms = {
        "bare": [flag],
        "=true": [f"{flag}=true"],
        "true": [flag, "true"],
        "=false": [f"{flag}=false"],
        "false": [flag, "false"],
        "no": [off],
        "on then no": [flag, off],
        "no then on": [off, flag],
        "absent": [],
    }
    # tls_fail_if_no_peer_cert is refused without tls_verify_peer.
    environ = {"RAPIDMQ_TLS_VERIFY_PEER": "true"} if name == "tls_fail_if_no_peer_cert" else {}
    assert {form: serve_setting(argv, name, environ) for form, argv in forms.items()} == {
        "bare": True,
        "=true": True,
        "true": True,
        "=false": False,
        "false": False,
        "no": False,
        "on then no": False,
        "no then on": True,
        "absent": False,
    }


def test_bare_switch_before_another_flag_does_not_take_it_as_its_value() -> None:
    args = build_parser().parse_args(["serve", "--ldap-use-ssl", "--ldap-port", "636"])
    assert (args.ldap_use_ssl, args.ldap_port) == ("true", "636")


def test_no_switch_beats_the_environment_and_bare_switch_too() -> None:
    environ = {"RAPIDMQ_LDAP_USE_SSL": "true"}
    assert serve_setting(["--no-ldap-use-ssl"], "ldap_use_ssl", environ) is False
    assert serve_setting([], "ldap_use_ssl", environ) is True
    assert serve_setting(["--ldap-use-ssl"], "ldap_use_ssl", {"RAPIDMQ_LDAP_USE_SSL": "no"}) is True


def test_bad_switch_value_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--tls-verify-peer", "maybe"]) == 2
    assert capsys.readouterr().err == "rapidmq: --tls-verify-peer 'maybe': must be true or false\n"


def test_serve_help_shows_switches_and_their_no_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--tls-verify-peer [BOOL]" in out
    assert "--no-tls-verify-peer turn --tls-verify-peer off" in out
