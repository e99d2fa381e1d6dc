"""``/api/definitions``: export and import of the broker's topology, in RabbitMQ's format.

A definitions file is how operators move a broker's users, vhosts, grants and
topology between nodes, and between RabbitMQ and RapidMQ; so the shapes here are
RabbitMQ 3.10's, key for key, and password hashes travel unchanged (both sides
use ``rabbit_password_hashing_sha256``).

Export lists what RabbitMQ 3.10 lists: every queue and exchange a client
declared, durable or not, but never an exclusive queue (it dies with its
connection, and another node could not own it), never the default exchange or
an ``amq.*`` one, and no default-exchange binding (those are implicit).

Import only adds and updates: nothing is deleted, and an exchange or queue that
already exists is left as it is (RabbitMQ does the same, without an equivalence
check), so importing the same file twice is harmless.  It goes through the same
calls a client's declare takes, on an internal connection that opens and closes
within the request, so durable objects are recorded in the metadata store and
survive a restart.  Vhost limits travel as RabbitMQ's ``vhost-limits`` runtime
parameter and user limits in each user's ``limits``, both ways.  Policies
travel in ``policies`` both ways (RabbitMQ 3.10 exports no operator policies,
and neither does RapidMQ); they are imported before the queues and exchanges,
so those start with their policies applied.  Sections RapidMQ has no
counterpart for (other runtime parameters) are accepted and named in one
warning, so a file from a RabbitMQ node imports without hand editing.  Each
change an import makes is an audit event.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq import __version__
from rapidmq.admin.auth import require_administrator, server_of
from rapidmq.admin.policies import exported_policies, policy_from_json
from rapidmq.admin.resources import management_session
from rapidmq.admin.util import ApiError, bad_request, flag, no_content, path_name, respond
from rapidmq.audit import audit
from rapidmq.auth.limits import USER_LIMITS, VHOST_LIMITS
from rapidmq.auth.permissions import Permission, TopicPermission
from rapidmq.auth.users import HASHING_ALGORITHM, User, hash_password
from rapidmq.core.errors import NotFound
from rapidmq.core.exchange import Exchange

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue
    from rapidmq.core.session import Session
    from rapidmq.core.vhost import VirtualHost
    from rapidmq.server import Server

__all__ = [
    "ROUTES",
    "export_definitions",
    "export_vhost_definitions",
    "import_definitions",
    "limit_parameters",
    "parse_definitions",
]

log = logging.getLogger("rapidmq.admin")

#: Top-level keys that describe the file rather than the broker: read and dropped.
_INFORMATIONAL = frozenset(
    {"rabbit_version", "rabbitmq_version", "product_name", "product_version"}
)
_BROKER_SECTIONS = ("users", "vhosts", "permissions", "topic_permissions")
_VHOST_SECTIONS = ("policies", "exchanges", "queues", "bindings")
#: Sections of RabbitMQ's format RapidMQ has nothing to apply to.
_UNSUPPORTED_SECTIONS = ("parameters", "global_parameters")


# -- export ------------------------------------------------------------------------------


def _exported_queues(vhost: VirtualHost) -> list[Queue]:
    return sorted((q for q in vhost.queues.values() if q.owner is None), key=lambda q: q.name)


def _exported_exchanges(vhost: VirtualHost) -> list[Exchange]:
    return sorted(
        (x for x in vhost.exchanges.values() if x.name and not x.name.startswith("amq.")),
        key=lambda x: x.name,
    )


def _exported_bindings(vhost: VirtualHost) -> list[dict[str, Any]]:
    out = []
    for exchange in sorted(vhost.exchanges.values(), key=lambda x: x.name):
        if not exchange.name:
            continue  # default-exchange bindings are implicit on every node
        for binding in exchange.bindings_out.values():
            destination = binding.destination
            to_exchange = isinstance(destination, Exchange)
            if not to_exchange and destination.owner is not None:
                continue  # the exclusive queue is not exported, so neither is its binding
            out.append(
                {
                    "source": exchange.name,
                    "vhost": vhost.name,
                    "destination": destination.name,
                    "destination_type": "exchange" if to_exchange else "queue",
                    "routing_key": binding.routing_key,
                    "arguments": dict(binding.arguments),
                }
            )
    out.sort(key=lambda b: (b["source"], b["destination_type"], b["destination"]))
    return out


def _topology(vhosts: list[VirtualHost]) -> dict[str, list[dict[str, Any]]]:
    queues = [
        {
            "name": q.name,
            "vhost": vhost.name,
            "durable": q.durable,
            "auto_delete": q.auto_delete,
            "arguments": dict(q.arguments),
        }
        for vhost in vhosts
        for q in _exported_queues(vhost)
    ]
    exchanges = [
        {
            "name": x.name,
            "vhost": vhost.name,
            "type": x.type,
            "durable": x.durable,
            "auto_delete": x.auto_delete,
            "internal": x.internal,
            "arguments": dict(x.arguments),
        }
        for vhost in vhosts
        for x in _exported_exchanges(vhost)
    ]
    bindings = [b for vhost in vhosts for b in _exported_bindings(vhost)]
    return {"queues": queues, "exchanges": exchanges, "bindings": bindings}


def export_definitions(server: Server) -> dict[str, Any]:
    """Everything, in the shape of RabbitMQ 3.10's ``GET /api/definitions``."""
    vhosts = sorted(server.broker.vhosts(), key=lambda v: v.name)
    topology = _topology(vhosts)
    return {
        "rabbit_version": __version__,
        "rabbitmq_version": __version__,
        "product_name": "RapidMQ",
        "product_version": __version__,
        "users": [
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(user.tags),
                "limits": server.limits.user_limits(user.name),
            }
            for user in server.users
        ],
        "vhosts": [
            {
                "name": vhost.name,
                "description": vhost.description,
                "tags": list(vhost.tags),
                "metadata": {"description": vhost.description, "tags": list(vhost.tags)},
            }
            for vhost in vhosts
        ],
        "permissions": [
            {
                "user": p.user,
                "vhost": p.vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for p in sorted(server.permissions, key=lambda p: (p.vhost, p.user))
        ],
        "topic_permissions": [
            {
                "user": t.user,
                "vhost": t.vhost,
                "exchange": t.exchange,
                "write": t.write,
                "read": t.read,
            }
            for t in sorted(
                server.permissions.topic_permissions(),
                key=lambda t: (t.vhost, t.user, t.exchange),
            )
        ],
        "parameters": limit_parameters(server, vhosts),
        "global_parameters": [{"name": "cluster_name", "value": server.cluster_name}],
        "policies": exported_policies(vhosts),
        **topology,
    }


def limit_parameters(server: Server, vhosts: list[VirtualHost]) -> list[dict[str, Any]]:
    """Vhost limits as RabbitMQ exports them: the runtime parameter ``vhost-limits``."""
    out = []
    for vhost in vhosts:
        limits = server.limits.vhost_limits(vhost.name)
        if limits:
            out.append(
                {
                    "value": limits,
                    "vhost": vhost.name,
                    "component": "vhost-limits",
                    "name": "limits",
                }
            )
    return out


def export_vhost_definitions(vhost: VirtualHost) -> dict[str, Any]:
    """One vhost, in the shape of RabbitMQ 3.10's ``GET /api/definitions/{vhost}``.

    The per-vhost shape carries no vhost names, so the file imports into a vhost
    of any name.
    """
    topology = _topology([vhost])
    for items in topology.values():
        for item in items:
            del item["vhost"]
    # RabbitMQ 3.10 keeps the vhost in each policy of a per-vhost export.
    policies = exported_policies([vhost])
    return {"rabbit_version": __version__, "parameters": [], "policies": policies, **topology}


def _totals(body: dict[str, Any]) -> str:
    return ", ".join(
        f"{len(body[key])} {key}" for key in (*_BROKER_SECTIONS, *_VHOST_SECTIONS) if key in body
    )


async def get_definitions(request: Request) -> Response:
    user = require_administrator(request)
    body = export_definitions(server_of(request))
    log.info("definitions exported by %s: %s", user.name, _totals(body))
    return respond(body)


async def get_vhost_definitions(request: Request) -> Response:
    user = require_administrator(request)
    name = path_name(request, "vhost")
    vhost = server_of(request).broker.vhost(name)
    if vhost is None:
        raise bad_request("vhost_not_found")  # RabbitMQ 3.10 answers 400 here, not 404
    body = export_vhost_definitions(vhost)
    body["parameters"] = limit_parameters(server_of(request), [vhost])
    log.info("definitions of vhost %s exported by %s: %s", name, user.name, _totals(body))
    return respond(body)


# -- reading an uploaded file ------------------------------------------------------------


def _uploaded_file(content_type: str, raw: bytes) -> bytes:
    """The ``file`` field of a ``multipart/form-data`` body, as the web UI uploads it."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if message.is_multipart():
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload
    raise bad_request("failed_to_parse_json")


def parse_definitions(raw: bytes) -> dict[str, Any]:
    """A definitions document; empty input is an empty file, as RabbitMQ takes it.

    Raises:
        ValueError: not UTF-8 JSON, or not a JSON object at the top.
    """
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    return data


async def _read_definitions(request: Request) -> dict[str, Any]:
    """The posted definitions."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        raw = _uploaded_file(content_type, raw)
    try:
        return parse_definitions(raw)
    except ValueError:  # a JSONDecodeError or a UnicodeDecodeError
        raise bad_request("failed_to_parse_json") from None


# -- validating --------------------------------------------------------------------------


def _section(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise bad_request(f"'{key}' must be a list of objects")
    return value


def _text(item: dict[str, Any], field: str, section: str, default: str | None = None) -> str:
    value = item.get(field, default)
    if not isinstance(value, str):
        raise bad_request(f"{section}: '{field}' must be a string in {json.dumps(item)}")
    return value


def _arguments(item: dict[str, Any], section: str) -> dict[str, Any]:
    value = item.get("arguments")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{section}: 'arguments' must be an object in {json.dumps(item)}")
    return value


def _tags(value: Any, section: str) -> tuple[str, ...] | None:
    """Tags as a list (RabbitMQ 3.10's export) or a comma-separated string (older ones)."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(tag.strip() for tag in value.split(",") if tag.strip())
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return tuple(value)
    raise bad_request(f"{section}: 'tags' must be a list or a comma-separated string")


# -- applying ----------------------------------------------------------------------------


class _Import:
    """One import: applies sections in dependency order and counts what it did."""

    def __init__(self, server: Server, actor: str) -> None:
        self.server = server
        self.actor = actor
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []
        self._sessions: dict[str, Session] = {}
        self._stack = ExitStack()

    def _count(self, section: str) -> None:
        self.counts[section] = self.counts.get(section, 0) + 1

    def skip(self, what: str) -> None:
        self.skipped.append(what)

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Close every internal connection opened, whatever happens in between."""
        with ExitStack() as stack:
            self._stack = stack
            try:
                yield
            finally:
                self._sessions.clear()

    def _session(self, vhost: str, section: str) -> Session:
        session = self._sessions.get(vhost)
        if session is None:
            if self.server.broker.vhost(vhost) is None:
                raise bad_request(f"{section}: vhost '{vhost}' does not exist")
            session = self._stack.enter_context(
                management_session(self.server.broker, vhost, self.actor, full_access=True)
            )
            self._sessions[vhost] = session
        return session

    def _require_vhost(self, vhost: str, section: str) -> None:
        if self.server.broker.vhost(vhost) is None:
            raise bad_request(f"{section}: vhost '{vhost}' does not exist")

    def vhosts(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            name = _text(item, "name", "vhosts")
            metadata = item.get("metadata")
            metadata = metadata if isinstance(metadata, dict) else {}
            description = item.get("description", metadata.get("description"))
            if description is not None and not isinstance(description, str):
                raise bad_request("vhosts: 'description' must be a string")
            tags = _tags(item.get("tags", metadata.get("tags")), "vhosts")
            existed = self.server.broker.vhost(name) is not None
            self.server.broker.add_vhost(name, description=description, tags=tags)
            self._count("vhosts")
            self._audit(
                f"vhost.{'changed' if existed else 'created'}", f"vhost '{name}'", vhost=name
            )
            limits = item.get("limits")
            if isinstance(limits, dict):
                self._limits("vhost", name, limits)

    def users(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            name = _text(item, "name", "users")
            tags = _tags(item.get("tags"), "users")
            existing = self.server.users.get(name)
            if "password_hash" in item:
                password_hash = _text(item, "password_hash", "users")
                algorithm = item.get("hashing_algorithm", HASHING_ALGORITHM)
                if algorithm != HASHING_ALGORITHM:
                    log.warning(
                        "definitions: user %s has a %s password hash, which RapidMQ "
                        "cannot check: the user cannot log in by password",
                        name,
                        algorithm,
                    )
            elif "password" in item:
                password_hash = hash_password(_text(item, "password", "users"))
            else:
                password_hash = existing.password_hash if existing is not None else ""
            if tags is None:
                tags = existing.tags if existing is not None else ()
            self.server.users.put(User(name, password_hash, tags))
            self._count("users")
            change = "changed" if existing is not None else "created"
            self._audit(f"user.{change}", f"user '{name}'", user=name, tags=list(tags))
            limits = item.get("limits")
            if isinstance(limits, dict):
                self._limits("user", name, limits)

    def _audit(self, event: str, what: str, **fields: Any) -> None:
        verb = event.rsplit(".", 1)[1]
        audit(
            event,
            f"{what} {verb} by user '{self.actor}' (definitions import)",
            actor=self.actor,
            **fields,
        )

    def _limits(self, kind: str, name: str, limits: dict[str, Any]) -> None:
        """Apply a vhost's or user's limits from a file; unknown names are skipped."""
        known = VHOST_LIMITS if kind == "vhost" else USER_LIMITS
        for limit, value in limits.items():
            if limit not in known or isinstance(value, bool) or not isinstance(value, int):
                self.skip(f"limit {limit} of {kind} {name}")
                continue
            if kind == "vhost":
                self._require_vhost(name, "parameters")
                self.server.limits.set_vhost_limit(name, limit, value)
            else:
                self.server.limits.set_user_limit(name, limit, value)
            self._count("limits")
            self._audit(
                "limit.set",
                f"limit {limit} of {kind} '{name}' set to {value}",
                limit=limit,
                value=value,
                **{kind: name},
            )

    def vhost_limits(self, body: dict[str, Any], vhost: str | None) -> None:
        """The ``vhost-limits`` runtime parameters: the vhost limits of RabbitMQ's files."""
        for item in _section(body, "parameters"):
            if item.get("component") != "vhost-limits" or not isinstance(item.get("value"), dict):
                continue
            where = vhost if vhost is not None else _text(item, "vhost", "parameters")
            self._limits("vhost", where, item["value"])

    def _grant_ends(self, item: dict[str, Any], section: str) -> tuple[str, str]:
        user = _text(item, "user", section)
        vhost = _text(item, "vhost", section)
        if self.server.users.get(user) is None:
            raise bad_request(f"{section}: user '{user}' does not exist")
        self._require_vhost(vhost, section)
        return user, vhost

    def permissions(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            user, vhost = self._grant_ends(item, "permissions")
            patterns = [_text(item, key, "permissions") for key in ("configure", "write", "read")]
            self.server.permissions.set(Permission(user, vhost, *patterns))
            self._count("permissions")
            self._audit(
                "permission.set",
                f"permissions of user '{user}' in vhost '{vhost}'",
                user=user,
                vhost=vhost,
                configure=patterns[0],
                write=patterns[1],
                read=patterns[2],
            )

    def topic_permissions(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            user, vhost = self._grant_ends(item, "topic_permissions")
            exchange = _text(item, "exchange", "topic_permissions")
            write = _text(item, "write", "topic_permissions")
            read = _text(item, "read", "topic_permissions")
            self.server.permissions.set_topic(TopicPermission(user, vhost, exchange, write, read))
            self._count("topic_permissions")
            self._audit(
                "topic_permission.set",
                f"topic permissions of user '{user}' in vhost '{vhost}' on exchange '{exchange}'",
                user=user,
                vhost=vhost,
                exchange=exchange,
                write=write,
                read=read,
            )

    def policies(self, items: list[dict[str, Any]], vhost: str | None) -> None:
        for item in items:
            where = vhost if vhost is not None else _text(item, "vhost", "policies")
            name = _text(item, "name", "policies")
            host = self.server.broker.vhost(where)
            if host is None:
                raise bad_request(f"policies: vhost '{where}' does not exist")
            host.set_policy(policy_from_json(where, name, item, operator=False))
            self._count("policies")
            self._audit(
                "policy.set", f"policy '{name}' in vhost '{where}'", vhost=where, policy=name
            )

    def exchanges(self, items: list[dict[str, Any]], vhost: str | None) -> None:
        for item in items:
            where = vhost if vhost is not None else _text(item, "vhost", "exchanges")
            name = _text(item, "name", "exchanges")
            session = self._session(where, "exchanges")
            if name in session.vhost.exchanges:
                continue  # left as it is, as RabbitMQ's import does
            session.declare_exchange(
                name,
                _text(item, "type", "exchanges"),
                durable=flag(item.get("durable"), True),
                auto_delete=flag(item.get("auto_delete")),
                internal=flag(item.get("internal")),
                arguments=_arguments(item, "exchanges"),
            )
            self._count("exchanges")

    def queues(self, items: list[dict[str, Any]], vhost: str | None) -> None:
        for item in items:
            where = vhost if vhost is not None else _text(item, "vhost", "queues")
            name = _text(item, "name", "queues")
            session = self._session(where, "queues")
            if name in session.vhost.queues:
                continue
            session.declare_queue(
                name,
                durable=flag(item.get("durable"), True),
                auto_delete=flag(item.get("auto_delete")),
                arguments=_arguments(item, "queues"),
            )
            self._count("queues")

    def bindings(self, items: list[dict[str, Any]], vhost: str | None) -> None:
        for item in items:
            where = vhost if vhost is not None else _text(item, "vhost", "bindings")
            source = _text(item, "source", "bindings")
            destination = _text(item, "destination", "bindings")
            kind = _text(item, "destination_type", "bindings")
            routing_key = _text(item, "routing_key", "bindings", "")
            arguments = _arguments(item, "bindings")
            if kind not in ("queue", "exchange"):
                raise bad_request(f"bindings: unknown destination_type '{kind}'")
            if source == "":
                continue  # a default-exchange binding: every queue has it already
            session = self._session(where, "bindings")
            try:
                if kind == "queue":
                    session.bind_queue(destination, source, routing_key, arguments)
                else:
                    session.bind_exchange(destination, source, routing_key, arguments)
            except NotFound as err:
                # A file that binds to a missing end is bad input, not a missing URL.
                raise bad_request(f"bindings: {err.text}") from None
            self._count("bindings")

    def unsupported(self, body: dict[str, Any], known: tuple[str, ...]) -> None:
        """Note what the file holds that RapidMQ does not apply; take its cluster name."""
        for key in _UNSUPPORTED_SECTIONS:
            for item in _section(body, key):
                name = item.get("name")
                value = item.get("value")
                if key == "global_parameters" and name == "cluster_name" and value:
                    if not isinstance(value, str):
                        raise bad_request("global_parameters: cluster_name must be a string")
                    self.server.cluster_name = value
                    self._count("global_parameters")
                    continue
                if key == "global_parameters" and name == "internal_cluster_id":
                    continue  # RabbitMQ's own node identity, meaningless elsewhere
                if key == "parameters" and item.get("component") == "vhost-limits":
                    continue  # applied by vhost_limits()
                self.skip(f"{key} {name}")
        for key in body:
            if key not in known and key not in _INFORMATIONAL and key not in _UNSUPPORTED_SECTIONS:
                self.skip(f"section {key}")

    def report(self, scope: str) -> None:
        done = ", ".join(f"{n} {section}" for section, n in self.counts.items()) or "nothing"
        log.info("definitions imported%s by %s: %s", scope, self.actor, done)
        if self.skipped:
            log.warning(
                "definitions import skipped what RapidMQ does not support: %s",
                "; ".join(self.skipped),
            )


def import_definitions(server: Server, body: dict[str, Any], actor: str) -> None:
    """Apply a whole-broker definitions document, as ``POST /api/definitions`` does.

    Raises:
        ApiError: a section is malformed or refers to what does not exist; what was
            applied before it stays applied, as in RabbitMQ.
    """
    sections = {key: _section(body, key) for key in (*_BROKER_SECTIONS, *_VHOST_SECTIONS)}
    job = _Import(server, actor)
    job.unsupported(body, (*_BROKER_SECTIONS, *_VHOST_SECTIONS))
    with job.connected():
        job.vhosts(sections["vhosts"])
        job.vhost_limits(body, None)
        job.users(sections["users"])
        job.permissions(sections["permissions"])
        job.topic_permissions(sections["topic_permissions"])
        job.policies(sections["policies"], None)
        job.exchanges(sections["exchanges"], None)
        job.queues(sections["queues"], None)
        job.bindings(sections["bindings"], None)
    job.report("")


async def post_definitions(request: Request) -> Response:
    user = require_administrator(request)
    import_definitions(server_of(request), await _read_definitions(request), user.name)
    return no_content()


async def post_vhost_definitions(request: Request) -> Response:
    user = require_administrator(request)
    name = path_name(request, "vhost")
    server = server_of(request)
    if server.broker.vhost(name) is None:
        raise ApiError(404, "not_found", "vhost_not_found")  # RabbitMQ 3.10's body
    body = await _read_definitions(request)
    sections = {key: _section(body, key) for key in _VHOST_SECTIONS}
    job = _Import(server, user.name)
    job.unsupported(body, _VHOST_SECTIONS)
    with job.connected():
        job.vhost_limits(body, name)
        job.policies(sections["policies"], name)
        job.exchanges(sections["exchanges"], name)
        job.queues(sections["queues"], name)
        job.bindings(sections["bindings"], name)
    job.report(f" into vhost {name}")
    return no_content()


ROUTES: list[BaseRoute] = [
    Route("/api/definitions", get_definitions, methods=["GET"]),
    Route("/api/definitions", post_definitions, methods=["POST"]),
    Route("/api/definitions/{vhost}", get_vhost_definitions, methods=["GET"]),
    Route("/api/definitions/{vhost}", post_vhost_definitions, methods=["POST"]),
]
