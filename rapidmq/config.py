"""RapidMQ's settings and where they come from.

Every setting has one name, used as the TOML key (``amqp_port = 5673``), the
command-line flag (``--amqp-port``) and the environment variable
(``RAPIDMQ_AMQP_PORT``).  Precedence is flags over environment over the config
file over the defaults below.  :data:`SETTINGS` describes each one; the CLI
builds its flags from it and ``docs/configuration.md`` documents it.

Any mistake stops start-up with a :class:`ConfigError` whose text is one line
naming where the bad value came from and what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rapidmq.core.alarms import BadLimit, parse_size, parse_watermark
from rapidmq.errors import ConfigError
from rapidmq.rabbitmq_conf import read_rabbitmq_conf

__all__ = [
    "CONFIG_ENV",
    "SETTINGS",
    "Backend",
    "ConfigError",
    "LogLevel",
    "SettingInfo",
    "Settings",
    "Storage",
    "load_settings",
]

Backend = Literal["trio", "asyncio"]
Storage = Literal["rocksdb", "memory"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]

CONFIG_ENV = "RAPIDMQ_CONFIG"
"""The environment variable naming the TOML config file (the ``--config`` flag wins)."""


@dataclass(slots=True, frozen=True)
class Settings:
    """Everything ``rapidmq serve`` is configured with.

    A port of ``None`` turns that listener off; ``0`` asks the OS for a free port.
    """

    amqp_port: int | None = 5672
    mqtt_port: int | None = 1883
    mqtt_ws_port: int | None = 15675
    http_port: int | None = 15672
    prometheus_port: int | None = None
    amqps_port: int | None = 5671
    mqtts_port: int | None = 8883
    mqtt_wss_port: int | None = 15676
    https_port: int | None = None
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_verify_peer: bool = False
    tls_fail_if_no_peer_cert: bool = False
    bind: str = "0.0.0.0"
    data_dir: str = "./rapidmq-data"
    storage: Storage = "rocksdb"
    backend: Backend = "trio"
    log_level: LogLevel = "info"
    log_format: LogFormat = "text"
    heartbeat_s: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    default_vhost: str = "/"
    default_user: str = "guest"
    default_pass: str = "guest"
    loopback_users: tuple[str, ...] = ("guest",)
    handshake_timeout_s: float = 10.0
    mqtt_vhost: str = "/"
    mqtt_anonymous_usernames: bool = False
    memory_high_watermark: str = "0.4"
    disk_free_limit: str = "50MB"
    cluster_name: str = ""
    auth_backends: tuple[str, ...] = ("internal",)
    login_failure_limit: int = 10
    audit_log: str = ""
    ldap_servers: tuple[str, ...] = ()
    ldap_port: int = 389
    ldap_use_ssl: bool = False
    ldap_use_starttls: bool = False
    ldap_user_dn_pattern: str = ""
    ldap_dn_lookup_base: str = ""
    ldap_dn_lookup_attribute: str = ""
    ldap_dn_lookup_bind_dn: str = ""
    ldap_dn_lookup_bind_password: str = ""
    ldap_tag_groups: str = ""
    ldap_vhost_groups: str = ""
    ldap_group_member_attribute: str = "member"
    ldap_cache_ttl_s: float = 60.0
    ldap_timeout_s: float = 5.0
    ldap_ca: str = ""
    load_definitions: str = ""


class _Invalid(Exception):
    """A value a parser refuses; the text says what the value must be."""


_Parser = Callable[[object], object]


def _port(value: object) -> object:
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return None
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    raise _Invalid('must be a port number 0..65535 (0 = any free port) or "off"')


def _int_in(low: int, high: int) -> _Parser:
    def parse(value: object) -> object:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        raise _Invalid(f"must be a whole number {low}..{high}")

    return parse


def _positive_seconds(value: object) -> object:
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is not None and math.isfinite(number) and number > 0:
        return number
    raise _Invalid("must be a number of seconds greater than 0")


def _text(value: object) -> object:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _Invalid("must be a non-empty string")


def _secret(value: object) -> object:
    if isinstance(value, str):
        return value
    raise _Invalid("must be a string")


def _one_of(*choices: str) -> _Parser:
    def parse(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Invalid("must be one of " + ", ".join(choices))

    return parse


def _watermark(value: object) -> object:
    try:
        parse_watermark(value)
    except BadLimit as err:
        raise _Invalid(str(err)) from None
    return str(value).strip()


def _size(value: object) -> object:
    try:
        parse_size(value)
    except BadLimit as err:
        raise _Invalid(str(err)) from None
    return str(value).strip()


def _flag(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise _Invalid("must be true or false")


def _string(what: str) -> _Parser:
    """Any string, stripped; an empty one means "not set"."""

    def parse(value: object) -> object:
        if isinstance(value, str):
            return value.strip()
        raise _Invalid(f"must be {what}")

    return parse


_path_or_empty = _string("a file path")
_optional_text = _string("a string")


def _backends(value: object) -> object:
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        names = tuple(item.strip().lower() for item in value if item.strip())
        if names and all(name in ("internal", "ldap") for name in names):
            return names
    raise _Invalid('must be a comma-separated list of "internal" and "ldap", in the order tried')


def _comma_list(what: str) -> _Parser:
    """A comma-separated string or a TOML list of ``what``; "none" is the empty list."""

    def parse(value: object) -> object:
        if isinstance(value, str):
            if value.strip().lower() == "none":
                return ()
            value = value.split(",")
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(item.strip() for item in value if item.strip())
        raise _Invalid(f'must be a comma-separated list of {what}, or "none"')

    return parse


_names = _comma_list("user names")
_hosts = _comma_list("host names")


def _seconds_or_zero(value: object) -> object:
    if not isinstance(value, bool) and value in (0, "0"):
        return 0.0
    return _positive_seconds(value)


def _group_map(value: object) -> object:
    # "name=group DN;name=group DN", or a TOML table {name = "group DN"}.
    if isinstance(value, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise _Invalid("must map names to group DNs (strings)")
        value = ";".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, str):
        entries = [entry.strip() for entry in value.split(";") if entry.strip()]
        for entry in entries:
            name, sep, dn = entry.partition("=")
            if not sep or not name.strip() or not dn.strip():
                raise _Invalid(f'{entry!r} is not NAME=GROUP_DN (entries separated by ";")')
        return ";".join(entries)
    raise _Invalid('must be "name=group DN;name=group DN" or a table of name = "group DN"')


@dataclass(slots=True, frozen=True)
class SettingInfo:
    """How one setting is spelled in each source, and what it means."""

    name: str
    help: str
    parse: _Parser
    metavar: str
    #: Other environment variables read for this setting, after ``RAPIDMQ_*`` (which wins):
    #: RabbitMQ's, so that a deployment written for RabbitMQ's image keeps working.
    aliases: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "RAPIDMQ_" + self.name.upper()

    @property
    def is_switch(self) -> bool:
        """A boolean: on the command line a bare flag turns it on, ``--no-…`` off."""
        return self.parse is _flag

    @property
    def off_flag(self) -> str:
        """The flag that turns a switch off (``--no-tls-verify-peer``)."""
        return "--no-" + self.name.replace("_", "-")

    @property
    def flag_forms(self) -> tuple[str, ...]:
        """How the setting is spelled on the command line, as the docs list it."""
        if self.is_switch:
            return (f"{self.flag} [{self.metavar}]", self.off_flag)
        return (f"{self.flag} {self.metavar}",)

    @property
    def env_names(self) -> tuple[str, ...]:
        """Every environment variable read for this setting, the winning one first."""
        return (self.env, *self.aliases)

    @property
    def default(self) -> object:
        return _DEFAULTS[self.name]

    def show_default(self) -> str:
        """The default as a user would type it."""
        value = self.default
        if value is None:
            return "off"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ",".join(value) or "none"
        return str(value)


_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(Settings)}

SETTINGS: tuple[SettingInfo, ...] = (
    SettingInfo(
        "amqp_port", "AMQP 0-9-1 listener port; 0 = free port, off = disabled", _port, "PORT"
    ),
    SettingInfo("mqtt_port", "MQTT listener port; 0 = free port, off = disabled", _port, "PORT"),
    SettingInfo(
        "mqtt_ws_port",
        "MQTT over WebSocket listener port (path /ws); 0 = free port, off = disabled",
        _port,
        "PORT",
    ),
    SettingInfo(
        "http_port", "HTTP management listener port; 0 = free port, off = disabled", _port, "PORT"
    ),
    SettingInfo(
        "prometheus_port",
        "extra listener serving only /metrics; off = disabled (/metrics is on the HTTP port too)",
        _port,
        "PORT",
    ),
    SettingInfo(
        "amqps_port",
        "AMQP over TLS listener port (on when tls_cert and tls_key are set); off = disabled",
        _port,
        "PORT",
    ),
    SettingInfo(
        "mqtts_port",
        "MQTT over TLS listener port (on when tls_cert and tls_key are set); off = disabled",
        _port,
        "PORT",
    ),
    SettingInfo(
        "mqtt_wss_port",
        "MQTT over secure WebSocket port, path /ws (on when tls_cert and tls_key are set)",
        _port,
        "PORT",
    ),
    SettingInfo(
        "https_port",
        "management API over TLS (needs tls_cert and tls_key); off = disabled",
        _port,
        "PORT",
    ),
    SettingInfo(
        "tls_cert", "server certificate chain (PEM) for the TLS listeners", _path_or_empty, "FILE"
    ),
    SettingInfo("tls_key", "private key (PEM) of tls_cert", _path_or_empty, "FILE"),
    SettingInfo(
        "tls_ca",
        "CA certificates (PEM) that client certificates are checked against",
        _path_or_empty,
        "FILE",
    ),
    SettingInfo(
        "tls_verify_peer", "ask TLS clients for a certificate and verify it", _flag, "BOOL"
    ),
    SettingInfo(
        "tls_fail_if_no_peer_cert",
        "refuse TLS clients that send no certificate (with tls_verify_peer)",
        _flag,
        "BOOL",
    ),
    SettingInfo("bind", "address every listener binds", _text, "ADDRESS"),
    SettingInfo("data_dir", "directory for durable state", _text, "DIR"),
    SettingInfo(
        "storage",
        "rocksdb (durable, under data_dir) or memory (nothing survives a restart)",
        _one_of("rocksdb", "memory"),
        "KIND",
    ),
    SettingInfo("backend", "event loop: trio or asyncio", _one_of("trio", "asyncio"), "NAME"),
    SettingInfo(
        "log_level",
        "debug, info, warning, error or critical",
        _one_of("debug", "info", "warning", "error", "critical"),
        "LEVEL",
    ),
    SettingInfo(
        "log_format",
        "text (one readable line per event) or json (one JSON object per line)",
        _one_of("text", "json"),
        "FORMAT",
    ),
    SettingInfo(
        "heartbeat_s", "AMQP heartbeat the server proposes; 0 = none", _int_in(0, 65535), "SECONDS"
    ),
    SettingInfo("frame_max", "largest AMQP frame in bytes", _int_in(4096, 2**32 - 1), "BYTES"),
    SettingInfo("channel_max", "most AMQP channels per connection", _int_in(1, 65535), "N"),
    SettingInfo(
        "default_vhost",
        "virtual host the broker creates",
        _text,
        "NAME",
        aliases=("RABBITMQ_DEFAULT_VHOST",),
    ),
    SettingInfo(
        "default_user",
        "user the broker creates on a fresh data dir, tagged administrator",
        _text,
        "NAME",
        aliases=("RABBITMQ_DEFAULT_USER",),
    ),
    SettingInfo(
        "default_pass",
        "password of the default user",
        _secret,
        "PASSWORD",
        aliases=("RABBITMQ_DEFAULT_PASS",),
    ),
    SettingInfo(
        "loopback_users",
        "users who may connect only from localhost; none = nobody",
        _names,
        "NAMES",
    ),
    SettingInfo(
        "handshake_timeout_s",
        "seconds a client has to finish the AMQP handshake",
        _positive_seconds,
        "SECONDS",
    ),
    SettingInfo(
        "mqtt_vhost",
        "virtual host of MQTT clients whose user name has no 'vhost:' prefix",
        _text,
        "NAME",
    ),
    SettingInfo(
        "mqtt_anonymous_usernames",
        "an MQTT CONNECT with a user name and no password logs in as default_user "
        "(the sent name is kept for the logs); off = refused",
        _flag,
        "BOOL",
    ),
    SettingInfo(
        "memory_high_watermark",
        "memory budget: a fraction of total RAM or a size (512MB, 2GiB); "
        "publishers are blocked at it",
        _watermark,
        "LIMIT",
    ),
    SettingInfo(
        "disk_free_limit",
        "publishers are blocked while the data dir's disk has less free space (50MB, 1GiB)",
        _size,
        "SIZE",
    ),
    SettingInfo(
        "cluster_name",
        "name the management API reports; empty = rapidmq@HOSTNAME",
        _text,
        "NAME",
    ),
    SettingInfo(
        "auth_backends",
        "where logins are checked, in order: internal, ldap (e.g. internal,ldap)",
        _backends,
        "NAMES",
    ),
    SettingInfo(
        "login_failure_limit",
        "failed logins a source address may make per minute before it is refused; 0 = no limit",
        _int_in(0, 1_000_000),
        "N",
    ),
    SettingInfo(
        "audit_log",
        "file that audit events are appended to as JSON lines; empty = the log only",
        _path_or_empty,
        "FILE",
    ),
    SettingInfo(
        "ldap_servers",
        "LDAP server host names, tried in order (with auth_backends ldap)",
        _hosts,
        "HOSTS",
    ),
    SettingInfo("ldap_port", "LDAP server port (636 for LDAPS)", _int_in(1, 65535), "PORT"),
    SettingInfo("ldap_use_ssl", "connect to LDAP over TLS (LDAPS)", _flag, "BOOL"),
    SettingInfo("ldap_use_starttls", "upgrade LDAP connections with StartTLS", _flag, "BOOL"),
    SettingInfo(
        "ldap_user_dn_pattern",
        "DN bound as for a login, ${username} replaced (e.g. cn=${username},ou=people,dc=example)",
        _optional_text,
        "PATTERN",
    ),
    SettingInfo(
        "ldap_dn_lookup_base",
        "search-then-bind: base DN searched for the user (with ldap_dn_lookup_attribute)",
        _optional_text,
        "DN",
    ),
    SettingInfo(
        "ldap_dn_lookup_attribute",
        "search-then-bind: attribute holding the user name (uid, sAMAccountName)",
        _optional_text,
        "ATTRIBUTE",
    ),
    SettingInfo(
        "ldap_dn_lookup_bind_dn",
        "search-then-bind: service account DN that searches; empty = anonymous",
        _optional_text,
        "DN",
    ),
    SettingInfo(
        "ldap_dn_lookup_bind_password",
        "password of ldap_dn_lookup_bind_dn",
        _secret,
        "PASSWORD",
    ),
    SettingInfo(
        "ldap_tag_groups",
        "user tags from LDAP groups: tag=group DN;tag=group DN (TOML: [ldap.tag_groups])",
        _group_map,
        "MAP",
    ),
    SettingInfo(
        "ldap_vhost_groups",
        "vhost=group DN;...: only members may open that vhost; others follow permissions",
        _group_map,
        "MAP",
    ),
    SettingInfo(
        "ldap_group_member_attribute",
        "group attribute listing member DNs",
        _text,
        "ATTRIBUTE",
    ),
    SettingInfo(
        "ldap_cache_ttl_s",
        "seconds an LDAP login result is reused without asking the server; 0 = no cache",
        _seconds_or_zero,
        "SECONDS",
    ),
    SettingInfo(
        "ldap_timeout_s",
        "seconds an LDAP connect or operation may take before the login fails",
        _positive_seconds,
        "SECONDS",
    ),
    SettingInfo(
        "ldap_ca",
        "CA certificates (PEM) LDAPS and StartTLS servers are verified against; empty = system",
        _path_or_empty,
        "FILE",
    ),
    SettingInfo(
        "load_definitions",
        "definitions file (RabbitMQ's JSON format) or directory of them, imported at every "
        "start before the ready line; empty = rabbitmq.conf's load_definitions, if any",
        _path_or_empty,
        "FILE",
    ),
)

_BY_NAME: dict[str, SettingInfo] = {info.name: info for info in SETTINGS}

# A friendlier spelling for the listeners: ``[listeners] amqp = 5673``.
_TABLE_ALIASES: dict[str, dict[str, str]] = {
    "listeners": {
        "amqp": "amqp_port",
        "mqtt": "mqtt_port",
        "mqtt_ws": "mqtt_ws_port",
        "http": "http_port",
        "prometheus": "prometheus_port",
        "amqps": "amqps_port",
        "mqtts": "mqtts_port",
        "mqtt_wss": "mqtt_wss_port",
        "https": "https_port",
        "bind": "bind",
    },
    "tls": {
        "cert": "tls_cert",
        "key": "tls_key",
        "ca": "tls_ca",
        "verify_peer": "tls_verify_peer",
        "fail_if_no_peer_cert": "tls_fail_if_no_peer_cert",
    },
    "ldap": {
        "servers": "ldap_servers",
        "port": "ldap_port",
        "use_ssl": "ldap_use_ssl",
        "use_starttls": "ldap_use_starttls",
        "user_dn_pattern": "ldap_user_dn_pattern",
        "dn_lookup_base": "ldap_dn_lookup_base",
        "dn_lookup_attribute": "ldap_dn_lookup_attribute",
        "dn_lookup_bind_dn": "ldap_dn_lookup_bind_dn",
        "dn_lookup_bind_password": "ldap_dn_lookup_bind_password",
        "tag_groups": "ldap_tag_groups",
        "vhost_groups": "ldap_vhost_groups",
        "group_member_attribute": "ldap_group_member_attribute",
        "cache_ttl_s": "ldap_cache_ttl_s",
        "timeout_s": "ldap_timeout_s",
        "ca": "ldap_ca",
    },
}

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)$")


def load_settings(
    argv_options: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: str | None,
    *,
    rabbitmq_conf: str | None = None,
) -> Settings:
    """Combine the defaults, a TOML file, the environment and the flags.

    Args:
        argv_options: setting name to value from the command line; ``None`` means not given.
        environ: the process environment (``RAPIDMQ_*`` variables are read).
        config_file: the ``--config`` path; when ``None``, ``RAPIDMQ_CONFIG`` is used.
        rabbitmq_conf: where RabbitMQ's config file is looked for when
            ``RABBITMQ_CONFIG_FILE`` is not set (``None`` = nowhere); its
            ``load_definitions`` is used when no other source gives one.

    Raises:
        ConfigError: a bad value, an unknown key, or a missing or unparsable file.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_file(config_file, "--config"))
    elif environ.get(CONFIG_ENV, "").strip():
        values.update(_read_file(environ[CONFIG_ENV].strip(), CONFIG_ENV))
    for info in SETTINGS:
        for env_name in info.env_names:
            raw = environ.get(env_name, "")
            if raw.strip():
                values[info.name] = _parse(info, raw, f"{env_name}={raw!r}")
                break
    for name, raw in argv_options.items():
        if raw is None:
            continue
        option = _BY_NAME.get(name)
        if option is None:
            raise ConfigError(f"unknown option {name!r}")
        values[name] = _parse(option, raw, f"{option.flag} {raw!r}")
    if not values.get("load_definitions"):
        conf = read_rabbitmq_conf(environ, rabbitmq_conf)
        if conf is not None and conf.load_definitions:
            values["load_definitions"] = conf.load_definitions
    settings = Settings(**values)
    _check_ports(settings)
    _check_ldap(settings)
    return settings


def _parse(info: SettingInfo, raw: object, where: str) -> object:
    try:
        return info.parse(raw)
    except _Invalid as err:
        raise ConfigError(f"{where}: {err}") from None


def _read_file(path: str, given_by: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; fix {given_by}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; fix {given_by}") from None
    except OSError as err:
        raise ConfigError(
            f"config file {path} cannot be read ({err.strerror}); fix {given_by}"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = _TOML_POSITION.search(message)
        line = (match.group(1) or str(text.count("\n") + 1)) if match else "?"
        reason = message[: match.start()] if match else message
        raise ConfigError(f"config file {path} line {line}: not valid TOML: {reason}") from None
    return _settings_from_document(document, path, text)


def _settings_from_document(
    document: Mapping[str, object], path: str, text: str
) -> dict[str, object]:
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}  # setting name -> how the file spelled it
    entries: list[tuple[str, str, object]] = []  # (table, key, value)
    for key, value in document.items():
        if key in _TABLE_ALIASES and isinstance(value, dict):
            entries.extend((key, sub_key, sub_value) for sub_key, sub_value in value.items())
        else:
            entries.append(("", key, value))
    for table, key, value in entries:
        where = f"config file {path} line {_line_of(text, table, key)}"
        shown = f"{table}.{key}" if table else key
        name = _TABLE_ALIASES[table].get(key) if table else key.replace("-", "_")
        if name is None or name not in _BY_NAME:
            known = list(_TABLE_ALIASES[table]) if table else [*_BY_NAME, *_TABLE_ALIASES]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see docs/configuration.md"
            raise ConfigError(f"{where}: unknown key {shown!r}; {hint}")
        if name in spelled:
            raise ConfigError(f"{where}: {shown} repeats {spelled[name]}; keep only one")
        spelled[name] = shown
        values[name] = _parse(_BY_NAME[name], value, f"{where}: {shown} = {value!r}")
    return values


def _line_of(text: str, table: str, key: str) -> str:
    """The 1-based line where ``key`` is set inside ``[table]``, or ``?``."""
    in_table = re.escape(key)
    dotted = re.escape(table) + r"\s*\.\s*" + re.escape(key)  # listeners.amqp = 5673
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([A-Za-z0-9_-]+)\s*\](?:\s*#.*)?", stripped)
        if header:
            current = header.group(1)
            continue
        if current == table:
            pattern = in_table
        elif current == "":
            pattern = dotted
        else:
            continue
        if re.match(rf"""(["']?){pattern}\1\s*=""", stripped):
            return str(number)
    return "?"


TLS_PORTS = ("amqps_port", "mqtts_port", "mqtt_wss_port", "https_port")


def tls_enabled(settings: Settings) -> bool:
    """True when a certificate and key are configured, which turns the TLS listeners on."""
    return bool(settings.tls_cert and settings.tls_key)


def _check_ports(settings: Settings) -> None:
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError(
            "tls_cert and tls_key go together; give both (--tls-cert FILE --tls-key FILE)"
        )
    if settings.https_port is not None and not tls_enabled(settings):
        raise ConfigError("https_port needs a certificate; give --tls-cert FILE --tls-key FILE")
    if settings.tls_fail_if_no_peer_cert and not settings.tls_verify_peer:
        raise ConfigError("tls_fail_if_no_peer_cert needs --tls-verify-peer")
    names = ["amqp_port", "mqtt_port", "mqtt_ws_port", "http_port", "prometheus_port"]
    if tls_enabled(settings):
        names += TLS_PORTS
    seen: dict[int, str] = {}
    for name in names:
        port = getattr(settings, name)
        if not port:  # off, or a free port chosen by the OS
            continue
        if port in seen:
            flag = _BY_NAME[name].flag
            raise ConfigError(
                f"{seen[port]} and {name} are both {port}; give one another port ({flag})"
            )
        seen[port] = name


def _check_ldap(settings: Settings) -> None:
    if "ldap" in settings.auth_backends and not settings.ldap_servers:
        raise ConfigError("auth_backends names ldap but no server is set; give --ldap-servers HOST")
    if settings.ldap_use_ssl and settings.ldap_use_starttls:
        raise ConfigError("ldap_use_ssl and ldap_use_starttls exclude each other; choose one")
