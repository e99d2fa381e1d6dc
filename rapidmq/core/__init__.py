"""RapidMQ's protocol-neutral core: vhosts, exchanges, queues, consumers. No I/O.

Front ends use :class:`Broker`, :class:`CoreConnection` and :class:`Session`,
the records of :mod:`rapidmq.core.api` and the errors of :mod:`rapidmq.core.errors`.
"""

from __future__ import annotations

from rapidmq.core.api import (
    ClientInfo,
    DeliverySink,
    GetResult,
    PublishResult,
    QueueDeclareResult,
)
from rapidmq.core.broker import Broker, CoreConnection
from rapidmq.core.errors import (
    AccessRefused,
    CommandInvalid,
    CoreError,
    NotAllowed,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLimitExceeded,
    ResourceLocked,
    StorageFailed,
)
from rapidmq.core.exchange import Exchange, ExchangeType
from rapidmq.core.message import Message, Properties
from rapidmq.core.queue import Queue
from rapidmq.core.session import Session
from rapidmq.core.vhost import VirtualHost

__all__ = [
    "AccessRefused",
    "Broker",
    "ClientInfo",
    "CommandInvalid",
    "CoreConnection",
    "CoreError",
    "DeliverySink",
    "Exchange",
    "ExchangeType",
    "GetResult",
    "Message",
    "NotAllowed",
    "NotFound",
    "NotImplementedFeature",
    "PreconditionFailed",
    "Properties",
    "PublishResult",
    "Queue",
    "QueueDeclareResult",
    "ResourceLimitExceeded",
    "ResourceLocked",
    "Session",
    "StorageFailed",
    "VirtualHost",
]
