from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.auth.backends import Authenticator, LoginRequest, LoginResult
from rapidmq.auth.users import UserStore
from rapidmq.config import SETTINGS, ConfigError, Settings, load_settings
from rapidmq.errors import RapidMQError
from rapidmq.rabbitmq_conf import RabbitMQConf, read_rabbitmq_conf, startup_notes

# One non-default value per setting: (as typed in a flag or variable, as a TOML value, parsed).
SAMPLES: dict[str, tuple[str, str, object]] = {
    "amqp_port": ("5673", "5673", 5673),
    "mqtt_port": ("off", '"off"', None),
    "mqtt_ws_port": ("15676", "15676", 15676),
    "http_port": ("0", "0", 0),
    "prometheus_port": ("9419", "9419", 9419),
    "log_format": ("JSON", '"json"', "json"),
    "cluster_name": ("prod-eu", '"prod-eu"', "prod-eu"),
    "amqps_port": ("5681", "5681", 5681),
    "mqtts_port": ("off", '"off"', None),
    "mqtt_wss_port": ("15686", "15686", 15686),
    "https_port": ("off", '"off"', None),
    "tls_cert": ("/etc/rapidmq/cert.pem", '"/etc/rapidmq/cert.pem"', "/etc/rapidmq/cert.pem"),
    "tls_key": ("/etc/rapidmq/key.pem", '"/etc/rapidmq/key.pem"', "/etc/rapidmq/key.pem"),
    "tls_ca": ("/etc/rapidmq/ca.pem", '"/etc/rapidmq/ca.pem"', "/etc/rapidmq/ca.pem"),
    "tls_verify_peer": ("true", "true", True),
    "tls_fail_if_no_peer_cert": ("true", "true", True),
    "auth_backends": ("internal, LDAP", '["internal", "ldap"]', ("internal", "ldap")),
    "login_failure_limit": ("0", "0", 0),
    "audit_log": (
        "/var/log/rapidmq/audit.jsonl",
        '"/var/log/rapidmq/audit.jsonl"',
        "/var/log/rapidmq/audit.jsonl",
    ),
    "ldap_servers": ("ldap1, ldap2", '["ldap1", "ldap2"]', ("ldap1", "ldap2")),
    "ldap_port": ("636", "636", 636),
    "ldap_use_ssl": ("true", "true", True),
    "ldap_use_starttls": ("yes", "true", True),
    "ldap_user_dn_pattern": (
        "cn=${username},ou=people,dc=example,dc=com",
        '"cn=${username},ou=people,dc=example,dc=com"',
        "cn=${username},ou=people,dc=example,dc=com",
    ),
    "ldap_dn_lookup_base": (
        "ou=people,dc=example,dc=com",
        '"ou=people,dc=example,dc=com"',
        "ou=people,dc=example,dc=com",
    ),
    "ldap_dn_lookup_attribute": ("uid", '"uid"', "uid"),
    "ldap_dn_lookup_bind_dn": (
        "cn=svc,dc=example,dc=com",
        '"cn=svc,dc=example,dc=com"',
        "cn=svc,dc=example,dc=com",
    ),
    "ldap_dn_lookup_bind_password": ("s3cret", '"s3cret"', "s3cret"),
    "ldap_tag_groups": (
        "administrator=cn=admins,dc=example; monitoring=cn=ops,dc=example",
        '{ administrator = "cn=admins,dc=example", monitoring = "cn=ops,dc=example" }',
        "administrator=cn=admins,dc=example;monitoring=cn=ops,dc=example",
    ),
    "ldap_vhost_groups": (
        "/=cn=users,dc=example,dc=com",
        '"/=cn=users,dc=example,dc=com"',
        "/=cn=users,dc=example,dc=com",
    ),
    "ldap_group_member_attribute": ("uniqueMember", '"uniqueMember"', "uniqueMember"),
    "ldap_cache_ttl_s": ("0", "0", 0.0),
    "ldap_timeout_s": ("2.5", "2.5", 2.5),
    "ldap_ca": (
        "/etc/rapidmq/ldap-ca.pem",
        '"/etc/rapidmq/ldap-ca.pem"',
        "/etc/rapidmq/ldap-ca.pem",
    ),
    "bind": ("127.0.0.1", '"127.0.0.1"', "127.0.0.1"),
    "data_dir": ("/var/lib/rapidmq", '"/var/lib/rapidmq"', "/var/lib/rapidmq"),
    "backend": ("asyncio", '"asyncio"', "asyncio"),
    "storage": ("memory", '"memory"', "memory"),
    "log_level": ("DEBUG", '"debug"', "debug"),
    "heartbeat_s": ("0", "0", 0),
    "frame_max": ("4096", "4096", 4096),
    "channel_max": ("64", "64", 64),
    "default_vhost": ("prod", '"prod"', "prod"),
    "default_user": ("admin", '"admin"', "admin"),
    "default_pass": ("s3cret", '"s3cret"', "s3cret"),
    "loopback_users": ("admin, ops", '["admin", "ops"]', ("admin", "ops")),
    "handshake_timeout_s": ("2.5", "2.5", 2.5),
    "mqtt_vhost": ("iot", '"iot"', "iot"),
    "mqtt_anonymous_usernames": ("on", "true", True),
    "memory_high_watermark": ("512MB", '"512MB"', "512MB"),
    "disk_free_limit": ("1GiB", '"1GiB"', "1GiB"),
    "load_definitions": (
        "/etc/rapidmq/definitions.json",
        '"/etc/rapidmq/definitions.json"',
        "/etc/rapidmq/definitions.json",
    ),
}


def write(tmp_path: Path, text: str, name: str = "rapidmq.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(argv: dict[str, object], env: dict[str, str], file: str | None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(argv, env, file)
    return str(caught.value)


def test_defaults_are_the_documented_ones() -> None:
    assert dataclasses.asdict(load_settings({}, {}, None)) == {
        "amqp_port": 5672,
        "mqtt_port": 1883,
        "http_port": 15672,
        "prometheus_port": None,
        "log_format": "text",
        "cluster_name": "",
        "amqps_port": 5671,
        "mqtts_port": 8883,
        "mqtt_wss_port": 15676,
        "https_port": None,
        "tls_cert": "",
        "tls_key": "",
        "tls_ca": "",
        "tls_verify_peer": False,
        "tls_fail_if_no_peer_cert": False,
        "auth_backends": ("internal",),
        "login_failure_limit": 10,
        "audit_log": "",
        "ldap_servers": (),
        "ldap_port": 389,
        "ldap_use_ssl": False,
        "ldap_use_starttls": False,
        "ldap_user_dn_pattern": "",
        "ldap_dn_lookup_base": "",
        "ldap_dn_lookup_attribute": "",
        "ldap_dn_lookup_bind_dn": "",
        "ldap_dn_lookup_bind_password": "",
        "ldap_tag_groups": "",
        "ldap_vhost_groups": "",
        "ldap_group_member_attribute": "member",
        "ldap_cache_ttl_s": 60.0,
        "ldap_timeout_s": 5.0,
        "ldap_ca": "",
        "load_definitions": "",
        "mqtt_anonymous_usernames": False,
        "bind": "0.0.0.0",
        "data_dir": "./rapidmq-data",
        "backend": "trio",
        "log_level": "info",
        "heartbeat_s": 60,
        "frame_max": 131072,
        "channel_max": 2047,
        "default_vhost": "/",
        "default_user": "guest",
        "default_pass": "guest",
        "loopback_users": ("guest",),
        "handshake_timeout_s": 10.0,
        "mqtt_vhost": "/",
        "mqtt_ws_port": 15675,
        "storage": "rocksdb",
        "memory_high_watermark": "0.4",
        "disk_free_limit": "50MB",
    }


def test_samples_cover_every_setting() -> None:
    assert sorted(SAMPLES) == sorted(info.name for info in SETTINGS)
    assert sorted(SAMPLES) == sorted(field.name for field in dataclasses.fields(Settings))


# Settings that are only valid with another one, given as a flag alongside.
COMPANIONS: dict[str, dict[str, str]] = {
    "tls_cert": {"tls_key": "/etc/rapidmq/key.pem"},
    "tls_key": {"tls_cert": "/etc/rapidmq/cert.pem"},
    "tls_fail_if_no_peer_cert": {"tls_verify_peer": "true"},
    "auth_backends": {"ldap_servers": "ldap.example.com"},
}
COMPANION_VALUES: dict[str, object] = {
    "tls_key": "/etc/rapidmq/key.pem",
    "tls_cert": "/etc/rapidmq/cert.pem",
    "tls_verify_peer": True,
    "ldap_servers": ("ldap.example.com",),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_setting_has_a_flag_an_env_variable_and_a_toml_key(name: str, tmp_path: Path) -> None:
    raw, toml_value, parsed = SAMPLES[name]
    info = next(info for info in SETTINGS if info.name == name)
    assert (info.flag, info.env) == ("--" + name.replace("_", "-"), "RAPIDMQ_" + name.upper())
    companions = COMPANIONS.get(name, {})
    expected = dataclasses.replace(
        Settings(), **{key: COMPANION_VALUES[key] for key in companions}, **{name: parsed}
    )
    file = write(tmp_path, f"{name} = {toml_value}\n")
    assert load_settings({**companions, name: raw}, {}, None) == expected
    assert load_settings(companions, {info.env: raw}, None) == expected
    assert load_settings(companions, {}, file) == expected


def test_tls_settings_that_need_each_other_are_refused_alone() -> None:
    assert "give both" in config_error({"tls_cert": "/c.pem"}, {}, None)
    assert "needs a certificate" in config_error({"https_port": "15671"}, {}, None)
    assert "--tls-verify-peer" in config_error({"tls_fail_if_no_peer_cert": "true"}, {}, None)


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    file = write(tmp_path, "amqp_port = 1001\nmqtt_port = 1002\nhttp_port = 1003\n")
    env = {"RAPIDMQ_MQTT_PORT": "2002", "RAPIDMQ_HTTP_PORT": "2003"}
    settings = load_settings({"http_port": "3003", "bind": None}, env, file)
    assert settings == Settings(amqp_port=1001, mqtt_port=2002, http_port=3003)


def test_config_file_comes_from_rapidmq_config_unless_the_flag_names_one(tmp_path: Path) -> None:
    from_env = write(tmp_path, "amqp_port = 1111\n", "env.toml")
    from_flag = write(tmp_path, "amqp_port = 2222\n", "flag.toml")
    env = {"RAPIDMQ_CONFIG": from_env}
    assert load_settings({}, env, None) == Settings(amqp_port=1111)
    assert load_settings({}, env, from_flag) == Settings(amqp_port=2222)


def test_empty_environment_variables_count_as_unset() -> None:
    env = {"RAPIDMQ_AMQP_PORT": "", "RAPIDMQ_CONFIG": " ", "RAPIDMQ_BIND": ""}
    assert load_settings({}, env, None) == Settings()


def test_listeners_table_is_an_alias_for_the_port_keys(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        '[listeners]\namqp = 5673\nmqtt = "off"\nhttp = 0\nbind = "127.0.0.1"\n',
    )
    assert load_settings({}, {}, file) == Settings(
        amqp_port=5673, mqtt_port=None, http_port=0, bind="127.0.0.1"
    )


def test_dashed_toml_keys_and_none_loopback_users(tmp_path: Path) -> None:
    file = write(tmp_path, 'amqp-port = "OFF"\nloopback_users = []\n')
    assert load_settings({}, {}, file) == Settings(amqp_port=None, loopback_users=())
    assert load_settings({"loopback_users": "none"}, {}, None) == Settings(loopback_users=())


@given(st.integers(min_value=0, max_value=65535))
def test_any_port_number_is_accepted(port: int) -> None:
    others = {"mqtt_port": "off", "mqtt_ws_port": "off", "http_port": "off"}
    assert load_settings({"amqp_port": str(port), **others}, {}, None) == Settings(
        amqp_port=port, mqtt_port=None, mqtt_ws_port=None, http_port=None
    )


@given(st.integers().filter(lambda n: not 0 <= n <= 65535))
def test_ports_outside_the_range_are_refused(port: int) -> None:
    assert config_error({"amqp_port": str(port)}, {}, None) == (
        f"rapidmq: --amqp-port '{port}': "
        'must be a port number 0..65535 (0 = any free port) or "off"'
    )


def test_bad_flag_names_the_flag() -> None:
    assert config_error({"backend": "gevent"}, {}, None) == (
        "rapidmq: --backend 'gevent': must be one of trio, asyncio"
    )


def test_bad_environment_variable_names_the_variable() -> None:
    assert config_error({}, {"RAPIDMQ_FRAME_MAX": "1024"}, None) == (
        "rapidmq: RAPIDMQ_FRAME_MAX='1024': must be a whole number 4096..4294967295"
    )


def test_bad_memory_high_watermark_names_the_flag() -> None:
    assert config_error({"memory_high_watermark": "1.5"}, {}, None) == (
        "rapidmq: --memory-high-watermark '1.5': must be a fraction of total RAM above 0 "
        'and at most 1 (0.4) or a size ("512MB", "2GiB")'
    )


def test_bad_disk_free_limit_names_the_flag() -> None:
    assert config_error({"disk_free_limit": "50 parsecs"}, {}, None) == (
        "rapidmq: --disk-free-limit '50 parsecs': must be a size such as "
        '"50MB", "512MiB" or "2GB", or a number of bytes'
    )


def test_memory_high_watermark_fraction_from_toml(tmp_path: Path) -> None:
    file = write(tmp_path, "memory_high_watermark = 0.25\ndisk_free_limit = 1000000\n")
    settings = load_settings({}, {}, file)
    assert (settings.memory_high_watermark, settings.disk_free_limit) == ("0.25", "1000000")


def test_unknown_toml_key_names_its_line_and_the_likely_fix(tmp_path: Path) -> None:
    file = write(tmp_path, "# RapidMQ\n\namqp_prot = 5673\n")
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 3: unknown key 'amqp_prot'; did you mean 'amqp_port'?"
    )


def test_bad_value_inside_the_listeners_table_names_its_line(tmp_path: Path) -> None:
    file = write(tmp_path, 'data_dir = "/tmp/x"\n[listeners]\namqp = 5673\nmqtt = 99999\n')
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 4: listeners.mqtt = 99999: "
        'must be a port number 0..65535 (0 = any free port) or "off"'
    )


def test_dotted_alias_key_is_found_on_its_line(tmp_path: Path) -> None:
    file = write(tmp_path, "bind = '::'\nlisteners.htp = 1\n")
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 2: unknown key 'listeners.htp'; did you mean 'http'?"
    )


def test_toml_booleans_are_not_numbers(tmp_path: Path) -> None:
    file = write(tmp_path, "heartbeat_s = true\n")
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 1: heartbeat_s = True: must be a whole number 0..65535"
    )


def test_setting_given_twice_in_the_file_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "amqp_port = 1\n[listeners]\namqp = 2\n")
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 3: listeners.amqp repeats amqp_port; keep only one"
    )


def test_unparsable_file_names_its_line(tmp_path: Path) -> None:
    file = write(tmp_path, "amqp_port = 5673\nmqtt_port 1884\n")
    assert config_error({}, {}, file) == (
        f"rapidmq: config file {file} line 2: not valid TOML: "
        "Expected '=' after a key in a key/value pair"
    )


def test_missing_file_names_where_it_was_given(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    assert config_error({}, {}, missing) == (
        f"rapidmq: config file {missing} not found; fix --config"
    )
    assert config_error({}, {"RAPIDMQ_CONFIG": missing}, None) == (
        f"rapidmq: config file {missing} not found; fix RAPIDMQ_CONFIG"
    )


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('default_pass = "caf\xe9"\n'.encode("latin-1"))
    assert config_error({}, {}, str(path)) == (
        f"rapidmq: config file {path} is not UTF-8 text; fix --config"
    )


def test_two_listeners_on_one_port_are_refused() -> None:
    assert config_error({"mqtt_port": "5672"}, {}, None) == (
        "rapidmq: amqp_port and mqtt_port are both 5672; give one another port (--mqtt-port)"
    )


def test_free_and_off_ports_never_conflict() -> None:
    settings = load_settings({"amqp_port": "0", "mqtt_port": "0", "http_port": "off"}, {}, None)
    assert settings == Settings(amqp_port=0, mqtt_port=0, http_port=None)


def test_unknown_option_is_refused() -> None:
    assert config_error({"amqp": "1"}, {}, None) == "rapidmq: unknown option 'amqp'"


def test_config_error_is_one_prefixed_line() -> None:
    err = ConfigError("first\nsecond  part")
    assert isinstance(err, RapidMQError)
    assert str(err) == "rapidmq: first second part"
    assert str(ConfigError("rapidmq: already prefixed")) == "rapidmq: already prefixed"


def test_configuration_doc_lists_every_setting_as_the_code_defines_it() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = [
        f"| `{info.name}` | "
        + ", ".join(f"`{form}`" for form in info.flag_forms)
        + " | "
        + ", ".join(f"`{name}`" for name in info.env_names)
        + " "
        f"| `{info.show_default()}` | {info.help} |"
        for info in SETTINGS
    ]
    assert [row for row in rows if row not in doc] == []


def test_packaged_example_config_loads_as_documented() -> None:
    example = Path(__file__).parents[2] / "packaging" / "rapidmq.toml"
    assert load_settings({}, {}, str(example)) == Settings(data_dir="/var/lib/rapidmq")


def test_rabbitmq_default_user_pass_and_vhost_variables_set_the_defaults() -> None:
    env = {
        "RABBITMQ_DEFAULT_USER": "admin",
        "RABBITMQ_DEFAULT_PASS": "s3cret",
        "RABBITMQ_DEFAULT_VHOST": "prod",
    }
    settings = load_settings({}, env, None)
    assert (settings.default_user, settings.default_pass, settings.default_vhost) == (
        "admin",
        "s3cret",
        "prod",
    )
    # RabbitMQ's rule: only guest is kept to localhost, so the new user may log in from anywhere.
    assert settings.loopback_users == ("guest",)


def test_rapidmq_variables_win_over_their_rabbitmq_aliases() -> None:
    env = {
        "RABBITMQ_DEFAULT_USER": "admin",
        "RAPIDMQ_DEFAULT_USER": "ops",
        "RABBITMQ_DEFAULT_PASS": "from-rabbitmq",
        "RAPIDMQ_DEFAULT_PASS": "from-rapidmq",
    }
    settings = load_settings({}, env, None)
    assert (settings.default_user, settings.default_pass) == ("ops", "from-rapidmq")


def test_flag_wins_over_a_rabbitmq_alias_and_the_alias_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'default_user = "file-user"\ndefault_vhost = "file-vhost"\n')
    env = {"RABBITMQ_DEFAULT_USER": "env-user", "RABBITMQ_DEFAULT_VHOST": "env-vhost"}
    settings = load_settings({"default_user": "flag-user"}, env, path)
    assert (settings.default_user, settings.default_vhost) == ("flag-user", "env-vhost")


def test_empty_rabbitmq_alias_counts_as_unset() -> None:
    assert load_settings({}, {"RABBITMQ_DEFAULT_VHOST": "  "}, None) == Settings()


def test_erlang_cookie_is_noted_as_ignored() -> None:
    assert startup_notes({"RABBITMQ_ERLANG_COOKIE": "secret"}) == [
        "RABBITMQ_ERLANG_COOKIE is set and ignored: RapidMQ nodes do not use an Erlang cookie"
    ]
    assert startup_notes({}) == []


RABBITMQ_CONF_TEXT = """\
# written for RabbitMQ's image
listeners.tcp.default = 5672
management.tcp.port = 15672
load_definitions = /etc/rabbitmq/definitions.json
loopback_users.guest = false
listeners.tcp.default = 5673
"""


def test_rabbitmq_conf_gives_load_definitions_and_lists_the_keys_it_ignores(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, RABBITMQ_CONF_TEXT, "rabbitmq.conf")
    assert read_rabbitmq_conf({}, path) == RabbitMQConf(
        path,
        "/etc/rabbitmq/definitions.json",
        ("listeners.tcp.default", "management.tcp.port", "loopback_users.guest"),
    )
    assert load_settings({}, {}, None, rabbitmq_conf=path).load_definitions == (
        "/etc/rabbitmq/definitions.json"
    )
    assert startup_notes({}, path) == [
        f"rabbitmq.conf {path}: only load_definitions is read; ignored "
        "listeners.tcp.default, management.tcp.port, loopback_users.guest"
    ]


def test_rabbitmq_config_file_variable_points_elsewhere_with_or_without_conf(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "management.load_definitions = /defs.json\n", "custom.conf")
    for named in (path, path.removesuffix(".conf")):
        env = {"RABBITMQ_CONFIG_FILE": named}
        settings = load_settings({}, env, None, rabbitmq_conf=str(tmp_path / "absent.conf"))
        assert settings.load_definitions == "/defs.json"


def test_missing_default_rabbitmq_conf_is_no_error(tmp_path: Path) -> None:
    assert read_rabbitmq_conf({}, str(tmp_path / "rabbitmq.conf")) is None
    assert load_settings({}, {}, None, rabbitmq_conf=str(tmp_path / "rabbitmq.conf")) == Settings()
    assert startup_notes({}, str(tmp_path / "rabbitmq.conf")) == []


def test_missing_rabbitmq_config_file_names_the_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.conf")
    assert config_error({}, {"RABBITMQ_CONFIG_FILE": missing}, None) == (
        f"rapidmq: rabbitmq.conf {missing} not found; fix RABBITMQ_CONFIG_FILE or unset it"
    )


def test_rabbitmq_conf_load_definitions_without_a_path_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "# comment\nload_definitions =\n", "rabbitmq.conf")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {}, None, rabbitmq_conf=path)
    assert str(caught.value) == (
        f"rapidmq: rabbitmq.conf {path} line 2: load_definitions has no path; "
        "give the definitions file or remove the line"
    )


def test_rapidmq_load_definitions_wins_over_rabbitmq_conf(tmp_path: Path) -> None:
    path = write(tmp_path, RABBITMQ_CONF_TEXT, "rabbitmq.conf")
    env = {"RAPIDMQ_LOAD_DEFINITIONS": "/srv/mine.json"}
    assert load_settings({}, env, None, rabbitmq_conf=path).load_definitions == "/srv/mine.json"
    flag = {"load_definitions": "/srv/flag.json"}
    assert load_settings(flag, env, None, rabbitmq_conf=path).load_definitions == "/srv/flag.json"


@pytest.mark.parametrize(
    ("name", "accepted"), [("admin", ["admin"]), ("guest", [None])], ids=["admin", "guest"]
)
def test_rabbitmq_default_user_from_elsewhere_is_refused_only_when_named_guest(
    name: str, accepted: list[str | None]
) -> None:
    settings = load_settings(
        {}, {"RABBITMQ_DEFAULT_USER": name, "RABBITMQ_DEFAULT_PASS": "s3cret"}, None
    )
    users = UserStore.with_default_user(settings.default_user, settings.default_pass)
    authenticator = Authenticator.internal(users, loopback_users=settings.loopback_users)
    results: list[LoginResult] = []
    request = LoginRequest("amqp", name, "s3cret", "203.0.113.5", "PLAIN")
    authenticator.login(request, results.append)
    assert [None if r.user is None else r.user.name for r in results] == accepted
