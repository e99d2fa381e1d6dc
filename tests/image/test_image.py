"""RapidMQ's container image, built with real Docker and driven by real clients.

The session fixtures make Docker usable (see :mod:`tests.image.docker_host`;
the tests skip with the reason when it cannot run here), build the Debian 12
base with debootstrap once (``make base-image``: kept between runs, skipped
when the image exists), then ``make image BASE_IMAGE=rapidmq-base:bookworm``,
which reuses its cached wheelhouse and layers when nothing changed.
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.image.docker_host import (
    AMQP,
    HTTP,
    MQTT,
    REPO,
    Container,
    DockerDaemon,
    docker,
    image_exists,
    make_env,
    wait_for,
)

pytestmark = pytest.mark.slow

BASE_IMAGE = "rapidmq-base:bookworm"
IMAGE = "rapidmq:dev"
DATA_DIR = "/var/lib/rapidmq"
#: A short health interval, so that "healthy" comes within a second or two.
HEALTH_ARGS = ("--health-interval", "1s")


def _make(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *targets],
        cwd=REPO,
        env=make_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    daemon = DockerDaemon()
    problem = daemon.start()
    if problem is not None:
        pytest.skip(f"Docker cannot run here: {problem}")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def image(docker_daemon: DockerDaemon) -> str:
    if not image_exists(BASE_IMAGE):
        if shutil.which("debootstrap") is None:
            pytest.skip(f"{BASE_IMAGE} is missing and debootstrap is not installed")
        built = _make("base-image")
        if built.returncode != 0:
            pytest.skip(f"make base-image failed: {built.stderr.strip().splitlines()[-1:]}")
    built = _make("image", f"BASE_IMAGE={BASE_IMAGE}", f"IMAGE={IMAGE}")
    assert built.returncode == 0, built.stdout + built.stderr
    return IMAGE


@pytest.fixture
def volume(docker_daemon: DockerDaemon) -> Iterator[str]:
    name = f"rapidmq-test-{uuid.uuid4().hex[:12]}"
    yield name
    # The test's containers may still hold it: they go first.
    for container in docker("ps", "--all", "--quiet", "--filter", f"volume={name}").split():
        docker("rm", "--force", "--volumes", container, check=False)
    docker("volume", "rm", "--force", name)


@pytest.fixture
def containers(image: str) -> Iterator[list[Container]]:
    """Containers a test starts; all are removed (with their volumes) afterwards."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def _start(
    containers: list[Container], *, volume: str | None = None, args: tuple[str, ...] = ()
) -> Container:
    container = Container(IMAGE, volume=volume, args=(*HEALTH_ARGS, *args))
    containers.append(container)
    return container.start()


@pytest.fixture(scope="module")
def broker(image: str) -> Iterator[Container]:
    """One running container that the read-only tests share."""
    container = Container(image, args=HEALTH_ARGS)
    try:
        yield container.start()
    finally:
        container.remove()


def _amqp(
    container: Container, user: str = "guest", password: str = "guest", vhost: str = "/"
) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        container.ports[AMQP],
        vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
    )
    return pika.BlockingConnection(params)


def _get_json(container: Container, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{container.ports[HTTP]}{path}"
    token = base64.b64encode(b"guest:guest").decode("ascii")
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_image_runs_the_broker_as_rapidmq_with_its_ports_volume_and_health_check(
    image: str,
) -> None:
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    assert {
        "User": config["User"],
        "ExposedPorts": sorted(config["ExposedPorts"]),
        "Volumes": config["Volumes"],
        "Entrypoint": config["Entrypoint"],
        "Cmd": config["Cmd"],
        "StopSignal": config["StopSignal"],
        "Healthcheck": config["Healthcheck"]["Test"],
        "Env": sorted(e for e in config["Env"] if e.startswith("RAPIDMQ_")),
    } == {
        "User": "rapidmq",
        "ExposedPorts": sorted(f"{p}/tcp" for p in (5672, 5671, 1883, 8883, 15675, 15672)),
        "Volumes": {DATA_DIR: {}},
        "Entrypoint": ["/opt/rapidmq/bin/rapidmq"],
        "Cmd": ["serve"],
        "StopSignal": "SIGTERM",
        "Healthcheck": ["CMD", "/opt/rapidmq/bin/python", "-I", "/opt/rapidmq/healthcheck.py"],
        "Env": [f"RAPIDMQ_DATA_DIR={DATA_DIR}", "RAPIDMQ_LOOPBACK_USERS=none"],
    }


def test_guest_publishes_and_consumes_over_amqp_from_outside_the_container(
    broker: Container,
) -> None:
    name = f"image-{uuid.uuid4().hex[:8]}"
    connection = _amqp(broker)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(name, exclusive=True)
        for body in (b"one", b"two"):
            channel.basic_publish("", name, body, pika.BasicProperties(content_type="text/plain"))
        got = []
        for method, properties, body in channel.consume(name, auto_ack=True, inactivity_timeout=5):
            assert method is not None, "no delivery within 5 s"
            got.append((method.routing_key, properties.content_type, body))
            if len(got) == 2:
                break
        channel.cancel()
        assert got == [(name, "text/plain", b"one"), (name, "text/plain", b"two")]
    finally:
        connection.close()


def _mqtt_client(container: Container, events: queue.Queue[tuple[Any, ...]]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"img-{uuid.uuid4().hex[:10]}")
    client.username_pw_set("guest", "guest")
    client.on_connect = lambda c, u, flags, rc, props: events.put(("connack", rc.value))
    client.on_subscribe = lambda c, u, mid, codes, props: events.put(
        ("suback", [code.value for code in codes])
    )
    client.on_message = lambda c, u, msg: events.put(("message", msg.topic, msg.payload, msg.qos))
    client.connect("127.0.0.1", container.ports[MQTT])
    client.loop_start()
    return client


def test_mqtt_publish_reaches_a_subscriber_through_the_published_port(broker: Container) -> None:
    topic = f"image/{uuid.uuid4().hex[:8]}/temperature"
    sub_events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    pub_events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    subscriber = _mqtt_client(broker, sub_events)
    publisher = _mqtt_client(broker, pub_events)
    try:
        assert sub_events.get(timeout=10) == ("connack", 0)
        assert pub_events.get(timeout=10) == ("connack", 0)
        subscriber.subscribe(topic.rsplit("/", 1)[0] + "/+", qos=1)
        assert sub_events.get(timeout=10) == ("suback", [1])
        publisher.publish(topic, b"21.5", qos=1).wait_for_publish(10)
        assert sub_events.get(timeout=10) == ("message", topic, b"21.5", 1)
    finally:
        for client in (subscriber, publisher):
            client.disconnect()
            client.loop_stop()


def test_management_api_answers_with_the_listeners_inside_the_container(
    broker: Container,
) -> None:
    assert _get_json(broker, "/api/whoami") == (200, {"name": "guest", "tags": ["administrator"]})
    status, overview = _get_json(broker, "/api/overview")
    assert status == 200
    assert sorted((entry["protocol"], entry["port"]) for entry in overview["listeners"]) == [
        ("amqp", 5672),
        ("http", 15672),
        ("http/web-mqtt", 15675),
        ("mqtt", 1883),
    ]
    assert _get_json(broker, "/api/health/checks/protocol-listener/mqtt") == (
        200,
        {"status": "ok", "protocol": "mqtt"},
    )


def test_health_check_turns_healthy_through_the_http_health_endpoint(broker: Container) -> None:
    def healthy() -> dict[str, Any] | None:
        health: dict[str, Any] = broker.state()["Health"]
        return health if health["Status"] == "healthy" else None

    health = wait_for(healthy, 30, "container health 'healthy'")
    last = health["Log"][-1]
    code, _, body = last["Output"].strip().partition(" ")
    assert (last["ExitCode"], code, json.loads(body)) == (
        0,
        "200",
        {"status": "ok", "protocol": "amqp"},
    )


def test_broker_runs_as_pid_1_under_a_non_root_user(broker: Container) -> None:
    assert broker.exec("id", "-u").strip() != "0"
    status = dict(line.split(":", 1) for line in broker.exec("cat", "/proc/1/status").splitlines())
    uids = status["Uid"].split()
    assert uids == [uids[0]] * 4 and uids[0] != "0"
    assert broker.exec("id", "-un").strip() == "rapidmq"
    cmdline = broker.exec("cat", "/proc/1/cmdline").split("\0")
    assert cmdline[1:] == ["/opt/rapidmq/bin/rapidmq", "serve", ""]


def test_durable_queue_and_persistent_messages_survive_a_new_container_on_the_same_volume(
    containers: list[Container], volume: str
) -> None:
    first = _start(containers, volume=volume)
    connection = _amqp(first)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("orders", durable=True)
    channel.queue_declare("scratch", durable=False)
    for n in range(3):
        persistent = pika.BasicProperties(delivery_mode=2, message_id=f"m{n}")
        channel.basic_publish("", "orders", f"order {n}".encode(), persistent)
    connection.close()
    first.stop()

    second = _start(containers, volume=volume)
    connection = _amqp(second)
    try:
        channel = connection.channel()
        assert channel.queue_declare("orders", passive=True).method.message_count == 3
        got = []
        for _ in range(3):
            method, properties, body = channel.basic_get("orders", auto_ack=True)
            assert method is not None
            got.append((properties.delivery_mode, properties.message_id, body))
        assert got == [(2, f"m{n}", f"order {n}".encode()) for n in range(3)]
    finally:
        connection.close()
    status, queues = _get_json(second, "/api/queues/%2F")
    assert status == 200
    assert [(q["name"], q["durable"]) for q in queues] == [("orders", True)]


def test_docker_stop_closes_clients_with_320_and_exits_0_within_5_s(
    containers: list[Container],
) -> None:
    container = _start(containers)
    connection = _amqp(container)
    # The client keeps reading while `docker stop` runs, as a live application
    # does, so that it answers the broker's Connection.Close at once.
    with ThreadPoolExecutor(max_workers=1) as pool:
        stopping = pool.submit(container.stop)
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            connection.process_data_events(time_limit=10)
        elapsed_s = stopping.result(timeout=30)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
    )
    state = container.state()
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False)
    assert elapsed_s < 5, f"docker stop took {elapsed_s:.1f} s"
    last_line = wait_for(
        lambda: container.output[-1] if container.output[-1].endswith(" stopped") else None,
        10,
        "the log's last line",
    )
    assert last_line.endswith(" INFO broker: stopped")


# A compose file written for RabbitMQ's image: its variables, and definitions
# named by load_definitions in a rabbitmq.conf mounted where that image reads it.
COMPOSE_DEFINITIONS = {
    "vhosts": [{"name": "shop"}],
    "queues": [
        {
            "name": "orders",
            "vhost": "shop",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "quorum"},
        }
    ],
    "policies": [
        {
            "vhost": "shop",
            "name": "cap",
            "pattern": "^orders$",
            "apply-to": "queues",
            "definition": {"max-length": 2},
            "priority": 0,
        }
    ],
    "permissions": [
        {"user": "app", "vhost": "shop", "configure": ".*", "write": ".*", "read": ".*"}
    ],
}


def test_rabbitmq_variables_and_mounted_load_definitions_take_effect(
    containers: list[Container], tmp_path: Path
) -> None:
    definitions = tmp_path / "definitions.json"
    definitions.write_text(json.dumps(COMPOSE_DEFINITIONS))
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text("load_definitions = /etc/rabbitmq/definitions.json\nlog.console = true\n")
    for path in (definitions, conf):
        path.chmod(0o644)  # read by the image's non-root user
    container = _start(
        containers,
        args=(
            *("--env", "RABBITMQ_DEFAULT_USER=app", "--env", "RABBITMQ_DEFAULT_PASS=s3cret"),
            *("--env", "RABBITMQ_DEFAULT_VHOST=shop", "--env", "RABBITMQ_ERLANG_COOKIE=c"),
            *("--volume", f"{definitions}:/etc/rabbitmq/definitions.json:ro"),
            *("--volume", f"{conf}:/etc/rabbitmq/rabbitmq.conf:ro"),
        ),
    )
    connection = _amqp(container, "app", "s3cret", "shop")  # from outside: not loopback
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for n in range(4):
            channel.basic_publish("", "orders", f"order {n}".encode())
        assert channel.queue_declare("orders", passive=True).method.message_count == 2
    finally:
        connection.close()
    notes = [line for line in container.output if "RABBITMQ_ERLANG_COOKIE" in line]
    assert len(notes) == 1 and "ignored" in notes[0]

    def healthy() -> str | None:
        status: str = container.state()["Health"]["Status"]
        return status if status == "healthy" else None

    # The health check logs in with RABBITMQ_DEFAULT_USER when guest is not the user.
    assert wait_for(healthy, 30, "a healthy container") == "healthy"
