"""Certificate logins over real TLS: SASL EXTERNAL for AMQP, the certificate's CN for MQTT.

As RabbitMQ's rabbitmq_auth_mechanism_ssl and MQTT ssl_cert_login: the CN of a
verified client certificate is the user name, which must be an existing
internal user; no password is checked.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pika
import pika.credentials
import pika.exceptions
import pytest

from rapidmq.auth.permissions import Permission
from rapidmq.protocols.mqtt.packets import MQTT_3_1_1, ConnAck, Connect
from rapidmq.server import Server
from tests.integration.conftest import serving
from tests.integration.mqtt_fixtures import MQTTClient
from tests.tls_support import PKI, client_context, make_pki, openssl_available

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    if not openssl_available():
        pytest.skip("openssl is needed to make the test certificates")
    return make_pki(tmp_path_factory.mktemp("cert-login"))


@pytest.fixture
async def tls_server(pki: PKI, anyio_backend: str) -> AsyncIterator[Server]:
    async with serving(
        mqtt_port=0,
        amqps_port=0,
        mqtts_port=0,
        mqtt_wss_port=None,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_ca=str(pki.ca),
        tls_verify_peer=True,
    ) as server:
        if server.ports.get("amqps") is None:
            pytest.skip("this server has no amqps listener yet")
        server.users.add_user("alice", "unused-password", tags=())
        server.permissions.set(Permission("alice", "/"))
        yield server


def port(server: Server, name: str) -> int:
    value = server.ports[name]
    assert value is not None
    return value


def context(pki: PKI, *, with_cert: bool) -> ssl.SSLContext:
    if with_cert:
        return client_context(pki.ca, pki.alice_cert, pki.alice_key)
    return client_context(pki.ca)


def amqps_users(server: Server, pki: PKI, *, with_cert: bool) -> list[str]:
    """Open an AMQPS connection with EXTERNAL; the users the broker sees logged in."""
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port(server, "amqps"),
        ssl_options=pika.SSLOptions(context(pki, with_cert=with_cert), "localhost"),
        credentials=pika.credentials.ExternalCredentials(),
        connection_attempts=1,
        socket_timeout=10,
    )
    conn = pika.BlockingConnection(params)
    try:
        return [getattr(h, "user", "") for _, h in server.protocol_connections()]
    finally:
        conn.close()


async def test_sasl_external_logs_in_as_the_certificate_cn(tls_server: Server, pki: PKI) -> None:
    users = await anyio.to_thread.run_sync(lambda: amqps_users(tls_server, pki, with_cert=True))
    assert users == ["alice"]


async def test_external_is_not_offered_without_a_client_certificate(
    tls_server: Server, pki: PKI
) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError) as info:
        await anyio.to_thread.run_sync(lambda: amqps_users(tls_server, pki, with_cert=False))
    assert "EXTERNAL" in repr(info.value) or "mechanism" in repr(info.value).lower()


async def test_external_needs_an_existing_internal_user(tls_server: Server, pki: PKI) -> None:
    tls_server.users.delete_user("alice")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        await anyio.to_thread.run_sync(lambda: amqps_users(tls_server, pki, with_cert=True))
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL" in str(
        info.value
    )


async def mqtts_connack(server: Server, pki: PKI, **connect: object) -> tuple[ConnAck, list[str]]:
    stream = await anyio.connect_tcp(
        "127.0.0.1",
        port(server, "mqtts"),
        ssl_context=context(pki, with_cert=True),
        tls_hostname="localhost",
        tls_standard_compatible=False,
    )
    client = MQTTClient(stream, MQTT_3_1_1)  # type: ignore[arg-type]
    try:
        await client.send(Connect(MQTT_3_1_1, f"cert-{time.time_ns()}", True, 0, **connect))  # type: ignore[arg-type]
        ack = await client.recv()
        assert isinstance(ack, ConnAck)
        users = [getattr(h, "user", "") for _, h in server.protocol_connections()]
    finally:
        await client.aclose()
    return ack, users


async def test_mqtt_without_a_user_name_logs_in_as_the_certificate_cn(
    tls_server: Server, pki: PKI
) -> None:
    ack, users = await mqtts_connack(tls_server, pki)
    assert ack == ConnAck(False, 0)
    assert users == ["alice"]
    # A user name given alongside the certificate is an ordinary password login.
    ack, users = await mqtts_connack(tls_server, pki, username="alice", password=b"wrong")
    assert ack.reason_code == 5


async def test_mqtt_certificate_login_needs_an_existing_user(tls_server: Server, pki: PKI) -> None:
    tls_server.users.delete_user("alice")
    ack, _ = await mqtts_connack(tls_server, pki)
    assert ack.reason_code == 5
