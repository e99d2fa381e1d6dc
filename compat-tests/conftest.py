"""Fixtures for the compatibility suites: real clients against real brokers.

``rapidmq`` is the broker under test. By default it is a ``rapidmq serve``
subprocess on free ports; when ``RAPIDMQ_COMPAT_URL`` is set the suite talks to
that URL instead, which is how every test is validated against RabbitMQ itself:

    RAPIDMQ_COMPAT_URL=amqp://guest:guest@127.0.0.1:5672/ .venv/bin/pytest compat-tests

``rabbitmq`` is the local reference RabbitMQ used by the differential tests.

``mqtt_endpoint`` is the MQTT side of the broker under test.  While developing,
``RAPIDMQ_COMPAT_MQTT=HOST:PORT`` points it at another MQTT broker, which is how
the MQTT suites are validated against the local Mosquitto (tests that need the
same broker's AMQP side then skip):

    RAPIDMQ_COMPAT_MQTT=127.0.0.1:1883 .venv/bin/pytest compat-tests -k mqtt

``mosquitto`` is the local reference Mosquitto used by the MQTT differential tests.

Brokers may be shared, so every queue and exchange a test creates carries a
unique token and is deleted afterwards through a ``Scratch``.  Clients get short
timeouts, and each test runs under a SIGALRM watchdog, so a broken broker fails
a test instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from compat_support import BrokerEndpoint, ObserveBoth, Scratch, _endpoint
from management_support import RABBITMQ_AMQP_PORT, RABBITMQ_API_URL, Api, management_reachable
from mqtt_support import MOSQUITTO_HOST, MOSQUITTO_PORT, MQTTEndpoint, MQTTScratch

from rapidmq.testing import BrokerProcess

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def _listening(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rapidmq() -> Iterator[BrokerEndpoint]:
    """The broker under test: RAPIDMQ_COMPAT_URL if set, else a fresh ``rapidmq serve``."""
    url = os.environ.get("RAPIDMQ_COMPAT_URL")
    if url:
        yield _endpoint(url)
        return
    broker = BrokerProcess(start_timeout_s=20.0)
    broker.start()
    _brokers.append(broker)
    try:
        assert broker.amqp_port is not None, "rapidmq started with its AMQP listener off"
        yield _endpoint(broker.amqp_url, mqtt_port=broker.mqtt_port)
    finally:
        _brokers.remove(broker)
        broker.stop()


_brokers: list[BrokerProcess] = []
BROKER_LOG_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of the broker's output to each failing test's report."""
    report = yield
    if report.failed and _brokers:
        tail = list(_brokers[-1].output)[-BROKER_LOG_LINES:]
        report.sections.append(("rapidmq output (last lines)", "\n".join(tail)))
    return report


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The local reference RabbitMQ's URL, or a skip when it is not running."""
    if not _listening(RABBITMQ_HOST, RABBITMQ_PORT):
        pytest.skip(f"RabbitMQ is not running on {RABBITMQ_HOST}:{RABBITMQ_PORT}")
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def mqtt_endpoint(request: pytest.FixtureRequest) -> MQTTEndpoint:
    """The MQTT broker under test: RAPIDMQ_COMPAT_MQTT if set, else the ``rapidmq`` broker's."""
    override = os.environ.get("RAPIDMQ_COMPAT_MQTT")
    if override:
        host, _, port = override.rpartition(":")
        if not host or not port.isdigit():
            pytest.fail(f"RAPIDMQ_COMPAT_MQTT must be HOST:PORT, not {override!r}")
        if not _listening(host, int(port)):
            pytest.skip(f"nothing listens on RAPIDMQ_COMPAT_MQTT={override}")
        return MQTTEndpoint(host, int(port), name=f"mqtt://{override}")
    if os.environ.get("RAPIDMQ_COMPAT_URL"):
        pytest.skip("RAPIDMQ_COMPAT_URL is set without RAPIDMQ_COMPAT_MQTT: no MQTT broker to test")
    broker: BrokerEndpoint = request.getfixturevalue("rapidmq")
    if broker.mqtt_port is None:
        pytest.skip("rapidmq reports mqtt=off: its MQTT listener is not wired in yet")
    return MQTTEndpoint(broker.host, broker.mqtt_port, name="rapidmq", amqp_url=broker.amqp_url)


@pytest.fixture(scope="session")
def mosquitto() -> MQTTEndpoint:
    """The local reference Mosquitto, or a skip when it is not running."""
    if not _listening(MOSQUITTO_HOST, MOSQUITTO_PORT):
        pytest.skip(f"Mosquitto is not running on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    return MQTTEndpoint(MOSQUITTO_HOST, MOSQUITTO_PORT, name="mosquitto")


@pytest.fixture
def mqtt_scratch_factory() -> Iterator[Callable[[MQTTEndpoint], MQTTScratch]]:
    """Make an ``MQTTScratch`` on any MQTT broker; all are cleaned up after the test."""
    made: list[MQTTScratch] = []

    def make(endpoint: MQTTEndpoint) -> MQTTScratch:
        s = MQTTScratch(endpoint)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def mqtt(
    mqtt_endpoint: MQTTEndpoint, mqtt_scratch_factory: Callable[[MQTTEndpoint], MQTTScratch]
) -> MQTTScratch:
    """An ``MQTTScratch`` on the MQTT broker under test."""
    return mqtt_scratch_factory(mqtt_endpoint)


@pytest.fixture
def scratch_factory() -> Iterator[Callable[[str], Scratch]]:
    """Make a ``Scratch`` on any broker URL; all are cleaned up after the test."""
    made: list[Scratch] = []

    def make(url: str) -> Scratch:
        s = Scratch(url)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def observe_both(
    rabbitmq: str, rapidmq: BrokerEndpoint, scratch_factory: Callable[[str], Scratch]
) -> ObserveBoth:
    """Run a differential scenario on RabbitMQ, then on RapidMQ, each with its own names.

    Both observations are normalized (the per-run token becomes ``ID``), so a
    test asserts they are equal as they stand.
    """

    def observe(run: Callable[[Scratch], Any]) -> tuple[Any, Any]:
        reference = scratch_factory(rabbitmq)
        expected = reference.normalize(run(reference))
        candidate = scratch_factory(rapidmq.amqp_url)
        return expected, candidate.normalize(run(candidate))

    return observe


@pytest.fixture
def scratch(rapidmq: BrokerEndpoint, scratch_factory: Callable[[str], Scratch]) -> Scratch:
    """A ``Scratch`` on the broker under test."""
    return scratch_factory(rapidmq.amqp_url)


@pytest.fixture
def watchdog_s() -> float:
    """Seconds a test may run before the watchdog fails it. Modules may override."""
    return 30.0


class WatchdogExpired(Exception):
    """A test ran longer than its watchdog allows."""


@pytest.fixture(autouse=True)
def _watchdog(watchdog_s: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise WatchdogExpired(f"test still running after {watchdog_s}s; is the broker stuck?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, watchdog_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def rabbitmq_api(rabbitmq: str) -> Iterator[Api]:
    """The local RabbitMQ's management API, or a skip when it does not answer."""
    if not management_reachable():
        pytest.skip(f"RabbitMQ's management API does not answer on {RABBITMQ_API_URL}")
    api = Api("rabbitmq", RABBITMQ_API_URL, RABBITMQ_AMQP_PORT)
    yield api
    api.close()


@pytest.fixture(scope="module")
def rapidmq_api() -> Iterator[Api]:
    """A ``rapidmq serve`` of the module's own, driven through its management API."""
    broker = BrokerProcess(start_timeout_s=20.0)
    broker.start()
    try:
        assert broker.http_port is not None, "rapidmq started with its HTTP listener off"
        assert broker.amqp_port is not None
        api = Api("rapidmq", f"http://127.0.0.1:{broker.http_port}", broker.amqp_port)
        yield api
        api.close()
    finally:
        broker.stop()
