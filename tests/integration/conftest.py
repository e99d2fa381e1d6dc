from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from rapidmq.config import Settings
from rapidmq.server import Server


@pytest.fixture
async def server(anyio_backend: str) -> AsyncIterator[Server]:
    """A broker in this process, on a free loopback port, on the test's backend."""
    settings = Settings(
        amqp_port=0,
        mqtt_port=None,
        mqtt_ws_port=None,
        http_port=None,
        bind="127.0.0.1",
        storage="memory",
    )
    srv = Server(settings)
    await srv.start()
    async with anyio.create_task_group() as tg:
        await tg.start(srv.serve)
        yield srv
        await srv.stop()
        tg.cancel_scope.cancel()


def amqp_port(server: Server) -> int:
    port = server.ports["amqp"]
    assert port is not None
    return port
