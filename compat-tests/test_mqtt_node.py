"""Node's mqtt.js (compat-tests/node) against the MQTT broker under test.

The session fixture installs the pinned mqtt.js with ``npm ci`` when
``compat-tests/node/node_modules`` is missing, outside any test's time budget;
without node or npm, or when the install fails, the tests skip and say why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mqtt_support import MQTTScratch

NODE_DIR = Path(__file__).parent / "node"
INSTALL_TIMEOUT_S = 120.0
SCRIPT_TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with mqtt.js installed next to the scripts."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "mqtt").is_dir():
        if npm_bin is None:
            pytest.skip("npm is not installed, and compat-tests/node/node_modules is missing")
        try:
            proc = subprocess.run(
                [npm_bin, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                capture_output=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci took more than {INSTALL_TIMEOUT_S}s")
        if proc.returncode != 0:
            pytest.skip(f"npm ci failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return node_bin


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_mqtt_js_subscribes_publishes_and_receives_at_each_qos(
    node: str, mqtt: MQTTScratch, version: int
) -> None:
    proc = subprocess.run(
        [
            node,
            str(NODE_DIR / "mqtt_roundtrip.js"),
            mqtt.endpoint.host,
            str(mqtt.endpoint.port),
            str(version),
            mqtt.topic("js"),
            mqtt.token,
        ],
        capture_output=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = sorted(json.loads(proc.stdout), key=lambda m: m["topic"])
    v5 = version == 5
    assert got == [
        {
            "topic": mqtt.topic("js", f"q{qos}"),
            "payload": f"qos{qos}",
            "qos": qos,
            "retain": False,
            "userProperties": {"n": str(qos)} if v5 else None,
            "contentType": "text/plain" if v5 else None,
        }
        for qos in (0, 1, 2)
    ]
