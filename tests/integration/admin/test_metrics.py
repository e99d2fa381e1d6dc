"""/metrics: Prometheus figures read from a live broker, on the API port and --prometheus-port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
import httpx
import paho.mqtt.client as paho
import pytest
from pamqp import commands
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from rapidmq import __version__
from rapidmq.admin import metrics
from rapidmq.core.api import ClientInfo
from rapidmq.server import Server
from tests.integration.admin.conftest import http_url
from tests.integration.amqp_client import connect
from tests.integration.conftest import amqp_port, serving

pytestmark = pytest.mark.anyio

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]


def parse(text: str) -> Samples:
    """Sample name → {sorted labels: value}, through prometheus_client's own parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def scrape_until(
    client: httpx.AsyncClient, ready: Callable[[Samples], bool], timeout_s: float = 5.0
) -> Samples:
    """Scrape until ``ready`` holds: acks and rejects reach the core after the client sends them."""
    with anyio.fail_after(timeout_s):
        while True:
            samples = await scrape(client)
            if ready(samples):
                return samples
            await anyio.sleep(0.02)


def declare_queues(server: Server, vhost: str, names: list[str]) -> None:
    """Declare through an internal core connection, as a front end would."""
    conn = server.broker.connect(
        vhost, ClientInfo(protocol="http", peer="test", user="guest"), full_access=True
    )
    try:
        target = server.broker.vhost(vhost)
        assert target is not None
        for name in names:
            target.declare_queue(conn, name)
    finally:
        conn.close()


async def test_metrics_need_no_login_and_carry_build_and_process_figures(
    admin_server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=http_url(admin_server)) as anonymous:
        samples = await scrape(anonymous)
        wrong = await anonymous.get("/metrics", auth=("guest", "wrong"))
    assert wrong.status_code == 200
    assert value(samples, "rapidmq_build_info", version=__version__) == 1
    assert value(samples, "rapidmq_uptime_seconds") >= 0
    assert value(samples, "rapidmq_vhosts") == 1
    assert value(samples, "rapidmq_queues") == 0
    assert value(samples, "rapidmq_connections") == 0
    # prometheus_client's process and platform collectors, in the server's registry.
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_max_fds") >= value(samples, "process_open_fds")
    assert "python_info" in samples
    # RapidMQ's own resource figures, as the alarms see them.
    assert value(samples, "rapidmq_process_resident_memory_bytes") > 1_000_000
    assert value(samples, "rapidmq_memory_limit_bytes") == admin_server.alarms.memory_limit_bytes
    assert (
        value(samples, "rapidmq_disk_free_limit_bytes") == admin_server.alarms.disk_free_limit_bytes
    )
    assert value(samples, "rapidmq_disk_free_bytes") > 0
    assert value(samples, "rapidmq_file_descriptors_open") > 0
    assert value(samples, "rapidmq_file_descriptors_open") <= value(
        samples, "rapidmq_file_descriptors_limit"
    )
    for resource in ("memory", "disk", "storage"):
        assert value(samples, "rapidmq_alarm", resource=resource) == 0
    assert value(samples, "rapidmq_queue_metrics_truncated") == 0
    # The in-memory store still reports through the message store figures.
    assert value(samples, "rapidmq_message_store_messages") == 0


async def test_queue_and_broker_figures_follow_amqp_traffic(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    client = await connect(amqp_port(admin_server))
    try:
        await client.open_channel(1)
        for name in ("work", "backlog"):
            await client.rpc(1, commands.Queue.Declare(queue=name), commands.Queue.DeclareOk)
        for i in range(5):
            await client.publish(1, "", "work", b"w%d" % i)
        for i in range(3):
            await client.publish(1, "", "backlog", b"b%d" % i)
        await client.publish(1, "amq.direct", "nowhere", b"lost")
        await client.rpc(
            1,
            commands.Basic.Consume(queue="work", consumer_tag="c1"),
            commands.Basic.ConsumeOk,
        )
        tags = [(await client.next_delivery()).method.delivery_tag for _ in range(5)]
        assert tags == [1, 2, 3, 4, 5]
        await client.send(1, commands.Basic.Ack(delivery_tag=2, multiple=True))
        await client.send(1, commands.Basic.Reject(delivery_tag=5, requeue=False))

        samples = await scrape_until(
            api, lambda s: value(s, "rapidmq_messages_rejected_total") == 1
        )
        work = {"vhost": "/", "queue": "work"}
        backlog = {"vhost": "/", "queue": "backlog"}
        assert value(samples, "rapidmq_queue_messages_ready", **work) == 0
        assert value(samples, "rapidmq_queue_messages_unacknowledged", **work) == 2
        assert value(samples, "rapidmq_queue_consumers", **work) == 1
        assert value(samples, "rapidmq_queue_messages_published_total", **work) == 5
        assert value(samples, "rapidmq_queue_messages_delivered_total", **work) == 5
        assert value(samples, "rapidmq_queue_messages_acknowledged_total", **work) == 2
        assert value(samples, "rapidmq_queue_messages_ready", **backlog) == 3
        assert value(samples, "rapidmq_queue_messages_unacknowledged", **backlog) == 0
        assert value(samples, "rapidmq_queue_consumers", **backlog) == 0
        assert value(samples, "rapidmq_queue_messages_published_total", **backlog) == 3
        assert value(samples, "rapidmq_queue_messages_delivered_total", **backlog) == 0
        assert value(samples, "rapidmq_queue_messages_acknowledged_total", **backlog) == 0

        assert value(samples, "rapidmq_queues") == 2
        assert value(samples, "rapidmq_consumers") == 1
        assert value(samples, "rapidmq_messages_ready") == 3
        assert value(samples, "rapidmq_messages_unacknowledged") == 2
        assert value(samples, "rapidmq_messages_published_total") == 9
        assert value(samples, "rapidmq_messages_unroutable_total") == 1
        assert value(samples, "rapidmq_messages_delivered_total") == 5
        assert value(samples, "rapidmq_messages_acknowledged_total") == 2
        assert value(samples, "rapidmq_connections") == 1
        assert value(samples, "rapidmq_channels") == 1
        assert value(samples, "rapidmq_protocol_connections", protocol="amqp091") == 1
        assert value(samples, "rapidmq_protocol_channels", protocol="amqp091") == 1
        assert value(samples, "rapidmq_protocol_connections", protocol="mqtt") == 0
        # Only vhost and queue names label the series: never connections or keys.
        for series in samples.values():
            for labels in series:
                assert {key for key, _ in labels} <= {
                    "vhost",
                    "queue",
                    "protocol",
                    "resource",
                    "version",
                    "implementation",
                    "major",
                    "minor",
                    "patchlevel",
                }
    finally:
        await client.aclose()
    samples = await scrape_until(api, lambda s: value(s, "rapidmq_connections") == 0)
    # The unacknowledged deliveries went back to the queue with the connection.
    assert value(samples, "rapidmq_queue_messages_ready", vhost="/", queue="work") == 2
    assert value(samples, "rapidmq_protocol_connections", protocol="amqp091") == 0


async def test_mqtt_connections_are_counted_by_protocol(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    port = admin_server.ports["mqtt"]
    assert port is not None
    connected = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="metrics-probe")
    client.username_pw_set("guest", "guest")
    client.on_connect = lambda *args: connected.set()

    def start() -> None:
        client.connect("127.0.0.1", port)
        client.loop_start()
        assert connected.wait(5), "no CONNACK"

    await anyio.to_thread.run_sync(start)
    try:
        samples = await scrape_until(
            api, lambda s: value(s, "rapidmq_protocol_connections", protocol="mqtt") == 1
        )
        assert value(samples, "rapidmq_protocol_channels", protocol="mqtt") == 1
        assert value(samples, "rapidmq_protocol_connections", protocol="amqp091") == 0
    finally:

        def stop() -> None:
            client.disconnect()
            client.loop_stop()

        await anyio.to_thread.run_sync(stop)
    await scrape_until(
        api, lambda s: value(s, "rapidmq_protocol_connections", protocol="mqtt") == 0
    )


async def test_alarm_gauges_follow_the_resource_alarms(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    alarms = admin_server.alarms
    limit = alarms.memory_limit_bytes
    before = value(await scrape(api), "rapidmq_alarms_set_total")
    # A watermark below what the process uses: the update sets the alarm, and the
    # server's own sampling keeps it set until the watermark is put back.
    alarms.memory_limit_bytes = 1
    alarms.update(memory_used_bytes=10_000_000, disk_free_bytes=None)
    alarms.storage_failed("test: the store refused a write")
    try:
        samples = await scrape(api)
        assert value(samples, "rapidmq_alarm", resource="memory") == 1
        assert value(samples, "rapidmq_alarm", resource="storage") == 1
        assert value(samples, "rapidmq_alarm", resource="disk") == 0
        assert value(samples, "rapidmq_memory_limit_bytes") == 1
        assert value(samples, "rapidmq_alarms_set_total") == before + 2
    finally:
        alarms.memory_limit_bytes = limit
        alarms.storage_recovered()
    samples = await scrape_until(api, lambda s: value(s, "rapidmq_alarm", resource="memory") == 0)
    assert value(samples, "rapidmq_alarm", resource="storage") == 0
    assert value(samples, "rapidmq_memory_limit_bytes") == limit


async def test_per_queue_series_stop_at_the_bound_and_say_so(
    api: httpx.AsyncClient, admin_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_server.broker.add_vhost("b-side")
    declare_queues(admin_server, "/", ["q2", "q1"])
    declare_queues(admin_server, "b-side", ["q0", "q3", "q4"])
    monkeypatch.setattr(metrics, "MAX_QUEUE_SERIES", 3)
    samples = await scrape(api)
    assert value(samples, "rapidmq_queue_metrics_truncated") == 1
    assert value(samples, "rapidmq_queues") == 5
    # The first three by vhost, then name: "/" sorts before "b-side".
    expected = {(("queue", "q1"), ("vhost", "/")), (("queue", "q2"), ("vhost", "/"))}
    expected.add((("queue", "q0"), ("vhost", "b-side")))
    for name in (
        "rapidmq_queue_messages_ready",
        "rapidmq_queue_messages_unacknowledged",
        "rapidmq_queue_consumers",
        "rapidmq_queue_messages_published_total",
        "rapidmq_queue_messages_delivered_total",
        "rapidmq_queue_messages_acknowledged_total",
    ):
        assert set(samples[name]) == expected, name
    monkeypatch.setattr(metrics, "MAX_QUEUE_SERIES", 5)
    samples = await scrape(api)
    assert value(samples, "rapidmq_queue_metrics_truncated") == 0
    assert len(samples["rapidmq_queue_messages_ready"]) == 5
    assert value(samples, "rapidmq_queue_messages_ready", vhost="b-side", queue="q4") == 0


async def test_ten_thousand_queues_are_scraped_in_one_go(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    declare_queues(admin_server, "/", [f"q{i:05d}" for i in range(10_000)])
    started = time.perf_counter()
    response = await api.get("/metrics")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    samples = parse(response.text)
    assert len(samples["rapidmq_queue_messages_ready"]) == 10_000
    assert value(samples, "rapidmq_queue_metrics_truncated") == 0
    # The target is well under 1 s (bench/admin_bench.py measures it); the bound
    # here leaves room for a loaded test machine.
    assert elapsed < 3.0


async def test_openmetrics_is_served_when_asked_for(api: httpx.AsyncClient) -> None:
    response = await api.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(response.text)}
    assert {"rapidmq_messages_published", "rapidmq_queues", "rapidmq_alarm"} <= names


async def test_prometheus_port_serves_metrics_only(anyio_backend: str) -> None:
    async with serving(prometheus_port=0) as server:
        assert server.ports["http"] is None
        port = server.ports["prometheus"]
        assert port is not None
        declare_queues(server, "/", ["seen-on-the-metrics-port"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            samples = await scrape(client)
            overview = await client.get("/api/overview", auth=("guest", "guest"))
            wrong_method = await client.post("/metrics")
    assert value(samples, "rapidmq_build_info", version=__version__) == 1
    assert (
        value(samples, "rapidmq_queue_messages_ready", vhost="/", queue="seen-on-the-metrics-port")
        == 0
    )
    assert overview.status_code == 404
    assert overview.json() == {"error": "Object Not Found", "reason": "Not Found"}
    assert wrong_method.status_code == 405


async def test_each_server_has_its_own_registry(
    api: httpx.AsyncClient, admin_server: Server
) -> None:
    declare_queues(admin_server, "/", ["only-here"])
    async with serving(prometheus_port=0) as other:
        port = other.ports["prometheus"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            theirs = await scrape(client)
    ours = await scrape(api)
    assert value(ours, "rapidmq_queues") == 1
    assert value(theirs, "rapidmq_queues") == 0
    assert metrics.registry_for(admin_server) is metrics.registry_for(admin_server)
    assert metrics.registry_for(admin_server) is not metrics.registry_for(other)


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
async def test_fast_queue_lines_say_what_the_collector_says(
    api: httpx.AsyncClient, admin_server: Server, accept: str
) -> None:
    # /metrics writes the per-queue lines itself; prometheus_client's own writer,
    # run over the full registry, must read back the same, odd names included.
    admin_server.broker.add_vhost('odd "vhost"')
    declare_queues(admin_server, "/", ["plain", 'quo"te', "back\\slash", "new\nline", "ünï cödé"])
    declare_queues(admin_server, 'odd "vhost"', ["plain"])
    client = await connect(amqp_port(admin_server))
    try:
        await client.open_channel(1)
        for _ in range(3):
            await client.publish(1, "", "plain", b"x")
        await client.rpc(1, commands.Basic.Get(queue="plain"), commands.Basic.GetOk)
        await client.read_content(None)
        response = await api.get("/metrics", headers={"accept": accept})
    finally:
        await client.aclose()
    assert response.status_code == 200
    if accept:
        ours = {f.name: f for f in openmetrics_families(response.text)}
        reference = {
            f.name: f
            for f in openmetrics_families(om_latest(metrics.registry_for(admin_server)).decode())
        }
    else:
        ours = {f.name: f for f in text_string_to_metric_families(response.text)}
        reference = {
            f.name: f
            for f in text_string_to_metric_families(
                generate_latest(metrics.registry_for(admin_server)).decode()
            )
        }
    queue_families = [name for name in reference if name.startswith("rapidmq_queue_")]
    assert len(queue_families) == 7
    for name in queue_families:
        assert ours[name].type == reference[name].type, name
        assert ours[name].documentation == reference[name].documentation, name
        mine = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in ours[name].samples}
        theirs = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in reference[name].samples
        }
        assert mine == theirs, name
    plain = (("queue", "plain"), ("vhost", "/"))
    ready = {
        tuple(sorted(s.labels.items())): s.value
        for s in ours["rapidmq_queue_messages_ready"].samples
    }
    assert ready[plain] == 2
    assert ready[(("queue", 'quo"te'), ("vhost", "/"))] == 0
    assert ready[(("queue", "back\\slash"), ("vhost", "/"))] == 0
    assert ready[(("queue", "new\nline"), ("vhost", "/"))] == 0
    assert ready[(("queue", "plain"), ("vhost", 'odd "vhost"'))] == 0
    assert len(ready) == 6
