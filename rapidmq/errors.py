"""The root of every error RapidMQ raises on purpose.

RapidMQError
├── core.errors.CoreError          (a client asked the core for something it refuses)
│   ├── NotFound                   404
│   ├── AccessRefused              403
│   ├── ResourceLocked             405
│   ├── PreconditionFailed         406
│   ├── ResourceLimitExceeded      (limits: queue/connection counts)
│   ├── NotAllowed                 530 (connection scope)
│   ├── CommandInvalid             503 (connection scope)
│   ├── NotImplementedFeature      540 (connection scope)
│   └── StorageFailed              541 (a durable write failed; connection scope)
├── protocols.amqp091.errors.FrameError   (malformed bytes; closes the connection)
├── protocols.mqtt.errors.MQTTProtocolError (malformed MQTT; closes the connection)
├── storage.api.StorageError       (the data dir cannot be opened or written)
└── ConfigError                    (bad configuration; stops start-up with one line)
"""

from __future__ import annotations

__all__ = ["ConfigError", "RapidMQError"]


class RapidMQError(Exception):
    """Root of RapidMQ's own exceptions."""


class ConfigError(RapidMQError):
    """Bad configuration. ``str(err)`` is one line that says what to fix."""

    def __init__(self, text: str) -> None:
        one_line = " ".join(text.split())
        if not one_line.startswith("rapidmq: "):
            one_line = "rapidmq: " + one_line
        super().__init__(one_line)
