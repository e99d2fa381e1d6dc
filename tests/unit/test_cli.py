from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rapidmq.cli import build_parser, main, settings_from_args
from rapidmq.config import SETTINGS, Settings
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
        f"{info.flag} {info.metavar} {info.help} (default: {info.show_default()}; env {info.env})"
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
