"""``access.request``, which pamqp 4 no longer carries.

AMQP 0-9-1 deprecated the access class, but old clients still open with
``access.request`` and RabbitMQ answers it with ``request-ok`` (ticket 1) and
checks permissions per operation instead.  These two classes follow pamqp's
``Frame`` conventions so the codec's plans encode and decode them like any
other method.
"""

from __future__ import annotations

import typing

from pamqp.base import Frame

__all__ = ["ACCESS_METHODS", "AccessRequest", "AccessRequestOk"]


class AccessRequest(Frame):
    """access.request (class 30, method 10)."""

    __slots__: typing.ClassVar[list[str]] = [
        "active",
        "exclusive",
        "passive",
        "read",
        "realm",
        "write",
    ]
    frame_id: typing.ClassVar[int] = 10
    index: typing.ClassVar[int] = 0x001E000A
    name: typing.ClassVar[str] = "Access.Request"
    synchronous: typing.ClassVar[bool] = True

    _realm = "shortstr"
    _exclusive = "bit"
    _passive = "bit"
    _active = "bit"
    _write = "bit"
    _read = "bit"

    def __init__(
        self,
        realm: str = "/data",
        exclusive: bool = False,
        passive: bool = True,
        active: bool = True,
        write: bool = True,
        read: bool = True,
    ) -> None:
        self.realm = realm
        self.exclusive = exclusive
        self.passive = passive
        self.active = active
        self.write = write
        self.read = read


class AccessRequestOk(Frame):
    """access.request-ok (class 30, method 11)."""

    __slots__: typing.ClassVar[list[str]] = ["ticket"]
    frame_id: typing.ClassVar[int] = 11
    index: typing.ClassVar[int] = 0x001E000B
    name: typing.ClassVar[str] = "Access.RequestOk"
    synchronous: typing.ClassVar[bool] = False

    _ticket = "short"

    def __init__(self, ticket: int = 1) -> None:
        self.ticket = ticket


ACCESS_METHODS: tuple[type[Frame], ...] = (AccessRequest, AccessRequestOk)
