"""What the exchange, queue and binding endpoints share.

* :func:`internal_session`: the management API changes the core only through
  the calls a protocol front end makes, on a short-lived internal connection
  that is opened and closed inside one request with no ``await`` in between,
  so no listing ever sees it and exclusivity rules apply to it as to any
  other client.
* :func:`properties_key` and :class:`BindingView`: bindings as RabbitMQ's API
  names and shows them, including the implicit ones of the default exchange.
* :func:`amqp_reason`: RabbitMQ reports a refused publish or get with the AMQP
  channel error text (``404 NOT_FOUND - …``), as its own AMQP client saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from starlette.requests import Request

from rapidmq.admin.auth import current_user, require_vhost, server_of, visible_vhosts
from rapidmq.admin.erlang_hash import args_hash
from rapidmq.admin.util import ApiError, path_name
from rapidmq.core.api import ClientInfo, NoDeliveries
from rapidmq.core.errors import AccessRefused, CoreError
from rapidmq.core.exchange import Binding, Exchange
from rapidmq.protocols.amqp091.connection import REPLY_CODES

if TYPE_CHECKING:
    from rapidmq.core.broker import Broker
    from rapidmq.core.queue import Queue
    from rapidmq.core.session import Session
    from rapidmq.core.vhost import VirtualHost

__all__ = [
    "DEFAULT_EXCHANGE_ALIAS",
    "BindingView",
    "access_refused",
    "amqp_reason",
    "binding_sort_key",
    "bindings_of_vhost",
    "checked_session",
    "exchange_path_name",
    "implicit_binding",
    "internal_session",
    "log",
    "log_change",
    "management_session",
    "properties_key",
    "vhost_of",
    "visible_vhost_objects",
]

log = logging.getLogger("rapidmq.admin")

#: The path segment RabbitMQ's API uses for the default exchange, whose name is "".
DEFAULT_EXCHANGE_ALIAS = "amq.default"


@contextmanager
def management_session(
    broker: Broker, vhost: str, user: str, *, full_access: bool = False
) -> Iterator[Session]:
    """A session of a management connection to ``vhost`` on behalf of ``user``, closed on exit.

    The caller must not await inside the ``with`` block: the connection
    exists only between two event-loop steps, so it never shows in listings.
    Closing it requeues whatever the session took and did not settle, as a
    client's disconnect would.  Its operations are checked against ``user``'s
    permissions, as RabbitMQ's API does, unless ``full_access`` (definitions
    import, which RabbitMQ runs as its internal user).
    """
    connection = broker.connect(
        vhost,
        ClientInfo(protocol="http", peer="management", name="management", user=user),
        full_access=full_access,
    )
    try:
        yield connection.open_session(NoDeliveries())
    finally:
        connection.close()


@contextmanager
def internal_session(request: Request, vhost: str) -> Iterator[Session]:
    """:func:`management_session` for the user who sent ``request``."""
    with management_session(server_of(request).broker, vhost, current_user(request).name) as s:
        yield s


def log_change(request: Request, action: str) -> None:
    """Record a change made through the API, naming who made it."""
    log.info("user '%s' %s", current_user(request).name, action)


def access_refused() -> ApiError:
    """RabbitMQ answers an operation on a reserved name (``amq.*``, "") with 401."""
    return ApiError(401, "not_authorised", "Access refused.")


def amqp_reason(err: CoreError) -> str:
    """``404 NOT_FOUND - no queue 'q' in vhost '/'``: the text RabbitMQ's channel gave."""
    code, name = REPLY_CODES.get(type(err), (406, "PRECONDITION_FAILED"))
    return f"{code} {name} - {err.text}"


def vhost_of(request: Request, key: str = "vhost") -> VirtualHost:
    """The vhost named in the path, checked for existence and visibility (404/401)."""
    name = path_name(request, key)
    require_vhost(request, name)
    vhost = server_of(request).broker.vhost(name)
    assert vhost is not None
    return vhost


def visible_vhost_objects(request: Request) -> list[VirtualHost]:
    """Every vhost the current user may see, in creation order."""
    visible = visible_vhosts(request)
    vhosts = server_of(request).broker.vhosts()
    if visible is None:
        return vhosts
    return [v for v in vhosts if v.name in visible]


def exchange_path_name(request: Request, key: str) -> str:
    """An exchange named in the path; ``amq.default`` is the default exchange ""."""
    name = path_name(request, key)
    return "" if name == DEFAULT_EXCHANGE_ALIAS else name


@contextmanager
def checked_session(request: Request, vhost: str) -> Iterator[Session]:
    """:func:`internal_session` for declares, deletes and bindings.

    A refusal there (a reserved name, or the user's permissions) is RabbitMQ's
    API 401 ``Access refused.``; publish and get answer refusals their own way.
    """
    try:
        with internal_session(request, vhost) as session:
            yield session
    except AccessRefused:
        raise access_refused() from None


# -- bindings -----------------------------------------------------------------


def _quote_binding(text: str) -> str:
    # rabbit_mgmt_format:quote_binding: quote_plus, then "~" escaped, since "~"
    # separates the routing key from the arguments' hash.
    return quote_plus(text, safe="").replace("~", "%7E")


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    """RabbitMQ's ``properties_key``: the quoted key, "~" for an empty one, or key~hash."""
    if not arguments:
        return _quote_binding(routing_key) if routing_key else "~"
    return _quote_binding(routing_key) + "~" + args_hash(arguments)


@dataclass(slots=True, frozen=True)
class BindingView:
    """One binding as the API lists it (explicit, or implicit from the default exchange)."""

    vhost: str
    source: str
    destination: str
    destination_type: str  # "queue" | "exchange"
    routing_key: str
    arguments: dict[str, Any]
    binding: Binding | None = None  # None for an implicit binding

    @classmethod
    def of(cls, binding: Binding) -> BindingView:
        destination = binding.destination
        kind = "exchange" if isinstance(destination, Exchange) else "queue"
        return cls(
            binding.source.vhost_name,
            binding.source.name,
            destination.name,
            kind,
            binding.routing_key,
            binding.arguments,
            binding,
        )

    @property
    def key(self) -> str:
        return properties_key(self.routing_key, self.arguments)

    def render(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "vhost": self.vhost,
            "destination": self.destination,
            "destination_type": self.destination_type,
            "routing_key": self.routing_key,
            "arguments": self.arguments,
            "properties_key": self.key,
        }


def implicit_binding(queue: Queue) -> BindingView:
    """The default exchange's binding to ``queue`` by its name, as RabbitMQ lists it."""
    return BindingView(queue.vhost.name, "", queue.name, "queue", queue.name, {})


def bindings_of_vhost(vhost: VirtualHost) -> list[BindingView]:
    """Every binding of ``vhost``: the implicit ones first, as RabbitMQ lists them."""
    views = [implicit_binding(queue) for queue in vhost.queues.values()]
    for exchange in vhost.exchanges.values():
        views.extend(BindingView.of(b) for b in exchange.bindings_out.values())
    return views


def binding_sort_key(view: BindingView) -> tuple[str, str, str, str]:
    """RabbitMQ's order: by vhost, source, destination, then routing key."""
    return (view.vhost, view.source, view.destination, view.routing_key)
