"""TLS listeners: AMQPS, MQTTS, MQTT over secure WebSocket and HTTPS, with real clients.

Certificates are made for the module with ``openssl`` (tests/tls_support.py): a
test CA, a server certificate for 127.0.0.1/localhost, client certificates for
"alice" and "guest", an expired one, and one from a CA the broker does not trust.
Blocking clients (pika, paho-mqtt, ssl sockets) run in worker threads.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pytest

from rapidmq.server import Server
from rapidmq.testing import BrokerProcess
from tests.integration.conftest import serving
from tests.tls_support import PKI, client_context, make_pki, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PKI]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: PKI, **overrides: Any) -> dict[str, Any]:
    """Settings for ``serving``: every TLS listener on a free port."""
    options: dict[str, Any] = {
        "amqps_port": 0,
        "mqtts_port": 0,
        "mqtt_wss_port": 0,
        "tls_cert": str(pki.server_cert),
        "tls_key": str(pki.server_key),
        "tls_ca": str(pki.ca),
    }
    options.update(overrides)
    return options


def mutual(pki: PKI, **overrides: Any) -> dict[str, Any]:
    """Client certificates required (RabbitMQ's verify_peer + fail_if_no_peer_cert)."""
    return tls_settings(pki, tls_verify_peer=True, tls_fail_if_no_peer_cert=True, **overrides)


def port_of(server: Server, key: str) -> int:
    port = server.ports[key]
    assert port is not None, key
    return port


def pika_round_trip(port: int, context: ssl.SSLContext, body: bytes = b"over tls") -> bytes:
    """Publish one message to a fresh queue over AMQPS and get it back."""
    params = pika.ConnectionParameters(
        "127.0.0.1",
        port,
        ssl_options=pika.SSLOptions(context, "localhost"),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.basic_publish("", queue, body)
        got: list[bytes] = []
        for _method, _props, payload in ch.consume(queue, auto_ack=True, inactivity_timeout=5):
            assert payload is not None, "no delivery within 5 s"
            got.append(payload)
            break
        ch.cancel()
        return got[0]
    finally:
        conn.close()


def pika_refused(port: int, context: ssl.SSLContext) -> str:
    """Open an AMQPS connection that the broker must refuse; the error's class name."""
    try:
        pika_round_trip(port, context)
    except (pika.exceptions.AMQPError, ssl.SSLError, OSError) as err:
        return type(err).__name__
    raise AssertionError("the broker accepted the connection")


def handshake_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rapidmq.connection"
        and r.levelno == logging.WARNING
        and r.getMessage().startswith("TLS handshake with 127.0.0.1:")
    ]


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)


# -- AMQPS ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pika_over_tls_publishes_and_consumes(pki: PKI) -> None:
    async with serving(**tls_settings(pki)) as server:
        body = bytes(range(256)) * 1000  # several TLS records each way
        got = await anyio.to_thread.run_sync(
            pika_round_trip, port_of(server, "amqps"), client_context(pki.ca), body
        )
        assert got == body
        # Without a client certificate nothing is handed to the handlers.
        await wait_for(lambda: not server.connections)


@pytest.mark.anyio
async def test_client_certificate_reaches_the_amqp_handler(pki: PKI) -> None:
    async with serving(**mutual(pki)) as server:
        port = port_of(server, "amqps")
        seen: list[Any] = []
        infos: list[dict[str, Any]] = []

        def client() -> None:
            context = client_context(pki.ca, pki.alice_cert, pki.alice_key)
            params = pika.ConnectionParameters(
                "127.0.0.1", port, ssl_options=pika.SSLOptions(context, "localhost")
            )
            conn = pika.BlockingConnection(params)
            try:
                conn.channel()
                for sock, handler in server.protocol_connections():
                    seen.append(handler.peer_certificate)
                    assert sock.tls is not None
                    infos.append(sock.tls.connection_info())
                assert pika_round_trip(port, context) == b"over tls"
            finally:
                conn.close()

        await anyio.to_thread.run_sync(client)
    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0]["subject"] == ((("commonName", "alice"),),)
    issuer = dict(pair[0] for pair in seen[0]["issuer"])
    assert issuer == {"commonName": "RapidMQ test ca"}
    # What the management API can show for the connection, in RabbitMQ's terms.
    [info] = infos
    validity = info.pop("peer_cert_validity")
    assert info == {
        "ssl": True,
        "ssl_protocol": "tlsv1.3",
        "ssl_key_exchange": "any",
        "ssl_cipher": "aes_256_gcm",
        "ssl_hash": "sha384",
        "peer_cert_subject": "CN=alice",
        "peer_cert_issuer": "CN=RapidMQ test ca",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ - \d{4}-.*Z", validity), validity


@pytest.mark.anyio
async def test_tls_1_2_client_is_served_with_a_forward_secret_aead_suite(pki: PKI) -> None:
    async with serving(**tls_settings(pki)) as server:
        context = client_context(pki.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        infos: list[dict[str, Any]] = []

        def client() -> str:
            with (
                socket.create_connection(("127.0.0.1", port_of(server, "amqps")), 5) as sock,
                context.wrap_socket(sock, server_hostname="localhost") as tls,
            ):
                tls.sendall(b"AMQP\x00\x00\x09\x01")
                start = tls.recv(65536)  # connection.start
                assert start[:1] == b"\x01", start[:16]
                infos.extend(s.tls.connection_info() for s, _h in server.protocol_connections())
                return str(tls.version())

        assert await anyio.to_thread.run_sync(client) == "TLSv1.2"
    [info] = infos
    assert info["ssl_protocol"] == "tlsv1.2"
    assert info["ssl_key_exchange"] == "ecdhe_rsa"
    assert info["ssl_cipher"] == "aes_256_gcm" and info["ssl_hash"] == "sha384"
    assert info["peer_cert_subject"] is None


@pytest.mark.anyio
async def test_client_without_certificate_is_refused_when_one_is_required(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**mutual(pki)) as server:
        port = port_of(server, "amqps")
        await anyio.to_thread.run_sync(pika_refused, port, client_context(pki.ca))
        await wait_for(lambda: handshake_warnings(caplog))
        # Refusing one client leaves the listener serving the next.
        good = client_context(pki.ca, pki.guest_cert, pki.guest_key)
        assert await anyio.to_thread.run_sync(pika_round_trip, port, good) == b"over tls"
    [warning] = handshake_warnings(caplog)
    assert warning.endswith(
        " failed: the client sent no certificate, and one is required; connection closed"
    ), warning


@pytest.mark.anyio
async def test_certificate_from_another_ca_is_refused(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**mutual(pki)) as server:
        context = client_context(pki.ca, pki.stranger_cert, pki.stranger_key)
        await anyio.to_thread.run_sync(pika_refused, port_of(server, "amqps"), context)
        await wait_for(lambda: handshake_warnings(caplog))
        assert not server.connections
    [warning] = handshake_warnings(caplog)
    assert "client certificate refused: unable to get local issuer certificate" in warning


@pytest.mark.anyio
async def test_expired_client_certificate_is_refused(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**tls_settings(pki, tls_verify_peer=True)) as server:
        context = client_context(pki.ca, pki.expired_cert, pki.expired_key)
        await anyio.to_thread.run_sync(pika_refused, port_of(server, "amqps"), context)
        await wait_for(lambda: handshake_warnings(caplog))
    [warning] = handshake_warnings(caplog)
    assert "client certificate refused: certificate has expired" in warning


@pytest.mark.anyio
async def test_verify_peer_alone_admits_clients_without_a_certificate(pki: PKI) -> None:
    async with serving(**tls_settings(pki, tls_verify_peer=True)) as server:
        port = port_of(server, "amqps")
        got = await anyio.to_thread.run_sync(pika_round_trip, port, client_context(pki.ca))
    assert got == b"over tls"


@pytest.mark.anyio
async def test_shutdown_closes_tls_connections_with_320(pki: PKI) -> None:
    """The close the broker sends on shutdown goes through TLS like any other frame."""
    connected = threading.Event()
    outcome: list[BaseException] = []

    def client(port: int) -> None:
        params = pika.ConnectionParameters(
            "127.0.0.1", port, ssl_options=pika.SSLOptions(client_context(pki.ca), "localhost")
        )
        conn = pika.BlockingConnection(params)
        connected.set()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.1)
        except pika.exceptions.AMQPError as err:
            outcome.append(err)
        finally:
            if conn.is_open:
                conn.close()

    # The task group is entered first, so it waits for the client after `serving` stops
    # the broker.
    async with anyio.create_task_group() as tg, serving(**tls_settings(pki)) as server:
        tg.start_soon(anyio.to_thread.run_sync, client, port_of(server, "amqps"))
        await wait_for(connected.is_set)
    [err] = outcome
    assert isinstance(err, pika.exceptions.ConnectionClosedByBroker), repr(err)
    assert err.reply_code == 320
    assert err.reply_text.startswith("CONNECTION_FORCED")


# -- MQTTS and MQTT over secure WebSocket ---------------------------------------------------


def paho_round_trip(
    port: int, pki: PKI, *, websocket: bool, with_cert: bool, server: Server
) -> tuple[str, bytes, Any]:
    """Subscribe, publish to the subscription, and return what arrives (and the handler's cert).

    The client certificate is guest's (CN "guest", a user that exists, for brokers that
    log MQTT clients in by certificate).  The certificate the broker's MQTT handler
    holds is read while the client is connected.
    """
    subscribed = threading.Event()
    got = threading.Event()
    received: list[tuple[str, bytes]] = []

    def on_subscribe(c: mqtt.Client, u: object, mid: int, codes: object, p: object) -> None:
        subscribed.set()

    def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        received.append((message.topic, bytes(message.payload)))
        got.set()

    paho = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"tls-{'ws' if websocket else 'tcp'}",
        transport="websockets" if websocket else "tcp",
    )
    if websocket:
        paho.ws_set_options(path="/ws")
    paho.tls_set(
        ca_certs=str(pki.ca),
        certfile=str(pki.guest_cert) if with_cert else None,
        keyfile=str(pki.guest_key) if with_cert else None,
    )
    paho.on_subscribe = on_subscribe
    paho.on_message = on_message
    paho.connect("127.0.0.1", port, keepalive=30)
    paho.loop_start()
    try:
        paho.subscribe("tls/+", qos=1)
        assert subscribed.wait(5), "no SUBACK within 5 s"
        certs = [getattr(h, "peer_certificate", None) for _s, h in server.protocol_connections()]
        paho.publish("tls/topic", b"secret payload", qos=1)
        assert got.wait(5), "no message within 5 s"
    finally:
        paho.disconnect()
        paho.loop_stop()
    return received[0][0], received[0][1], certs


@pytest.mark.anyio
async def test_paho_over_mqtts_publishes_and_subscribes(pki: PKI) -> None:
    async with serving(**tls_settings(pki)) as server:
        topic, payload, certs = await anyio.to_thread.run_sync(
            lambda: paho_round_trip(
                port_of(server, "mqtts"), pki, websocket=False, with_cert=False, server=server
            )
        )
    assert (topic, payload) == ("tls/topic", b"secret payload")
    assert certs == [None]


@pytest.mark.anyio
async def test_paho_over_secure_websocket_with_a_client_certificate(pki: PKI) -> None:
    async with serving(**mutual(pki)) as server:
        topic, payload, certs = await anyio.to_thread.run_sync(
            lambda: paho_round_trip(
                port_of(server, "mqtt_wss"), pki, websocket=True, with_cert=True, server=server
            )
        )
    assert (topic, payload) == ("tls/topic", b"secret payload")
    # The MQTT handler inside the WebSocket connection holds the client's certificate.
    assert len(certs) == 1 and certs[0] is not None
    assert certs[0]["subject"] == ((("commonName", "guest"),),)


@pytest.mark.anyio
async def test_mqtts_client_certificate_reaches_the_mqtt_handler(pki: PKI) -> None:
    async with serving(**mutual(pki)) as server:
        _topic, _payload, certs = await anyio.to_thread.run_sync(
            lambda: paho_round_trip(
                port_of(server, "mqtts"), pki, websocket=False, with_cert=True, server=server
            )
        )
    assert [c["subject"] for c in certs] == [((("commonName", "guest"),),)]


# -- HTTPS -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_management_api_over_https(pki: PKI) -> None:
    async with serving(**tls_settings(pki, https_port=0, http_port=0)) as server:
        port = port_of(server, "https")
        assert port != server.ports["http"]
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            verify=client_context(pki.ca),
            auth=("guest", "guest"),
            timeout=10.0,
        ) as client:
            overview = await client.get("/api/overview")
            metrics = await client.get("/metrics")
            anonymous = await client.get("/api/overview", auth=None)
        # Plain HTTP to the HTTPS port gets no API answer.
        async with httpx.AsyncClient(timeout=5.0) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/api/overview", auth=("guest", "guest"))
    assert overview.status_code == 200
    assert overview.json()["node"] == server.node_name
    assert metrics.status_code == 200
    assert "rabbitmq_" in metrics.text or "rapidmq_" in metrics.text
    assert anonymous.status_code == 401


# -- refusals that must not disturb the broker -----------------------------------------------


async def read_until_closed(port: int, send: bytes, timeout_s: float) -> tuple[bytes, float]:
    """Connect, send ``send``, and read until the server closes; (bytes read, seconds)."""
    started = time.monotonic()
    got = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        if send:
            await stream.send(send)
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    got += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return got, time.monotonic() - started


@pytest.mark.anyio
async def test_plaintext_to_a_tls_port_is_closed_and_others_keep_working(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**tls_settings(pki)) as server:
        port = port_of(server, "amqps")
        # A TLS client stays connected while a plaintext client is turned away.
        params = pika.ConnectionParameters(
            "127.0.0.1", port, ssl_options=pika.SSLOptions(client_context(pki.ca), "localhost")
        )
        open_conn = await anyio.to_thread.run_sync(pika.BlockingConnection, params)
        try:
            got, _elapsed = await read_until_closed(port, b"AMQP\x00\x00\x09\x01", 5.0)
            # At most a TLS alert record (content type 21), never an AMQP reply.
            assert got == b"" or got[0] == 21, got
            mqtt_got, _ = await read_until_closed(
                port_of(server, "mqtts"), b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 5.0
            )
            assert mqtt_got == b"" or mqtt_got[0] == 21, mqtt_got

            def still_works() -> bytes:
                ch = open_conn.channel()
                queue = ch.queue_declare("", exclusive=True).method.queue
                ch.basic_publish("", queue, b"still here")
                _m, _p, body = ch.basic_get(queue, auto_ack=True)
                ch.close()
                return body or b""

            assert await anyio.to_thread.run_sync(still_works) == b"still here"
            assert await anyio.to_thread.run_sync(
                pika_round_trip, port, client_context(pki.ca)
            ) == (b"over tls")
        finally:
            await anyio.to_thread.run_sync(open_conn.close)
    warnings = handshake_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert all(
        w.endswith(
            " failed: the client does not speak TLS (plaintext on a TLS port?); connection closed"
        )
        for w in warnings
    ), warnings


@pytest.mark.anyio
async def test_handshake_that_never_finishes_is_closed_after_the_timeout(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**tls_settings(pki, handshake_timeout_s=0.5, https_port=0)) as server:
        # The start of a ClientHello record, and then nothing: a slowloris.
        got, elapsed = await read_until_closed(
            port_of(server, "amqps"), b"\x16\x03\x01\x02\x00\x01", 5.0
        )
        silent, silent_elapsed = await read_until_closed(port_of(server, "mqtt_wss"), b"", 5.0)
        assert not server.connections
        # The management API's TLS handshake has the same limit.
        https, https_elapsed = await read_until_closed(port_of(server, "https"), b"", 5.0)
    assert got == b"" and silent == b"" and https == b""
    assert 0.4 <= elapsed < 3.0, elapsed
    assert 0.4 <= silent_elapsed < 3.0, silent_elapsed
    assert 0.4 <= https_elapsed < 3.0, https_elapsed
    warnings = handshake_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert all("did not finish within 0.5 s" in w for w in warnings)


def _tls11_client() -> ssl.SSLContext | None:
    """A client that offers TLS 1.1 only, if Python and OpenSSL still make one."""
    try:
        with warnings.catch_warnings():
            # Python deprecates TLS 1.1, which is exactly what this client is for.
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        return None
    return context


@pytest.mark.anyio
async def test_tls_1_1_is_refused(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    context = _tls11_client()
    if context is None:
        pytest.skip("this OpenSSL cannot make a TLS 1.1 client")
    caplog.set_level(logging.WARNING, logger="rapidmq.connection")
    async with serving(**tls_settings(pki)) as server:
        port = port_of(server, "amqps")

        def handshake() -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                try:
                    with context.wrap_socket(sock) as tls:
                        return f"accepted {tls.version()}"
                except ssl.SSLError as err:
                    return str(err.reason)

        outcome = await anyio.to_thread.run_sync(handshake)
        if outcome == "NO_PROTOCOLS_AVAILABLE":
            pytest.skip("this OpenSSL refuses to offer TLS 1.1 at all")
        await wait_for(lambda: handshake_warnings(caplog))
    assert not outcome.startswith("accepted"), outcome
    [warning] = handshake_warnings(caplog)
    assert "the client offers only TLS versions older than 1.2" in warning, warning


# -- the `rapidmq serve` process -------------------------------------------------------------


def test_serve_process_reports_its_tls_ports(pki: PKI) -> None:
    broker = BrokerProcess(
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--https-port",
        "0",
        "--storage",
        "memory",
    )
    with broker:
        ports = [broker.amqps_port, broker.mqtts_port, broker.mqtt_wss_port, broker.https_port]
        assert all(isinstance(p, int) and p > 0 for p in ports), ports
        assert len({*ports, broker.amqp_port, broker.mqtt_port, broker.http_port}) == 7
        assert broker.amqps_port is not None and broker.https_port is not None
        assert pika_round_trip(broker.amqps_port, client_context(pki.ca)) == b"over tls"
        with httpx.Client(verify=client_context(pki.ca), timeout=10.0) as http:
            reply = http.get(
                f"https://localhost:{broker.https_port}/api/overview", auth=("guest", "guest")
            )
        assert reply.status_code == 200
        # The ready line is unchanged by TLS.
        assert any(
            line.startswith(f"rapidmq ready amqp={broker.amqp_port} ") for line in broker.output
        )


def test_serve_with_an_unusable_key_says_one_line(pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "rapidmq", "serve", "--storage", "memory"),
            *("--amqp-port", "0", "--mqtt-port", "off", "--mqtt-ws-port", "off"),
            *("--http-port", "off", "--tls-cert", str(pki.server_cert), "--tls-key", str(missing)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"rapidmq: cannot read tls_key {missing}: no such file or directory; fix --tls-key"
    ]
