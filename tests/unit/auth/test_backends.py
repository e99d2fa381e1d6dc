"""The login chain: order, fall-through, loopback users, the limiter, audit, deferred logins."""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import anyio
import pytest

from rapidmq.auth.backends import (
    RATE_LIMITED,
    Authenticator,
    InternalBackend,
    LoginRequest,
    LoginResult,
    build_authenticator,
    certificate_common_name,
)
from rapidmq.auth.limiter import LoginLimiter
from rapidmq.auth.users import User, UserStore
from rapidmq.config import Settings, load_settings


def store(**users: str) -> UserStore:
    s = UserStore()
    for name, password in users.items():
        s.add_user(name, password, tags=("management",))
    return s


def req(user: str, password: str | None, address: str = "127.0.0.1") -> LoginRequest:
    return LoginRequest("amqp", user, password, address)


class SlowBackend:
    """A backend that must block: it answers from a worker thread, as LDAP does."""

    name = "slow"

    def __init__(self, accept: dict[str, str]) -> None:
        self.accept = accept
        self.threads: list[str] = []
        self.asked = 0

    def decide(self, request: LoginRequest) -> LoginResult | None:
        return None

    def check_blocking(self, request: LoginRequest) -> LoginResult:
        self.asked += 1
        self.threads.append(threading.current_thread().name)
        if self.accept.get(request.username) == request.password:
            return LoginResult(User(request.username, "", ("monitoring",)), backend=self.name)
        return LoginResult(None, "no", self.name)

    def remember(self, request: LoginRequest, result: LoginResult) -> None:
        pass


def decide_now(auth: Authenticator, request: LoginRequest) -> LoginResult:
    results: list[LoginResult] = []
    auth.login(request, results.append)
    assert len(results) == 1, "an internal login is decided before login() returns"
    return results[0]


def test_the_first_backend_that_accepts_wins_and_refusals_fall_through() -> None:
    first, second = store(alice="a1"), store(alice="a2", bob="b")
    auth = Authenticator([InternalBackend(lambda: first), InternalBackend(lambda: second)])
    assert decide_now(auth, req("alice", "a1")).user == first.get("alice")
    assert decide_now(auth, req("alice", "a2")).user == second.get("alice")
    assert decide_now(auth, req("bob", "b")).accepted
    refused = decide_now(auth, req("bob", "wrong"))
    assert refused.user is None
    assert refused.reason.count("failed to log in") == 2  # both backends were asked


def test_a_certificate_login_needs_an_existing_user_and_no_password() -> None:
    users = store(alice="secret")
    auth = Authenticator([InternalBackend(lambda: users)])
    assert decide_now(auth, req("alice", None)).accepted
    assert "does not exist" in decide_now(auth, req("mallory", None)).reason


def test_loopback_users_are_refused_from_elsewhere() -> None:
    users = store(guest="guest")
    auth = Authenticator([InternalBackend(lambda: users)], loopback_users=("guest",))
    assert decide_now(auth, req("guest", "guest", "127.0.0.1")).accepted
    refused = decide_now(auth, req("guest", "guest", "203.0.113.9"))
    assert refused.reason == "user 'guest' may only connect via localhost"


def test_the_limiter_refuses_without_asking_any_backend() -> None:
    slow = SlowBackend({})
    users = store(alice="secret")
    auth = Authenticator(
        [InternalBackend(lambda: users), slow], limiter=LoginLimiter(2), record=False
    )
    assert decide_now(auth, req("alice", "secret", "198.51.100.1")).accepted
    auth.backends = (InternalBackend(lambda: users),)  # decided at once from here on
    for _ in range(2):
        assert not decide_now(auth, req("alice", "bad", "198.51.100.1")).accepted
    blocked = decide_now(auth, req("alice", "secret", "198.51.100.1"))
    assert (blocked.user, blocked.reason) == (None, RATE_LIMITED)
    assert decide_now(auth, req("alice", "secret", "198.51.100.2")).accepted


def test_logins_are_audited_without_the_password(caplog: pytest.LogCaptureFixture) -> None:
    users = store(alice="Very-Secret-7")
    auth = Authenticator([InternalBackend(lambda: users)])
    with caplog.at_level(logging.INFO, logger="rapidmq.audit"):
        decide_now(auth, req("alice", "Very-Secret-7"))
        decide_now(auth, req("alice", "Wrong-Secret-8"))
    records = [r for r in caplog.records if r.name == "rapidmq.audit"]
    assert [getattr(r, "event") for r in records] == ["login.succeeded", "login.failed"]  # noqa: B009
    failed = records[1]
    assert (failed.levelno, getattr(failed, "user"), getattr(failed, "protocol")) == (  # noqa: B009
        logging.WARNING,
        "alice",
        "amqp",
    )
    assert getattr(failed, "client_address") == "127.0.0.1"  # noqa: B009
    assert "failed to log in" in getattr(failed, "reason")  # noqa: B009
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        assert "Very-Secret-7" not in text and "Wrong-Secret-8" not in text


@pytest.mark.anyio
async def test_a_blocking_backend_answers_later_on_the_event_loop() -> None:
    slow = SlowBackend({"carol": "c"})
    auth = Authenticator([InternalBackend(lambda: store()), slow])
    loop_thread = threading.current_thread().name
    results: list[tuple[LoginResult, str]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(auth.run)
        auth.login(
            req("carol", "c"), lambda r: results.append((r, threading.current_thread().name))
        )
        assert results == []  # not decided yet: the job waits for a worker thread
        assert auth.pending == 1
        with anyio.fail_after(5):
            while not results:
                await anyio.sleep(0.01)
        direct = await auth.authenticate(req("carol", "wrong"))
        tg.cancel_scope.cancel()
    result, thread = results[0]
    assert result.user == User("carol", "", ("monitoring",))
    assert thread == loop_thread  # the callback runs on the loop, not in the worker
    assert slow.threads and all(t != loop_thread for t in slow.threads)
    assert direct.user is None
    assert auth.pending == 0


def test_the_common_name_of_a_certificate_is_the_user_name() -> None:
    cert: dict[str, Any] = {
        "subject": ((("countryName", "NL"),), (("commonName", "alice"),)),
        "issuer": ((("commonName", "RapidMQ test CA"),),),
    }
    assert certificate_common_name(cert) == "alice"
    assert certificate_common_name({"subject": ((("organizationName", "x"),),)}) is None
    assert certificate_common_name(None) is None


def test_the_chain_follows_auth_backends() -> None:
    users = store()
    settings = load_settings(
        {"auth_backends": "ldap,internal", "ldap_servers": "ldap.example.com"}, {}, None
    )
    auth = build_authenticator(settings, lambda: users, LoginLimiter(5))
    assert [b.name for b in auth.backends] == ["ldap", "internal"]
    assert auth.limiter.limit == 5
    assert [
        b.name for b in build_authenticator(Settings(), lambda: users, auth.limiter).backends
    ] == ["internal"]


# -- the LDAP backend without a directory ---------------------------------------------------

ldap = pytest.importorskip("rapidmq.auth.ldap")


def ldap_backend(**config: Any) -> Any:
    now = [0.0]
    options: dict[str, Any] = {
        "servers": ("ldap.example.com",),
        "user_dn_pattern": "cn=${username}",
    }
    options.update(config)
    backend = ldap.LdapBackend(ldap.LdapConfig(**options), clock=lambda: now[0])
    return backend, now


def test_an_empty_password_or_a_certificate_never_reaches_ldap() -> None:
    backend, _ = ldap_backend()
    empty = backend.decide(req("bob", ""))
    assert empty is not None and not empty.accepted and "empty password" in empty.reason
    by_cert = backend.decide(req("bob", None))
    assert by_cert is not None and not by_cert.accepted
    assert backend.decide(req("bob", "pw")) is None  # a real password must ask the directory
    assert backend.binds == 0


def test_the_cache_keeps_results_for_the_ttl_under_a_salted_hash() -> None:
    backend, now = ldap_backend(cache_ttl_s=60.0)
    accepted = LoginResult(User("bob", "", ()), backend="ldap")
    backend.remember(req("bob", "Pw-123"), accepted)
    assert backend.decide(req("bob", "Pw-123")) is accepted
    assert backend.decide(req("bob", "other")) is None
    assert all("Pw-123" not in repr(key) for key in backend._cache)
    now[0] = 59.9
    assert backend.decide(req("bob", "Pw-123")) is accepted
    now[0] = 60.0
    assert backend.decide(req("bob", "Pw-123")) is None
    # An unreachable directory is not the client's fault: never cached.
    backend.remember(req("bob", "x"), LoginResult(None, "down", "ldap", unavailable=True))
    assert backend.decide(req("bob", "x")) is None
    zero, _ = ldap_backend(cache_ttl_s=0.0)
    zero.remember(req("bob", "Pw-123"), accepted)
    assert zero.decide(req("bob", "Pw-123")) is None


def test_the_options_reach_the_ldap3_server_and_connection() -> None:
    backend, _ = ldap_backend(
        servers=("ldap1", "ldap2"), port=636, use_ssl=True, timeout_s=2.5, ca_file=""
    )
    servers = backend.servers()
    assert [(s.host, s.port, s.ssl) for s in servers] == [
        ("ldap1", 636, True),
        ("ldap2", 636, True),
    ]
    assert all(s.connect_timeout == 2.5 for s in servers)
    tls = servers[0].tls
    assert tls is not None and tls.validate == ssl.CERT_REQUIRED
    assert tls.context.verify_mode == ssl.CERT_REQUIRED and tls.context.check_hostname
    conn = backend.connection(servers[0], "cn=bob", "pw")
    assert conn.receive_timeout == 3  # ldap3 takes whole seconds: rounded up
    assert conn.read_only and conn.user == "cn=bob"
    plain, _ = ldap_backend(use_starttls=False, use_ssl=False)
    assert plain.tls() is None and not plain.servers()[0].ssl
    starttls, _ = ldap_backend(use_starttls=True)
    assert starttls.tls() is not None and not starttls.servers()[0].ssl


def test_group_maps_are_read_from_settings() -> None:
    settings = load_settings(
        {
            "auth_backends": "internal,ldap",
            "ldap_servers": "a, b",
            "ldap_tag_groups": "administrator=cn=admins,dc=x; monitoring=cn=ops,dc=x",
            "ldap_vhost_groups": "/=cn=users,dc=x",
        },
        {},
        None,
    )
    config = ldap.LdapConfig.from_settings(settings)
    assert config.servers == ("a", "b")
    assert config.tag_groups == {"administrator": "cn=admins,dc=x", "monitoring": "cn=ops,dc=x"}
    assert config.vhost_groups == {"/": "cn=users,dc=x"}
    with pytest.raises(ValueError):
        ldap.parse_group_map("administrator")


def test_the_ldap_toml_table_with_a_tag_groups_table(tmp_path: Any) -> None:
    path = tmp_path / "rapidmq.toml"
    path.write_text(
        'auth_backends = ["internal", "ldap"]\n'
        "[ldap]\n"
        'servers = ["ldap.example.com"]\n'
        'user_dn_pattern = "cn=${username},ou=people,dc=example,dc=com"\n'
        "[ldap.tag_groups]\n"
        'administrator = "cn=admins,ou=groups,dc=example,dc=com"\n',
        encoding="utf-8",
    )
    settings = load_settings({}, {}, str(path))
    assert settings.ldap_servers == ("ldap.example.com",)
    assert settings.ldap_tag_groups == "administrator=cn=admins,ou=groups,dc=example,dc=com"
