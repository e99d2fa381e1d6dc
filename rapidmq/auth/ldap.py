"""The LDAP authentication backend, as RabbitMQ's ``rabbitmq_auth_backend_ldap``.

A login binds to the directory as the user: the DN is either
``ldap_user_dn_pattern`` with ``${username}`` replaced (the name escaped for a
DN), or found by search-then-bind: bind as the service account, search
``ldap_dn_lookup_base`` for ``(ldap_dn_lookup_attribute=<name>)`` (the name
escaped for a filter, so ``*)(uid=*`` matches nothing), then bind as the DN
found.  Group membership then gives the user's tags (``ldap_tag_groups``) and
the vhosts it may open (``ldap_vhost_groups``; a vhost named there needs
membership, others are left to the internal permissions).

An empty password is refused before any bind: LDAP treats a simple bind with a
DN and no password as an anonymous bind, which "succeeds".

Everything here that talks to the directory is blocking and runs in a worker
thread (see :mod:`rapidmq.auth.backends`); ``ldap_timeout_s`` bounds the
connect and every operation, so an unreachable directory fails the login in
bounded time.  Results (accepted, and refused for bad credentials) are cached
for ``ldap_cache_ttl_s`` under the user name and a salted hash of the password,
never the password itself; an unreachable directory is never cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from rapidmq.auth.backends import LoginRequest, LoginResult
from rapidmq.auth.users import User

if TYPE_CHECKING:
    from rapidmq.config import Settings

__all__ = ["CACHE_MAX_ENTRIES", "LdapBackend", "LdapConfig", "VerifyingTls", "parse_group_map"]

log = logging.getLogger("rapidmq.auth")

CACHE_MAX_ENTRIES = 10_000


def parse_group_map(text: str) -> dict[str, str]:
    """``"tag=group DN;tag=group DN"`` as a dict (DNs hold commas, so ``;`` separates).

    Raises:
        ValueError: an entry without ``=`` or with an empty name or DN.
    """
    out: dict[str, str] = {}
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, dn = entry.partition("=")
        if not sep or not name.strip() or not dn.strip():
            raise ValueError(f"{entry!r} is not NAME=GROUP_DN")
        out[name.strip()] = dn.strip()
    return out


@dataclass(slots=True, frozen=True)
class LdapConfig:
    """The ``ldap_*`` settings, read once."""

    servers: tuple[str, ...]
    port: int = 389
    use_ssl: bool = False
    use_starttls: bool = False
    user_dn_pattern: str = ""
    dn_lookup_base: str = ""
    dn_lookup_attribute: str = ""
    dn_lookup_bind_dn: str = ""
    dn_lookup_bind_password: str = ""
    tag_groups: dict[str, str] = field(default_factory=dict)
    vhost_groups: dict[str, str] = field(default_factory=dict)
    group_member_attribute: str = "member"
    cache_ttl_s: float = 60.0
    timeout_s: float = 5.0
    ca_file: str = ""

    @classmethod
    def from_settings(cls, s: Settings) -> LdapConfig:
        return cls(
            servers=tuple(s.ldap_servers),
            port=s.ldap_port,
            use_ssl=s.ldap_use_ssl,
            use_starttls=s.ldap_use_starttls,
            user_dn_pattern=s.ldap_user_dn_pattern,
            dn_lookup_base=s.ldap_dn_lookup_base,
            dn_lookup_attribute=s.ldap_dn_lookup_attribute,
            dn_lookup_bind_dn=s.ldap_dn_lookup_bind_dn,
            dn_lookup_bind_password=s.ldap_dn_lookup_bind_password,
            tag_groups=parse_group_map(s.ldap_tag_groups),
            vhost_groups=parse_group_map(s.ldap_vhost_groups),
            group_member_attribute=s.ldap_group_member_attribute,
            cache_ttl_s=s.ldap_cache_ttl_s,
            timeout_s=s.ldap_timeout_s,
            ca_file=s.ldap_ca,
        )

    @property
    def search_then_bind(self) -> bool:
        return bool(self.dn_lookup_attribute and self.dn_lookup_base)


class VerifyingTls(ldap3.Tls):
    """ldap3's TLS settings, verified by the standard library's own context.

    ldap3 2.9 checks host names with ``ssl.match_hostname``, deprecated since
    Python 3.7 and gone in 3.12; this context verifies the chain against
    ``ca_file`` (or the system store) and the host name (or IP address) in
    the handshake itself.
    """

    def __init__(self, ca_file: str = "") -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file or None)
        self.context = ssl.create_default_context(cafile=ca_file or None)

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket,
            server_side=False,
            server_hostname=connection.server.host,
            do_handshake_on_connect=do_handshake,
        )


class _Unreachable(Exception):
    """No configured LDAP server answered in time."""


class LdapBackend:
    """Logins checked by binding to an LDAP directory."""

    name = "ldap"

    def __init__(self, config: LdapConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        # A per-process salt: cache keys reveal nothing about passwords even in a dump.
        self._salt = os.urandom(16)
        self._cache: dict[tuple[str, bytes], tuple[float, LoginResult]] = {}
        self._lock = threading.Lock()  # the cache is read on the loop, written from it too
        #: Binds sent to the directory (for operators and the cache benchmark).
        self.binds = 0

    # -- the Backend protocol ------------------------------------------------------------

    def decide(self, request: LoginRequest) -> LoginResult | None:
        if request.password is None:
            return LoginResult(None, "LDAP logins need a password", self.name)
        if request.password == "":
            return LoginResult(None, "empty password refused without a bind", self.name)
        if not self.config.servers:
            return LoginResult(None, "no LDAP server configured (ldap_servers)", self.name)
        if self.config.cache_ttl_s <= 0:
            return None
        key = self._key(request.username, request.password)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                return None
            expires, result = cached
            if self._clock() >= expires:
                del self._cache[key]
                return None
        return result

    def remember(self, request: LoginRequest, result: LoginResult) -> None:
        if result.unavailable or request.password is None or self.config.cache_ttl_s <= 0:
            return
        key = self._key(request.username, request.password)
        now = self._clock()
        with self._lock:
            cache = self._cache
            if len(cache) >= CACHE_MAX_ENTRIES:
                for stale in [k for k, (expires, _) in cache.items() if expires <= now]:
                    del cache[stale]
                while len(cache) >= CACHE_MAX_ENTRIES:
                    del cache[next(iter(cache))]
            cache[key] = (now + self.config.cache_ttl_s, result)

    def forget(self) -> None:
        """Empty the cache (a changed directory takes effect at once)."""
        with self._lock:
            self._cache.clear()

    def check_blocking(self, request: LoginRequest) -> LoginResult:
        """Bind as the user and read the groups; runs in a worker thread."""
        assert request.password
        try:
            return self._check(request.username, request.password)
        except _Unreachable as err:
            log.warning(
                "LDAP server unreachable: %s (login of user '%s' refused)",
                err,
                request.username,
                extra={"event": "auth.ldap_unreachable", "user": request.username},
            )
            return LoginResult(None, f"LDAP server unreachable: {err}", self.name, unavailable=True)
        except LDAPException as err:
            log.warning(
                "LDAP error during the login of user '%s': %s",
                request.username,
                err,
                extra={"event": "auth.ldap_error", "user": request.username},
            )
            return LoginResult(None, f"LDAP error: {err}", self.name, unavailable=True)

    # -- talking to the directory --------------------------------------------------------

    def _key(self, username: str, password: str) -> tuple[str, bytes]:
        digest = hmac.new(self._salt, password.encode("utf-8"), hashlib.sha256).digest()
        return username, digest

    def tls(self) -> VerifyingTls | None:
        """The TLS settings for LDAPS and StartTLS: verify against ``ldap_ca`` if given."""
        c = self.config
        if not (c.use_ssl or c.use_starttls):
            return None
        return VerifyingTls(c.ca_file)

    def servers(self) -> list[ldap3.Server]:
        """One ldap3 Server per configured host, each with the connect timeout."""
        c = self.config
        tls = self.tls()
        return [
            ldap3.Server(
                host,
                port=c.port,
                use_ssl=c.use_ssl,
                tls=tls,
                get_info=ldap3.NONE,
                connect_timeout=c.timeout_s,
            )
            for host in c.servers
        ]

    def connection(self, server: ldap3.Server, dn: str, password: str) -> ldap3.Connection:
        """An unbound connection whose every operation waits at most ``ldap_timeout_s``."""
        return ldap3.Connection(
            server,
            user=dn,
            password=password,
            auto_bind=ldap3.AUTO_BIND_NONE,
            read_only=True,
            # ldap3 sets SO_RCVTIMEO from whole seconds only.
            receive_timeout=max(1, math.ceil(self.config.timeout_s)),
            raise_exceptions=False,
        )

    def _bind(self, dn: str, password: str) -> ldap3.Connection | None:
        """A connection bound as ``dn``, None for bad credentials.

        Tries each server in turn; raises _Unreachable when none answers.
        """
        problems: list[str] = []
        for server in self.servers():
            conn = self.connection(server, dn, password)
            try:
                conn.open()
                if self.config.use_starttls and not conn.start_tls():
                    raise LDAPStartTLSError(f"StartTLS refused: {conn.result}")
                self.binds += 1
                if conn.bind():
                    return conn
            except (LDAPCommunicationError, LDAPStartTLSError, OSError) as err:
                problems.append(f"{server.host}:{server.port}: {err}")
                _discard(conn)
                continue
            conn.unbind()
            return None
        raise _Unreachable("; ".join(problems) or "no server")

    def _check(self, username: str, password: str) -> LoginResult:
        c = self.config
        if c.search_then_bind:
            dn = self._look_up(username)
            if dn is None:
                return LoginResult(None, f"user '{username}' not found in LDAP", self.name)
        elif c.user_dn_pattern:
            dn = c.user_dn_pattern.replace("${username}", escape_rdn(username))
        else:
            return LoginResult(
                None, "set ldap_user_dn_pattern or ldap_dn_lookup_base/attribute", self.name
            )
        conn = self._bind(dn, password)
        if conn is None:
            return LoginResult(None, f"LDAP bind as '{dn}' refused", self.name)
        try:
            tags = tuple(
                tag for tag, group in c.tag_groups.items() if self._member(conn, group, dn)
            )
            members = {
                vhost: self._member(conn, group, dn) for vhost, group in c.vhost_groups.items()
            }
        finally:
            conn.unbind()
        return LoginResult(
            User(username, "", tags),
            backend=self.name,
            denied_vhosts=frozenset(vhost for vhost, member in members.items() if not member),
            granted_vhosts=frozenset(vhost for vhost, member in members.items() if member),
        )

    def _look_up(self, username: str) -> str | None:
        c = self.config
        service = self._bind(c.dn_lookup_bind_dn, c.dn_lookup_bind_password)
        if service is None:
            raise LDAPException("the service account (ldap_dn_lookup_bind_dn) cannot bind")
        try:
            query = f"({c.dn_lookup_attribute}={escape_filter_chars(username)})"
            service.search(c.dn_lookup_base, query, ldap3.SUBTREE, attributes=[], size_limit=2)
            entries = service.response or []
            dns = [str(e["dn"]) for e in entries if e.get("type") == "searchResEntry"]
        finally:
            service.unbind()
        # Two matches mean an ambiguous name: refuse rather than pick one.
        return dns[0] if len(dns) == 1 else None

    def _member(self, conn: ldap3.Connection, group_dn: str, user_dn: str) -> bool:
        attribute = self.config.group_member_attribute
        query = f"({attribute}={escape_filter_chars(user_dn)})"
        if not conn.search(group_dn, query, ldap3.BASE, attributes=[]):
            if conn.result.get("result") not in (0, 32):  # success, noSuchObject
                log.warning("LDAP group %s cannot be read: %s", group_dn, conn.result)
            return False
        return bool(conn.response)


def _discard(conn: ldap3.Connection) -> None:
    """Close a connection that failed half-way (ldap3 leaves a failed TLS socket open)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
