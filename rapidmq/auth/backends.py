"""Logins through a chain of backends, as RabbitMQ's ``auth_backends``.

A login (:class:`LoginRequest`) is tried against each backend in the configured
order; the first that accepts wins and a refusal falls through to the next.
The internal backend is the :class:`~rapidmq.auth.users.UserStore`; the LDAP
backend is :mod:`rapidmq.auth.ldap`.

Why logins may complete later
-----------------------------
The protocol handlers are sans-IO objects driven from the event loop, and an
LDAP bind is a blocking network round trip that may take up to its timeout.
So a handler calls :meth:`Authenticator.login` with a callback.  A login that
can be decided at once (the internal backend, an LDAP cache hit, a refusal by
the rate limiter) calls it before ``login`` returns; otherwise the job goes
into a memory stream read by :meth:`Authenticator.run`, a server task that
runs the blocking backend in a worker thread (at most ``threads`` at a time)
and calls the callback back on the event loop.  The management API, which can
await, uses :meth:`Authenticator.authenticate` instead.

The chain also applies what every protocol shares: the failed-login limiter
(:mod:`rapidmq.auth.limiter`), the loopback-only users, and the audit events
``login.succeeded`` / ``login.failed`` (never with the password).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rapidmq.audit import audit
from rapidmq.auth.limiter import LoginLimiter
from rapidmq.auth.sasl import is_loopback
from rapidmq.auth.users import User, UserStore

if TYPE_CHECKING:
    from rapidmq.config import Settings

__all__ = [
    "RATE_LIMITED",
    "Authenticator",
    "Backend",
    "InternalBackend",
    "LoginDone",
    "LoginRequest",
    "LoginResult",
    "build_authenticator",
    "certificate_common_name",
]

log = logging.getLogger("rapidmq.auth")

RATE_LIMITED = "too many failed logins from this address; try again later"
"""The reason of a login refused by the failed-login limiter."""

MAX_PENDING = 4096
"""Logins that may wait for a worker thread; more are refused at once."""


@dataclass(slots=True, frozen=True)
class LoginRequest:
    """One login attempt.

    ``password`` is None for a certificate login (SASL EXTERNAL, MQTT with a
    client certificate): the name then comes from a verified certificate and
    only its existence is checked.
    """

    protocol: str  # "amqp", "mqtt" or "http"
    username: str
    password: str | None
    client_address: str  # the peer's host, without port
    mechanism: str = "PLAIN"

    @property
    def by_certificate(self) -> bool:
        return self.password is None


@dataclass(slots=True, frozen=True)
class LoginResult:
    """The outcome: ``user`` when accepted, else None with ``reason`` (for the log).

    ``denied_vhosts`` are vhosts this login may not open although permissions
    might allow it (LDAP vhost groups the user is not a member of);
    ``granted_vhosts`` are those its groups give it (LDAP vhost groups it is a
    member of), used where the user holds no permission of its own.
    ``unavailable`` marks a refusal because a backend could not be reached,
    which is not the client's fault and is never cached.
    """

    user: User | None
    reason: str = ""
    backend: str = ""
    denied_vhosts: frozenset[str] = field(default_factory=frozenset)
    granted_vhosts: frozenset[str] = field(default_factory=frozenset)
    unavailable: bool = False

    @property
    def accepted(self) -> bool:
        return self.user is not None

    def may_open(self, vhost: str) -> bool:
        return vhost not in self.denied_vhosts


LoginDone = Callable[[LoginResult], None]


class Backend(Protocol):
    """One link of the chain.

    ``decide`` runs on the event loop and must not block: it returns a result,
    or None when the answer needs ``check_blocking`` (run in a worker thread),
    whose result is then handed to ``remember`` on the event loop.
    """

    name: str

    def decide(self, request: LoginRequest) -> LoginResult | None: ...
    def check_blocking(self, request: LoginRequest) -> LoginResult: ...
    def remember(self, request: LoginRequest, result: LoginResult) -> None: ...


class InternalBackend:
    """The internal user store; always decided at once."""

    name = "internal"

    def __init__(self, users: Callable[[], UserStore]) -> None:
        # A getter: the server replaces its store when it opens the data dir.
        self._users = users

    def decide(self, request: LoginRequest) -> LoginResult:
        users = self._users()
        if request.password is None:
            user = users.get(request.username)
            if user is None:
                return LoginResult(None, f"user '{request.username}' does not exist", self.name)
            return LoginResult(user, backend=self.name)
        user = users.authenticate(request.username, request.password)
        if user is None:
            return LoginResult(
                None,
                f"user '{request.username}' failed to log in using {request.mechanism}",
                self.name,
            )
        return LoginResult(user, backend=self.name)

    def check_blocking(self, request: LoginRequest) -> LoginResult:
        return self.decide(request)

    def remember(self, request: LoginRequest, result: LoginResult) -> None:
        return None


@dataclass(slots=True)
class _Job:
    request: LoginRequest
    start: int
    done: LoginDone
    refusals: list[LoginResult]


class Authenticator:
    """The backend chain with the limiter, loopback-only users and audit."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        limiter: LoginLimiter | None = None,
        loopback_users: Sequence[str] = (),
        threads: int = 8,
        record: bool = True,
    ) -> None:
        if not backends:
            raise ValueError("at least one authentication backend is needed")
        self.backends = tuple(backends)
        self.limiter = limiter if limiter is not None else LoginLimiter(0)
        self.loopback_users = frozenset(loopback_users)
        self.threads = threads
        self.record = record  # audit events; off only for bare connection objects in tests
        #: Told of every accepted login (the server records directory vhost grants).
        self.on_accepted: Callable[[LoginResult], None] | None = None
        # Made when first needed and closed by run(): an unclosed stream warns at exit.
        self._send: MemoryObjectSendStream[_Job] | None = None
        self._receive: MemoryObjectReceiveStream[_Job] | None = None
        self._thread_limiter: anyio.CapacityLimiter | None = None
        #: Logins waiting for a worker thread or running in one.
        self.pending = 0

    @classmethod
    def internal(
        cls, users: UserStore, *, loopback_users: Sequence[str] = (), record: bool = False
    ) -> Authenticator:
        """The internal store alone (connection objects built without a server)."""
        return cls([InternalBackend(lambda: users)], loopback_users=loopback_users, record=record)

    # -- starting a login ----------------------------------------------------------------

    def login(self, request: LoginRequest, done: LoginDone) -> None:
        """Decide ``request`` and call ``done`` with the result: now, or later on the loop."""
        refusals: list[LoginResult] = []
        begun = self._begin(request, refusals)
        if isinstance(begun, LoginResult):
            done(self._finish(request, begun))
            return
        if self._send is None:
            self._open_queue()
        assert self._send is not None
        try:
            self._send.send_nowait(_Job(request, begun, done, refusals))
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            result = LoginResult(None, "too many logins pending", unavailable=True)
            done(self._finish(request, result))
            return
        self.pending += 1

    async def authenticate(self, request: LoginRequest) -> LoginResult:
        """Decide ``request``, awaiting any blocking backend (for callers that can await)."""
        refusals: list[LoginResult] = []
        begun = self._begin(request, refusals)
        if isinstance(begun, LoginResult):
            return self._finish(request, begun)
        self.pending += 1
        try:
            result = await self._continue(request, begun, refusals)
        finally:
            self.pending -= 1
        return self._finish(request, result)

    def _begin(self, request: LoginRequest, refusals: list[LoginResult]) -> LoginResult | int:
        """A result decided on the loop, or the index of the backend that must block."""
        if self.limiter.blocked(request.client_address):
            return LoginResult(None, RATE_LIMITED, "limiter")
        for index, backend in enumerate(self.backends):
            result = backend.decide(request)
            if result is None:
                return index
            if result.accepted:
                return result
            refusals.append(result)
        return _combined(refusals)

    async def _continue(
        self, request: LoginRequest, start: int, refusals: list[LoginResult]
    ) -> LoginResult:
        for backend in self.backends[start:]:
            result = backend.decide(request)  # the cache may have filled meanwhile
            if result is None:
                result = await anyio.to_thread.run_sync(
                    backend.check_blocking,
                    request,
                    limiter=self._threads(),
                    abandon_on_cancel=True,
                )
                backend.remember(request, result)
            if result.accepted:
                return result
            refusals.append(result)
        return _combined(refusals)

    def _threads(self) -> anyio.CapacityLimiter:
        if self._thread_limiter is None:
            self._thread_limiter = anyio.CapacityLimiter(self.threads)
        return self._thread_limiter

    def _finish(self, request: LoginRequest, result: LoginResult) -> LoginResult:
        """Apply the loopback rule, count failures and record the audit event."""
        user = result.user
        if (
            user is not None
            and user.name in self.loopback_users
            and not is_loopback(request.client_address)
        ):
            result = LoginResult(
                None, f"user '{user.name}' may only connect via localhost", result.backend
            )
        if result.accepted:
            if self.on_accepted is not None:
                self.on_accepted(result)
            if self.record:
                audit(
                    "login.succeeded",
                    f"{request.protocol} login of user '{request.username}' "
                    f"from {request.client_address} accepted by {result.backend}",
                    protocol=request.protocol,
                    user=request.username,
                    client_address=request.client_address,
                    mechanism=request.mechanism,
                    backend=result.backend,
                )
            return result
        if result.reason != RATE_LIMITED and not result.unavailable:
            self.limiter.failed(request.client_address)
        if self.record:
            audit(
                "login.failed",
                f"{request.protocol} login of user '{request.username}' "
                f"from {request.client_address} refused: {result.reason}",
                protocol=request.protocol,
                user=request.username,
                client_address=request.client_address,
                mechanism=request.mechanism,
                reason=result.reason,
            )
        return result

    # -- the server task -----------------------------------------------------------------

    def close(self) -> None:
        """Drop the queue of logins waiting for a worker (when no :meth:`run` task ever ran)."""
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()
        self._send = self._receive = None

    def _open_queue(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[_Job](MAX_PENDING)

    async def run(self) -> None:
        """Run queued logins until cancelled (a server task)."""
        if self._receive is None:
            self._open_queue()
        assert self._send is not None and self._receive is not None
        send, receive = self._send, self._receive
        try:
            async with anyio.create_task_group() as tg:
                async for job in receive:
                    tg.start_soon(self._run_job, job)
        finally:
            self._send = self._receive = None
            send.close()
            receive.close()

    async def _run_job(self, job: _Job) -> None:
        try:
            try:
                result = await self._continue(job.request, job.start, job.refusals)
            except Exception as err:  # a backend bug must not take the server down
                log.exception("login of user '%s' failed in a backend", job.request.username)
                result = LoginResult(None, f"internal error: {err}", unavailable=True)
            result = self._finish(job.request, result)
        finally:
            self.pending -= 1
        try:
            job.done(result)
        except Exception:
            log.exception("handling the login result of user '%s'", job.request.username)


def _combined(refusals: list[LoginResult]) -> LoginResult:
    """One refusal for the whole chain: the reasons joined, unavailable if any was."""
    if len(refusals) == 1:
        return refusals[0]
    reason = "; ".join(f"{r.backend}: {r.reason}" for r in refusals)
    return LoginResult(None, reason, "chain", unavailable=any(r.unavailable for r in refusals))


def certificate_common_name(certificate: Any) -> str | None:
    """The subject CN of a verified peer certificate (``ssl.getpeercert()``'s dict).

    RabbitMQ's ``ssl_cert_login_from = common_name``: the CN is the user name.
    """
    if not isinstance(certificate, dict):
        return None
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                return str(value)
    return None


def build_authenticator(
    settings: Settings, users: Callable[[], UserStore], limiter: LoginLimiter
) -> Authenticator:
    """The chain ``settings.auth_backends`` names, in its order."""
    backends: list[Backend] = []
    for name in settings.auth_backends:
        if name == "internal":
            backends.append(InternalBackend(users))
        elif name == "ldap":
            from rapidmq.auth.ldap import LdapBackend, LdapConfig

            backends.append(LdapBackend(LdapConfig.from_settings(settings)))
    return Authenticator(
        backends,
        limiter=limiter,
        loopback_users=settings.loopback_users,
        threads=8,
    )
