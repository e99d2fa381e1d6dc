from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from rapidmq.config import Settings
from rapidmq.server import Server


@contextlib.asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[Server]:
    """A broker in this process on free loopback ports, in memory; ``overrides`` adjust it."""
    options: dict[str, Any] = {
        "amqp_port": 0,
        "mqtt_port": None,
        "mqtt_ws_port": None,
        "http_port": None,
        "bind": "127.0.0.1",
        "storage": "memory",
    }
    options.update(overrides)
    srv = Server(Settings(**options))
    await srv.start()
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        yield srv
        await srv.stop()
        tg.cancel_scope.cancel()


@pytest.fixture
async def server(anyio_backend: str) -> AsyncIterator[Server]:
    """A broker in this process, on a free loopback port, on the test's backend."""
    async with serving() as srv:
        yield srv


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port
