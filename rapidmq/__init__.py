"""RapidMQ: a message broker that AMQP 0-9-1 and MQTT clients can simply be pointed at."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
