"""The ``rapidmq`` command.

Each subcommand is one ``_add_<name>(subcommands)`` function that declares its
arguments and sets ``run`` to a ``(args) -> exit code`` function. ``serve`` is
here; the admin commands (``status``, ``list``, ``declare``, ...) talk to the
management HTTP API and live in :mod:`rapidmq.admin_cli.commands`.

Exit codes: 0 success, 1 the broker refused or could not be reached, 2 a usage
or configuration error (one line on stderr, no traceback), otherwise what the
command returns.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import NoReturn

from rapidmq.admin_cli.access_commands import add_access_commands
from rapidmq.admin_cli.commands import add_admin_commands, add_global_options
from rapidmq.config import CONFIG_ENV, SETTINGS, ConfigError, Settings, load_settings
from rapidmq.rabbitmq_conf import RABBITMQ_CONF, startup_notes

__all__ = ["build_parser", "main", "settings_from_args"]

EXIT_USAGE = 2

_Command = Callable[[argparse.Namespace], int]

_DESCRIPTION = """\
RapidMQ is a message broker that RabbitMQ (AMQP 0-9-1) and MQTT clients can
simply be pointed at."""

_SERVE_DESCRIPTION = """\
Start the broker. Once every listener is up it prints one line,
  rapidmq ready amqp=PORT mqtt=PORT http=PORT
with the real ports ("off" for a listener that is off). SIGTERM or Ctrl-C stops
it gracefully.

Every flag has a RAPIDMQ_* environment variable and a key of the same name in
the TOML config file (amqp_port = 5673). Flags win over the environment, the
environment over the file, and the file over the defaults."""


def _version() -> str:
    try:
        return metadata.version("rapidmq")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``rapidmq`` and all its subcommands."""
    parser = _Parser(
        prog="rapidmq",
        allow_abbrev=False,
        description=_DESCRIPTION,
        epilog="Run 'rapidmq COMMAND --help' for the flags of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # The connection options are listed below; spelling them all out here
        # would bury the one thing the line is for, COMMAND.
        usage="%(prog)s [-h] [--version] COMMAND ...",
    )
    parser.add_argument("--version", action="version", version=f"rapidmq {_version()}")
    add_global_options(parser, suppress=False)
    subcommands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", prog="rapidmq"
    )
    _add_serve(subcommands)
    add_admin_commands(subcommands)
    add_access_commands(subcommands)
    return parser


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, as every other error is.

    The usage block argparse prints first would make a typo look like a crash
    and hide the line that says what was wrong; ``--help`` still shows it.
    ``serve`` keeps argparse's own form (``one_line = False``): its output is a
    contract that supervisors and scripts already read.
    """

    one_line = True

    def error(self, message: str) -> NoReturn:
        if not self.one_line:
            super().error(message)
        hint = "" if self.prog == "rapidmq" else f"; see '{self.prog} --help'"
        self.exit(EXIT_USAGE, f"rapidmq: error: {message}{hint}\n")


def _add_serve(subcommands: argparse._SubParsersAction[_Parser]) -> None:
    serve = subcommands.add_parser(
        "serve",
        help="start the broker",
        allow_abbrev=False,
        description=_SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.one_line = False
    serve.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"TOML config file (env {CONFIG_ENV}; default: none)",
    )
    for info in SETTINGS:
        env = " or ".join(info.env_names)
        help_text = f"{info.help} (default: {info.show_default()}; env {env})"
        if not info.is_switch:
            serve.add_argument(
                info.flag, dest=info.name, metavar=info.metavar, default=None, help=help_text
            )
            continue
        # A boolean is a switch: a bare flag is "true", and a value after it
        # (--tls-verify-peer false, --tls-verify-peer=false) still works, as it
        # did before switches; --no-FLAG turns it off.
        serve.add_argument(
            info.flag,
            dest=info.name,
            metavar=info.metavar,
            nargs="?",
            const="true",
            default=None,
            help=help_text,
        )
        serve.add_argument(
            info.off_flag,
            dest=info.name,
            action="store_const",
            const="false",
            help=f"turn {info.flag} off",
        )
    serve.set_defaults(run=_serve)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings ``rapidmq serve`` runs with, from its parsed flags and the environment.

    Raises:
        ConfigError: any bad value, in the flags, the environment or the config file.
    """
    options = {info.name: getattr(args, info.name) for info in SETTINGS}
    return load_settings(options, environ, args.config, rabbitmq_conf=RABBITMQ_CONF)


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, os.environ)
    try:
        # Imported here so that `rapidmq --help` works without the broker's dependencies.
        run: Callable[[Settings, Sequence[str]], int] = importlib.import_module(
            "rapidmq.server"
        ).run
    except ModuleNotFoundError as err:
        if err.name != "rapidmq.server":
            raise
        print("rapidmq: this installation has no broker (rapidmq.server)", file=sys.stderr)
        return 1
    return run(settings, startup_notes(os.environ, RABBITMQ_CONF))


def main(argv: list[str] | None = None) -> int:
    """Run ``rapidmq`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    command: _Command | None = getattr(args, "run", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
