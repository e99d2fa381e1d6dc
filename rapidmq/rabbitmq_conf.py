"""What RapidMQ takes from a RabbitMQ installation's configuration, and what it ignores.

A compose file or a Kubernetes manifest written for RabbitMQ's image may set
RabbitMQ's environment variables and mount a ``rabbitmq.conf``.  RapidMQ reads
the ``load_definitions`` key of that file (its other keys, and variables such
as the Erlang cookie, are named in one log line at start-up, so that nobody
wonders whether they took).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rapidmq.errors import ConfigError

__all__ = [
    "IGNORED_ENV",
    "RABBITMQ_CONF",
    "RABBITMQ_CONFIG_FILE_ENV",
    "RabbitMQConf",
    "read_rabbitmq_conf",
    "startup_notes",
]

#: RabbitMQ's environment variables that mean nothing to RapidMQ, and why; each one
#: set is named in one log line at start-up, so that nobody wonders whether it took.
IGNORED_ENV: dict[str, str] = {
    "RABBITMQ_ERLANG_COOKIE": "RapidMQ nodes do not use an Erlang cookie",
}


#: Where RabbitMQ's image looks for its config file (``RABBITMQ_CONFIG_FILE`` moves it).
RABBITMQ_CONF = "/etc/rabbitmq/rabbitmq.conf"
RABBITMQ_CONFIG_FILE_ENV = "RABBITMQ_CONFIG_FILE"
#: The keys of rabbitmq.conf RapidMQ reads; the older plugin spelling is still met.
_RABBITMQ_CONF_KEYS = ("load_definitions", "management.load_definitions")


@dataclass(slots=True, frozen=True)
class RabbitMQConf:
    """What RapidMQ takes from a RabbitMQ ``rabbitmq.conf``: ``load_definitions`` only."""

    path: str
    load_definitions: str
    ignored_keys: tuple[str, ...]


def read_rabbitmq_conf(environ: Mapping[str, str], default_path: str | None) -> RabbitMQConf | None:
    """The ``rabbitmq.conf`` named by ``RABBITMQ_CONFIG_FILE``, else ``default_path`` if it exists.

    Raises:
        ConfigError: ``RABBITMQ_CONFIG_FILE`` names a missing file, a file cannot be
            read, or its ``load_definitions`` line has no path.
    """
    given = environ.get(RABBITMQ_CONFIG_FILE_ENV, "").strip()
    if given:
        path = given
        # RabbitMQ takes the name with or without its ".conf".
        if not os.path.exists(path) and not os.path.splitext(path)[1]:
            path += ".conf"
        if not os.path.exists(path):
            raise ConfigError(
                f"rabbitmq.conf {given} not found; fix {RABBITMQ_CONFIG_FILE_ENV} or unset it"
            )
        fix = f"fix {RABBITMQ_CONFIG_FILE_ENV}"
    elif default_path is not None and os.path.exists(default_path):
        path, fix = default_path, "fix or remove it"
    else:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"rabbitmq.conf {path} cannot be read ({reason}); {fix}") from None
    load_definitions = ""
    ignored: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, _sep, value = text.partition("=")
        key = key.strip()
        if key in _RABBITMQ_CONF_KEYS:
            value = value.split(" #", 1)[0].strip()
            if not value:
                raise ConfigError(
                    f"rabbitmq.conf {path} line {number}: {key} has no path; "
                    "give the definitions file or remove the line"
                )
            load_definitions = value
        elif key not in ignored:
            ignored.append(key)
    return RabbitMQConf(path, load_definitions, tuple(ignored))


def startup_notes(environ: Mapping[str, str], rabbitmq_conf: str | None = None) -> list[str]:
    """Lines to log at start-up about settings given in a form RapidMQ does not use.

    Args:
        environ: the process environment.
        rabbitmq_conf: where to look for RabbitMQ's config file when
            ``RABBITMQ_CONFIG_FILE`` is not set; ``None`` = nowhere.
    """
    notes = [
        f"{name} is set and ignored: {why}"
        for name, why in IGNORED_ENV.items()
        if environ.get(name, "").strip()
    ]
    conf = read_rabbitmq_conf(environ, rabbitmq_conf)
    if conf is not None and conf.ignored_keys:
        notes.append(
            f"rabbitmq.conf {conf.path}: only load_definitions is read; ignored "
            + ", ".join(conf.ignored_keys)
        )
    return notes
