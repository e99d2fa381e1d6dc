"""LDAP logins against a real slapd: pika, paho and HTTP clients, groups, cache, outage.

slapd runs as a child process (tests/integration/ldap/slapd.py) with the users
and groups of tests/integration/ldap/fixture.ldif; its ``-d stats`` log counts
the binds that reach it.  An outage is simulated with SIGSTOP: the socket still
accepts connections but nothing answers, the worst case for a client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

pytest.importorskip("ldap3")

import pika
import pika.exceptions
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from rapidmq.auth.backends import LoginRequest
from rapidmq.auth.ldap import LdapBackend, LdapConfig
from rapidmq.auth.permissions import Permission
from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1_1,
    ConnAck,
    Connect,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from rapidmq.server import Server
from tests.integration.conftest import serving
from tests.integration.ldap.slapd import Slapd, ensure_slapd
from tests.integration.mqtt_fixtures import MQTTClient
from tests.tls_support import make_pki, openssl_available

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
PATTERN = f"cn=${{username}},{PEOPLE}"
TIMEOUT_S = 1.0


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if not openssl_available():
        return None
    directory = tmp_path_factory.mktemp("ldap-pki")
    make_pki(directory)
    return directory


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory, pki_dir: Path | None) -> Iterator[Slapd]:
    problem = ensure_slapd()
    if problem is not None:
        pytest.skip(f"no slapd for the LDAP tests: {problem}")
    cert = key = None
    if pki_dir is not None:
        cert, key = pki_dir / "server.pem", pki_dir / "server.key"
    server = Slapd(tmp_path_factory.mktemp("slapd"), tls_cert=cert, tls_key=key)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def paused(slapd: Slapd) -> Iterator[Callable[[], None]]:
    """Call it to SIGSTOP slapd; it is resumed after the test whatever happens."""
    yield slapd.pause
    slapd.resume()


def ldap_settings(slapd: Slapd, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "auth_backends": ("internal", "ldap"),
        "ldap_servers": ("127.0.0.1",),
        "ldap_port": slapd.port,
        "ldap_user_dn_pattern": PATTERN,
        "ldap_tag_groups": (f"administrator=cn=admins,{GROUPS};monitoring=cn=ops,{GROUPS}"),
        "ldap_timeout_s": TIMEOUT_S,
        "mqtt_port": 0,
        "http_port": 0,
    }
    settings.update(extra)
    return settings


@pytest.fixture
async def ldap_server(slapd: Slapd, anyio_backend: str) -> AsyncIterator[Server]:
    async with serving(**ldap_settings(slapd)) as srv:
        grant(srv, "alice", "bob", "carol", "dave")
        yield srv


def grant(server: Server, *users: str, vhost: str = "/") -> None:
    for user in users:
        server.permissions.set(Permission(user, vhost))


def port(server: Server, name: str) -> int:
    value = server.ports[name]
    assert value is not None
    return value


def pika_open(
    server: Server, user: str, password: str, vhost: str = "/"
) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port(server, "amqp"),
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=10,
    )
    return pika.BlockingConnection(params)


def pika_login(server: Server, user: str, password: str, vhost: str = "/") -> None:
    """Open and close an AMQP connection (raises what pika raises on refusal)."""
    pika_open(server, user, password, vhost).close()


def paho_login(server: Server, user: str, password: str) -> int:
    """Connect with paho; returns the CONNACK reason code value (0 = accepted)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ldap-{user}-{time.time_ns()}")
    client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port(server, "mqtt"))
    try:
        deadline = time.monotonic() + 10
        while not codes and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
        client.socket() and client.socket().close()  # type: ignore[func-returns-value]
    assert codes, "no CONNACK"
    return codes[0]


def http(server: Server, user: str, password: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port(server, 'http')}", auth=(user, password), timeout=10
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    with anyio.fail_after(timeout_s):
        while not predicate():
            await anyio.sleep(0.02)


# -- logins ---------------------------------------------------------------------------------


async def test_pattern_bind_logs_in_with_pika_paho_and_http(ldap_server: Server) -> None:
    await anyio.to_thread.run_sync(pika_login, ldap_server, "bob", "bob-pw")
    assert await anyio.to_thread.run_sync(paho_login, ldap_server, "bob", "bob-pw") == 0
    async with http(ldap_server, "alice", "alice-pw") as client:
        response = await client.get("/api/whoami")
    assert response.status_code == 200
    assert response.json() == {"name": "alice", "tags": ["administrator"]}


async def test_wrong_password_is_refused_by_every_protocol(ldap_server: Server) -> None:
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        await anyio.to_thread.run_sync(pika_login, ldap_server, "bob", "not-bob-pw")
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN" in str(
        info.value
    )
    assert await anyio.to_thread.run_sync(paho_login, ldap_server, "bob", "not-bob-pw") == 135
    async with http(ldap_server, "bob", "not-bob-pw") as client:
        response = await client.get("/api/whoami")
    assert response.status_code == 401
    assert response.json() == {"error": "not_authorized", "reason": "Login failed"}


def pika_update_secret(server: Server, user: str, password: str, secret: str) -> str:
    """Log in, update the secret, then use the connection: "ok", or the broker's refusal."""
    conn = pika_open(server, user, password)
    try:
        conn.update_secret(secret, "rotation")
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", queue, b"m")
        _method, _props, body = ch.basic_get(queue, auto_ack=True)
        assert body == b"m"
    except pika.exceptions.ConnectionClosedByBroker as err:
        return f"{err.reply_code} {err.reply_text}"
    conn.close()
    return "ok"


async def test_update_secret_is_checked_by_the_directory(ldap_server: Server) -> None:
    assert (
        await anyio.to_thread.run_sync(pika_update_secret, ldap_server, "bob", "bob-pw", "bob-pw")
        == "ok"
    )
    assert (
        await anyio.to_thread.run_sync(
            pika_update_secret, ldap_server, "bob", "bob-pw", "not-bob-pw"
        )
        == "530 NOT_ALLOWED - New secret was refused by one of the backends"
    )


async def test_an_empty_password_is_refused_without_any_bind(
    ldap_server: Server, slapd: Slapd
) -> None:
    async with http(ldap_server, "bob", "bob-pw") as client:
        assert (await client.get("/api/whoami")).status_code == 401  # bob has no tag
    await wait_for(lambda: slapd.binds() > 0)
    before = slapd.binds()
    async with http(ldap_server, "bob", "") as client:
        response = await client.get("/api/whoami")
    assert response.status_code == 401
    assert await anyio.to_thread.run_sync(paho_login, ldap_server, "bob", "") == 135
    await anyio.sleep(0.3)  # slapd logs a bind within milliseconds
    assert slapd.binds() == before


async def test_group_tags_decide_what_the_management_api_allows(ldap_server: Server) -> None:
    async with http(ldap_server, "alice", "alice-pw") as admin:
        users = await admin.get("/api/users")
    assert users.status_code == 200
    async with http(ldap_server, "dave", "dave-pw") as monitor:
        assert (await monitor.get("/api/whoami")).json()["tags"] == ["monitoring"]
        assert (await monitor.get("/api/users")).status_code == 401
    async with http(ldap_server, "bob", "bob-pw") as plain:
        response = await plain.get("/api/overview")
    assert response.status_code == 401
    assert response.json()["reason"] == "Not management user"


async def test_search_then_bind_finds_the_dn_and_never_matches_filter_syntax(
    slapd: Slapd, anyio_backend: str
) -> None:
    settings = ldap_settings(
        slapd,
        ldap_user_dn_pattern="",
        ldap_dn_lookup_base=PEOPLE,
        ldap_dn_lookup_attribute="uid",
        ldap_dn_lookup_bind_dn="cn=rapidmq,ou=services,dc=example,dc=com",
        ldap_dn_lookup_bind_password="service-pw",
    )
    async with serving(**settings) as server:
        grant(server, "bob")
        await anyio.to_thread.run_sync(pika_login, server, "bob", "bob-pw")
        for name in ("*)(uid=*", "*", "bo*"):
            result = await server.authenticator.authenticate(
                LoginRequest("amqp", name, "bob-pw", "127.0.0.1")
            )
            assert result.user is None
            assert f"user '{name}' not found in LDAP" in result.reason
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            await anyio.to_thread.run_sync(pika_login, server, "*)(uid=*", "bob-pw")


async def test_a_vhost_group_admits_only_its_members(slapd: Slapd, anyio_backend: str) -> None:
    settings = ldap_settings(slapd, ldap_vhost_groups=f"restricted=cn=restricted-users,{GROUPS}")
    async with serving(**settings) as server:
        server.broker.add_vhost("restricted")
        grant(server, "bob", "carol", vhost="restricted")
        grant(server, "bob")
        await anyio.to_thread.run_sync(pika_login, server, "carol", "carol-pw", "restricted")
        await anyio.to_thread.run_sync(pika_login, server, "bob", "bob-pw", "/")
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
            await anyio.to_thread.run_sync(pika_login, server, "bob", "bob-pw", "restricted")
        assert "(530) \"NOT_ALLOWED - access to vhost 'restricted' refused for user 'bob'\"" in (
            str(info.value)
        )
        stream = await anyio.connect_tcp("127.0.0.1", port(server, "mqtt"))
        client = MQTTClient(stream, MQTT_3_1_1)
        try:
            await client.send(
                Connect(MQTT_3_1_1, "vhost-bob", True, 0, "restricted:bob", b"bob-pw")
            )
            ack = await client.recv()
        finally:
            await client.aclose()
        assert ack == ConnAck(False, 5)


async def test_a_vhost_groups_members_may_use_it_without_a_permission_of_their_own(
    slapd: Slapd, anyio_backend: str
) -> None:
    settings = ldap_settings(slapd, ldap_vhost_groups=f"restricted=cn=restricted-users,{GROUPS}")
    async with serving(**settings) as server:
        server.broker.add_vhost("restricted")
        assert server.permissions.get("carol", "restricted") is None
        # carol is in the group: it gives her the vhost, with every permission there.
        await anyio.to_thread.run_sync(pika_login, server, "carol", "carol-pw", "restricted")
        granted = server.permissions.get("carol", "restricted")
        assert granted is not None and granted.configure == ".*"
        # bob is not, and holds no permission of his own there either.
        with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
            await anyio.to_thread.run_sync(pika_login, server, "bob", "bob-pw", "restricted")
        assert server.permissions.get("bob", "restricted") is None


# -- the cache and outages -----------------------------------------------------------------


async def test_a_cached_login_needs_no_directory_while_an_uncached_one_times_out(
    ldap_server: Server, slapd: Slapd, paused: Callable[[], None]
) -> None:
    before = slapd.binds()
    for _ in range(5):
        await anyio.to_thread.run_sync(pika_login, ldap_server, "carol", "carol-pw")
    await anyio.sleep(0.3)  # slapd logs a bind within milliseconds
    assert slapd.binds() - before == 1  # only the first login reached the directory
    paused()
    started = time.monotonic()
    await anyio.to_thread.run_sync(pika_login, ldap_server, "carol", "carol-pw")
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        await anyio.to_thread.run_sync(pika_login, ldap_server, "bob", "bob-pw")
    elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 2.0
    # A wrong password for a cached user is no cache hit: it asks the directory, and fails.
    result = await ldap_server.authenticator.authenticate(
        LoginRequest("amqp", "carol", "wrong", "127.0.0.1")
    )
    assert result.user is None and result.unavailable


async def test_an_outage_fails_logins_in_time_and_spares_open_connections(
    ldap_server: Server, paused: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    conn = await anyio.to_thread.run_sync(pika_open, ldap_server, "bob", "bob-pw")
    try:
        paused()
        started = time.monotonic()
        code = await anyio.to_thread.run_sync(paho_login, ldap_server, "alice", "alice-pw")
        assert code == 135
        assert time.monotonic() - started < TIMEOUT_S + 2.0
        assert any("LDAP server unreachable" in r.getMessage() for r in caplog.records)

        def publish_and_consume() -> bytes | None:
            channel = conn.channel()
            channel.queue_declare("ldap-outage", exclusive=True)
            channel.basic_publish("", "ldap-outage", b"still here")
            for _ in range(50):
                _method, _props, body = channel.basic_get("ldap-outage", auto_ack=True)
                if body is not None:
                    return bytes(body)
                time.sleep(0.02)
            return None

        assert await anyio.to_thread.run_sync(publish_and_consume) == b"still here"
    finally:
        await anyio.to_thread.run_sync(conn.close)


async def test_internal_users_log_in_at_once_while_ldap_is_down(
    ldap_server: Server, paused: Callable[[], None]
) -> None:
    paused()
    started = time.monotonic()
    await anyio.to_thread.run_sync(pika_login, ldap_server, "guest", "guest")
    assert time.monotonic() - started < 0.5
    async with http(ldap_server, "guest", "guest") as client:
        started = time.monotonic()
        assert (await client.get("/api/whoami")).status_code == 200
        assert time.monotonic() - started < 0.5


async def test_mqtt_packets_pipelined_behind_connect_wait_for_the_ldap_login(
    ldap_server: Server,
) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", port(ldap_server, "mqtt"))
    client = MQTTClient(stream, MQTT_3_1_1)
    try:
        await client.send(
            Connect(MQTT_3_1_1, "pipelined", True, 0, "alice", b"alice-pw"),
            Subscribe(1, (Subscription("pipe/#", 0),)),
            Publish("pipe/x", b"hello"),
        )
        ack, suback, delivered = await client.recv_many(3)
    finally:
        await client.aclose()
    assert ack == ConnAck(False, 0)
    assert suback == SubAck(1, (0,))
    assert isinstance(delivered, Publish)
    assert (delivered.topic, delivered.payload) == ("pipe/x", b"hello")


# -- LDAPS and StartTLS --------------------------------------------------------------------


def tls_backend(slapd: Slapd, pki: Path, *, ssl: bool, ca: str) -> LdapBackend:
    return LdapBackend(
        LdapConfig(
            servers=("127.0.0.1",),
            port=slapd.ldaps_port if ssl and slapd.ldaps_port else slapd.port,
            use_ssl=ssl,
            use_starttls=not ssl,
            user_dn_pattern=PATTERN,
            timeout_s=TIMEOUT_S,
            ca_file=str(pki / ca),
        )
    )


@pytest.mark.parametrize("use_ssl", [True, False], ids=["ldaps", "starttls"])
def test_ldaps_and_starttls_verify_the_directory_certificate(
    slapd: Slapd, pki_dir: Path | None, use_ssl: bool
) -> None:
    if pki_dir is None or slapd.ldaps_port is None:
        pytest.skip("openssl is needed to make the directory's certificate")
    request = LoginRequest("amqp", "bob", "bob-pw", "127.0.0.1")
    trusted = tls_backend(slapd, pki_dir, ssl=use_ssl, ca="ca.pem")
    accepted = trusted.check_blocking(request)
    assert accepted.user is not None and accepted.user.name == "bob"
    stranger = tls_backend(slapd, pki_dir, ssl=use_ssl, ca="other-ca.pem")
    refused = stranger.check_blocking(request)
    assert refused.user is None and refused.unavailable
