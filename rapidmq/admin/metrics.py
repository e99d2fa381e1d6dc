"""``GET /metrics``: the broker's figures in Prometheus' text format.

Nothing here is updated per message.  The core already keeps plain integer
counters (published, delivered, acked…) and live counts on its objects; a
custom collector reads them when Prometheus scrapes, so a broker nobody
scrapes pays nothing, and a scrape costs one pass over the queues however
many messages went through them.

Each server gets its own :class:`~prometheus_client.CollectorRegistry` (not
the library's global one), so several brokers in one process -- as the tests
run them -- each report their own figures.  The registry also holds
prometheus_client's process and platform collectors (``process_*``,
``python_info``), which are what dashboards built for other Python services
expect to find.

The scrape runs on the event loop that moves the messages, so its cost is
taken from throughput.  ``generate_latest`` writes the broker-wide families;
the per-queue ones (60,000 samples at 10,000 queues, some 400 ms through
``generate_latest``) are written by :func:`render_queues` in about 20 ms.
:class:`QueueCollector` yields the same series as ordinary families, so the
registry stays complete and a test can hold the two writers to the same output.

Label values are only vhost and queue names (and fixed words such as the
protocol or the alarm's resource), never connection names, client ids or
routing keys, and per-queue series stop at :data:`MAX_QUEUE_SERIES` queues:
a broker with a million queues must not take a million-series scrape down
with it.  ``rapidmq_queue_metrics_truncated`` says when that bound cut the
list.  ``docs/metrics.md`` lists every metric.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rapidmq import __version__
from rapidmq.admin.auth import server_of
from rapidmq.protocols.amqp091.connection import AMQPConnection
from rapidmq.protocols.mqtt.connection import MQTTConnection

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue
    from rapidmq.server import Server

__all__ = [
    "MAX_QUEUE_SERIES",
    "ROUTES",
    "BrokerCollector",
    "QueueCollector",
    "registry_for",
    "render",
    "render_queues",
]

#: Per-queue series are emitted for at most this many queues (the first ones by
#: vhost name, then queue name).  Six series a queue make 60,000 lines at the
#: bound: some 4.5 MB a scrape, which Prometheus and the event loop still take
#: in their stride.
MAX_QUEUE_SERIES = 10_000

#: ``broker.statistics()`` counter → metric name (``_total`` is added on output).
_BROKER_COUNTERS = (
    ("published", "rapidmq_messages_published", "Messages published to the broker."),
    ("delivered", "rapidmq_messages_delivered", "Messages delivered to consumers or got."),
    ("acknowledged", "rapidmq_messages_acknowledged", "Deliveries acknowledged by clients."),
    ("unroutable", "rapidmq_messages_unroutable", "Published messages that reached no queue."),
    ("rejected", "rapidmq_messages_rejected", "Deliveries rejected or nacked by clients."),
)
#: ``broker.statistics()`` total → gauge name.
_BROKER_GAUGES = (
    ("connections", "rapidmq_connections", "Open client connections, every protocol."),
    ("sessions", "rapidmq_channels", "Open channels (an MQTT connection counts one)."),
    ("queues", "rapidmq_queues", "Queues in every vhost."),
    ("exchanges", "rapidmq_exchanges", "Exchanges in every vhost, the predeclared ones too."),
    ("consumers", "rapidmq_consumers", "Consumers on every queue."),
    ("vhosts", "rapidmq_vhosts", "Virtual hosts."),
    ("messages_ready", "rapidmq_messages_ready", "Messages ready for delivery, every queue."),
    (
        "messages_unacknowledged",
        "rapidmq_messages_unacknowledged",
        "Messages delivered and not yet acknowledged, every queue.",
    ),
)
#: ``message_store`` figures of ``broker.statistics()`` → (metric, is a counter, help).
_STORE_FIGURES = (
    ("messages", "rapidmq_message_store_messages", False, "Messages in the message store."),
    ("bytes", "rapidmq_message_store_bytes", False, "Message data bytes in the store."),
    ("disk_bytes", "rapidmq_message_store_disk_bytes", False, "Bytes the store takes on disk."),
    ("pending_ops", "rapidmq_message_store_pending_writes", False, "Writes not yet committed."),
    ("batches", "rapidmq_message_store_batches", True, "Write batches committed."),
    ("syncs", "rapidmq_message_store_syncs", True, "Syncs of the store to disk."),
    ("paged_out", "rapidmq_message_store_paged_out", True, "Message bodies paged out of memory."),
    ("paged_in", "rapidmq_message_store_paged_in", True, "Message bodies read back in."),
    ("paged_bytes", "rapidmq_message_store_paged_bytes", False, "Bytes of bodies paged out."),
)
_ALARMS = ("memory", "disk", "storage")
_PROTOCOLS = ("amqp091", "mqtt")


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class BrokerCollector(Collector):
    """Reads one server's broker-wide figures at scrape time; holds no state of its own."""

    def __init__(self, server: Server) -> None:
        # Weak, so that a registry kept alive by a stray reference does not keep
        # a stopped broker and all its queues in memory.
        self._server = weakref.ref(server)

    def collect(self) -> Iterable[Metric]:
        server = self._server()
        if server is None:
            return []
        return list(self._families(server))

    def _families(self, server: Server) -> Iterator[Metric]:
        totals = server.broker.statistics()
        build = GaugeMetricFamily(
            "rapidmq_build_info", "RapidMQ's version, as a label; always 1.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build
        yield _gauge(
            "rapidmq_uptime_seconds", "Seconds since the broker started.", server.uptime_ms() / 1000
        )
        for key, name, documentation in _BROKER_GAUGES:
            yield _gauge(name, documentation, totals[key])
        for key, name, documentation in _BROKER_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=totals[key])
        yield from self._protocols(server)
        yield from self._resources(server, totals)

    def _protocols(self, server: Server) -> Iterator[Metric]:
        connections = dict.fromkeys(_PROTOCOLS, 0)
        channels = dict.fromkeys(_PROTOCOLS, 0)
        for _socket, handler in server.protocol_connections():
            if isinstance(handler, AMQPConnection):
                connections["amqp091"] += 1
                channels["amqp091"] += len(handler.channels)
            elif isinstance(handler, MQTTConnection):
                connections["mqtt"] += 1
                # An MQTT connection works through one core session once connected.
                channels["mqtt"] += handler.session is not None
        by_connections = GaugeMetricFamily(
            "rapidmq_protocol_connections",
            "Open client connections by protocol.",
            labels=["protocol"],
        )
        by_channels = GaugeMetricFamily(
            "rapidmq_protocol_channels",
            "Open channels by protocol (an MQTT connection counts one).",
            labels=["protocol"],
        )
        for protocol in _PROTOCOLS:
            by_connections.add_metric([protocol], connections[protocol])
            by_channels.add_metric([protocol], channels[protocol])
        yield by_connections
        yield by_channels

    def _resources(self, server: Server, totals: dict[str, Any]) -> Iterator[Metric]:
        resources = server.resources()
        alarms = server.alarms
        yield _gauge(
            "rapidmq_process_resident_memory_bytes",
            "Resident memory of the broker process, as the memory alarm measures it.",
            resources["memory_used_bytes"],
        )
        yield _gauge(
            "rapidmq_memory_limit_bytes",
            "The memory high watermark: publishers are blocked at this resident memory.",
            alarms.memory_limit_bytes,
        )
        yield _gauge(
            "rapidmq_memory_paging_threshold_bytes",
            "Resident memory from which message bodies are paged out of memory.",
            alarms.paging_threshold_bytes,
        )
        yield _gauge(
            "rapidmq_disk_free_bytes",
            "Free space of the file system holding the data dir.",
            resources["disk_free_bytes"],
        )
        yield _gauge(
            "rapidmq_disk_free_limit_bytes",
            "The disk free limit: publishers are blocked below this much free space.",
            alarms.disk_free_limit_bytes,
        )
        yield _gauge(
            "rapidmq_file_descriptors_open",
            "File descriptors open in the broker process (sockets included).",
            resources["fd_used"],
        )
        yield _gauge(
            "rapidmq_file_descriptors_limit",
            "The process's soft limit on open file descriptors.",
            resources["fd_total"],
        )
        alarm = GaugeMetricFamily(
            "rapidmq_alarm",
            "1 while the resource alarm is on (publishers blocked), else 0.",
            labels=["resource"],
        )
        for resource, on in zip(_ALARMS, (alarms.memory, alarms.disk, alarms.storage), strict=True):
            alarm.add_metric([resource], int(on))
        yield alarm
        yield CounterMetricFamily(
            "rapidmq_alarms_set", "Times a resource alarm went on.", value=alarms.set_count
        )
        store = totals.get("message_store")
        if store is None:
            return
        if "messages_persistent" in totals:
            yield _gauge(
                "rapidmq_messages_persistent",
                "Persistent messages in durable queues, every vhost.",
                totals["messages_persistent"],
            )
        for key, name, is_counter, documentation in _STORE_FIGURES:
            value = store.get(key)
            if value is None:
                continue
            if is_counter:
                yield CounterMetricFamily(name, documentation, value=value)
            else:
                yield _gauge(name, documentation, value)


#: The per-queue families: metric name, type, help; values in this order come
#: from ready_count, unacked_count, len(consumers), published, delivered, acked.
_QUEUE_FAMILIES = (
    ("rapidmq_queue_messages_ready", "gauge", "Messages ready for delivery."),
    (
        "rapidmq_queue_messages_unacknowledged",
        "gauge",
        "Messages delivered and not yet acknowledged.",
    ),
    ("rapidmq_queue_consumers", "gauge", "Consumers on the queue."),
    ("rapidmq_queue_messages_published", "counter", "Messages routed to the queue."),
    (
        "rapidmq_queue_messages_delivered",
        "counter",
        "Messages delivered to consumers or got from the queue.",
    ),
    ("rapidmq_queue_messages_acknowledged", "counter", "Deliveries from the queue acknowledged."),
)
_TRUNCATED = "rapidmq_queue_metrics_truncated"


def _truncated_help() -> str:
    return (
        f"1 when queues beyond the first {MAX_QUEUE_SERIES} (by vhost, then name) "
        "have no per-queue series."
    )


def _bounded_queues(server: Server) -> tuple[list[tuple[str, list[str], dict[str, Queue]]], bool]:
    """The queues that get series, per vhost: (vhost name, queue names, its queues).

    Within the bound every queue is in, in the vhost's own order.  Beyond it,
    the first ones by vhost name, then queue name, so the queues left out are
    the same from one scrape to the next; sorting 10,000 names would cost a
    tenth of the scrape, so it is only done then.  Also whether any were left out.
    """
    limit = MAX_QUEUE_SERIES
    vhosts = sorted(server.broker.vhosts(), key=lambda v: v.name)
    if sum(len(vhost.queues) for vhost in vhosts) <= limit:
        return [(vhost.name, list(vhost.queues), vhost.queues) for vhost in vhosts], False
    chunks: list[tuple[str, list[str], dict[str, Queue]]] = []
    left = limit
    for vhost in vhosts:
        queues = vhost.queues
        names = sorted(queues)
        if len(names) > left:
            chunks.append((vhost.name, names[:left], queues))
            break
        chunks.append((vhost.name, names, queues))
        left -= len(names)
    return chunks, True


class QueueCollector(Collector):
    """The per-queue families, as ordinary metric families.

    ``GET /metrics`` writes these same series with :func:`render_queues`, which
    is an order of magnitude faster than ``generate_latest`` on 60,000 samples;
    this collector keeps the registry complete for anything else that reads it
    (and lets the tests check that both say the same).
    """

    def __init__(self, server: Server) -> None:
        self._server = weakref.ref(server)

    def collect(self) -> Iterable[Metric]:
        server = self._server()
        if server is None:
            return []
        labels = ["vhost", "queue"]
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
                name, documentation, labels=labels
            )
            for name, kind, documentation in _QUEUE_FAMILIES
        ]
        ready, unacked, consumers, published, delivered, acked = families
        chunks, truncated = _bounded_queues(server)
        for vname, names, queues in chunks:
            for name in names:
                queue = queues[name]
                series = [vname, name]
                ready.add_metric(series, queue.ready_count)
                unacked.add_metric(series, queue.unacked_count)
                consumers.add_metric(series, len(queue.consumers))
                published.add_metric(series, queue.published)
                delivered.add_metric(series, queue.delivered)
                acked.add_metric(series, queue.acked)
        return [*families, _gauge(_TRUNCATED, _truncated_help(), int(truncated))]


def _escape(value: str) -> str:
    """A label value as both text formats quote it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def render_queues(server: Server, *, openmetrics: bool = False) -> str:
    """The per-queue families and the truncation flag, in the text format.

    One pass over the queues: each queue's label set is escaped once and shared by
    its six lines, and each line is one f-string, where ``generate_latest`` would
    sort, escape and format the labels of every sample again.  In the Prometheus
    text format a counter's HELP and TYPE lines name it with ``_total``; in
    OpenMetrics they name the family.
    """
    chunks, truncated = _bounded_queues(server)
    ready_n, unacked_n, consumers_n, published_n, delivered_n, acked_n = (
        name if kind == "gauge" else f"{name}_total" for name, kind, _doc in _QUEUE_FAMILIES
    )
    ready: list[str] = []
    unacked: list[str] = []
    consumers: list[str] = []
    published: list[str] = []
    delivered: list[str] = []
    acked: list[str] = []
    for vname, queue_names, queues in chunks:
        vhost_label = _escape(vname)
        for name in queue_names:
            queue = queues[name]
            series = f'{{queue="{_escape(name)}",vhost="{vhost_label}"}} '
            ready.append(f"{ready_n}{series}{queue.ready_count}\n")
            unacked.append(f"{unacked_n}{series}{queue.unacked_count}\n")
            consumers.append(f"{consumers_n}{series}{len(queue.consumers)}\n")
            published.append(f"{published_n}{series}{queue.published}\n")
            delivered.append(f"{delivered_n}{series}{queue.delivered}\n")
            acked.append(f"{acked_n}{series}{queue.acked}\n")
    parts: list[str] = []
    lines_of = (ready, unacked, consumers, published, delivered, acked)
    for (name, kind, documentation), lines in zip(_QUEUE_FAMILIES, lines_of, strict=True):
        shown = name if openmetrics or kind == "gauge" else f"{name}_total"
        parts.append(f"# HELP {shown} {documentation}\n# TYPE {shown} {kind}\n")
        parts.extend(lines)
    parts.append(
        f"# HELP {_TRUNCATED} {_truncated_help()}\n# TYPE {_TRUNCATED} gauge\n"
        f"{_TRUNCATED} {int(truncated)}\n"
    )
    return "".join(parts)


class _ServerMetrics:
    """One server's registries: ``full`` has every family, ``base`` all but the per-queue ones."""

    def __init__(self, server: Server) -> None:
        collectors: list[Collector] = [
            BrokerCollector(server),
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
        ]
        self.base = CollectorRegistry(auto_describe=False)
        self.full = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.base.register(collector)
            self.full.register(collector)
        self.full.register(QueueCollector(server))


_by_server: weakref.WeakKeyDictionary[Server, _ServerMetrics] = weakref.WeakKeyDictionary()


def _metrics_of(server: Server) -> _ServerMetrics:
    found = _by_server.get(server)
    if found is None:
        found = _by_server[server] = _ServerMetrics(server)
    return found


def registry_for(server: Server) -> CollectorRegistry:
    """The server's own registry: broker, per-queue, process and platform figures.

    The management app and the ``--prometheus-port`` app of one server share it.
    """
    return _metrics_of(server).full


_EOF = b"# EOF\n"


def render(server: Server, accept: str = "") -> tuple[bytes, str]:
    """The body and content type of ``/metrics`` for an ``Accept`` header.

    ``generate_latest`` (or its OpenMetrics twin, when the header asks for it)
    writes every family but the per-queue ones, which :func:`render_queues`
    appends (before OpenMetrics' ``# EOF``).
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    body = encoder(_metrics_of(server).base)
    queues = render_queues(server, openmetrics=openmetrics).encode()
    if openmetrics and body.endswith(_EOF):
        return body[: -len(_EOF)] + queues + _EOF, content_type
    return body + queues, content_type


async def metrics(request: Request) -> Response:
    # No login, as RabbitMQ's Prometheus plugin: the figures name no users or
    # connections, and scrapers are rarely given credentials.  The collectors
    # run here, on the event loop, because the core must not be read from a
    # worker thread.
    body, content_type = render(server_of(request), request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


ROUTES: list[BaseRoute] = [Route("/metrics", metrics, methods=["GET"])]
