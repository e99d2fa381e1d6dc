"""The one table turning core refusals into MQTT 5 reason codes."""

from __future__ import annotations

from rapidmq.core.errors import AccessRefused, CoreError, ResourceLimitExceeded
from rapidmq.protocols.mqtt.packets import ReasonCode

__all__ = ["REASON_CODES", "reason_for"]

#: Core error -> MQTT 5 reason code; anything else is 0x80 unspecified error.
REASON_CODES: dict[type[CoreError], int] = {
    AccessRefused: ReasonCode.NOT_AUTHORIZED,
    ResourceLimitExceeded: ReasonCode.QUOTA_EXCEEDED,
}


def reason_for(err: CoreError) -> int:
    """The MQTT 5 reason code for a core refusal."""
    return REASON_CODES.get(type(err), ReasonCode.UNSPECIFIED_ERROR)
