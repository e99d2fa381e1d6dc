"""packaging/grafana/rapidmq-dashboard.json: valid, and only asks for metrics /metrics has.

A renamed metric would leave a dashboard panel silently empty; this test makes
the rename fail here instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rapidmq.admin.metrics import registry_for
from rapidmq.config import Settings
from rapidmq.core.api import ClientInfo
from rapidmq.core.broker import Broker
from rapidmq.core.message_codec import MessageCodec
from rapidmq.core.persistence import Persistence
from rapidmq.protocols.amqp091.properties import decode_properties, encode_properties
from rapidmq.server import Server
from rapidmq.storage import open_stores

DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "rapidmq-dashboard.json"
_METRIC = re.compile(r"\b(?:rapidmq|process|python)_[a-z0-9_]+\b")


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


@pytest.fixture
def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name a broker with persistence and one queue exports."""
    server = Server(Settings(storage="memory", data_dir=str(tmp_path)))
    metadata, messages = open_stores(str(tmp_path), "memory")
    persistence = Persistence(messages, MessageCodec(encode_properties, decode_properties))
    broker = Broker(metadata=metadata, persistence=persistence)
    broker.restore()
    broker.alarms = server.alarms
    server.broker = broker
    conn = broker.connect("/", ClientInfo(protocol="http", peer="test", user="guest"))
    vhost = broker.vhost("/")
    assert vhost is not None
    vhost.declare_queue(conn, "orders")
    conn.close()
    names: set[str] = set()
    for family in registry_for(server).collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_in_the_dashboard_is_exported(exported_names: set[str]) -> None:
    used = {name for expr in _expressions(_dashboard()) for name in _METRIC.findall(expr)}
    assert used, "no metric found in the dashboard's expressions"
    assert used - exported_names == set()
    # The panels the dashboard exists for.
    assert {
        "rapidmq_messages_published_total",
        "rapidmq_queue_messages_ready",
        "rapidmq_protocol_connections",
        "rapidmq_protocol_channels",
        "rapidmq_process_resident_memory_bytes",
        "rapidmq_memory_limit_bytes",
        "rapidmq_disk_free_bytes",
        "rapidmq_disk_free_limit_bytes",
        "rapidmq_alarm",
        "rapidmq_file_descriptors_open",
    } <= used


def test_counters_are_only_read_through_rate() -> None:
    for expr in _expressions(_dashboard()):
        for name in re.findall(r"\b[a-z_]+_total\b", expr):
            assert re.search(rf"rate\({name}\{{[^}}]*\}}\[\$__rate_interval\]\)", expr), expr


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    [source] = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    # No two panels cover the same cell of the grid.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
