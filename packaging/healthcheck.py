"""The container's health check: is the broker up and accepting AMQP (or MQTT)?

Asks the management API's health endpoint, as RabbitMQ's documentation advises
for its own checks, and exits 0 when it answers 200 and 1 otherwise (Docker's
"healthy" and "unhealthy").  Standard library only, so it needs nothing the
base image may lack, and it starts in a few tens of milliseconds.

It reads the same environment as ``rapidmq serve``: RAPIDMQ_HTTP_PORT for the
port (default 15672), RAPIDMQ_DEFAULT_USER / RAPIDMQ_DEFAULT_PASS for the login
(else RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS, else guest), and it checks
the AMQP listener, or the MQTT one when RAPIDMQ_AMQP_PORT is off.  The request
comes from 127.0.0.1, so guest may log in even when loopback_users keeps guest
on localhost.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def _setting(*names: str, default: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


def main() -> int:
    port = _setting("RAPIDMQ_HTTP_PORT", default="15672")
    if port.lower() == "off":
        print("the management API is off (RAPIDMQ_HTTP_PORT=off): nothing to ask")
        return 1
    amqp_off = _setting("RAPIDMQ_AMQP_PORT", default="5672").lower() == "off"
    protocol = "mqtt" if amqp_off else "amqp"
    user = _setting("RAPIDMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_USER", default="guest")
    password = os.environ.get("RAPIDMQ_DEFAULT_PASS") or os.environ.get(
        "RABBITMQ_DEFAULT_PASS", "guest"
    )
    url = f"http://127.0.0.1:{port}/api/health/checks/protocol-listener/{protocol}"
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            print(response.status, response.read().decode("utf-8", "replace"))
            return 0
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode("utf-8", "replace"))
    except OSError as err:
        print(f"{url}: {err}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
