"""Fixtures for the core's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from core_support import WALL_CLOCK_S, Client, FakeClock, Stores, connect

from rapidmq.core import Broker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(clock=clock, wall_clock=lambda: WALL_CLOCK_S)


@pytest.fixture
def client(broker: Broker) -> Client:
    return connect(broker)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    stores = Stores(tmp_path / "data")
    yield stores
    stores.close()
