"""Fixtures for the management API tests: a broker in this process with HTTP on."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from rapidmq.server import Server
from tests.integration.conftest import serving


@pytest.fixture
async def admin_server(anyio_backend: str) -> AsyncIterator[Server]:
    """A broker with AMQP, MQTT and the management API on free loopback ports."""
    async with serving(http_port=0, mqtt_port=0) as srv:
        yield srv


def http_url(server: Server) -> str:
    port = server.ports["http"]
    assert port is not None
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def api(admin_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client logged in as the default administrator (guest)."""
    async with httpx.AsyncClient(
        base_url=http_url(admin_server), auth=("guest", "guest"), timeout=10.0
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so a client left unclosed fails the test that leaked it."""
    yield
    gc.collect()
