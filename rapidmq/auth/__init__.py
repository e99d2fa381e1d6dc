"""Who may connect: the internal user store and SASL response parsing.

``users`` keeps users with RabbitMQ-compatible salted password hashes;
``sasl`` reads the PLAIN and AMQPLAIN responses AMQP clients send.
"""

from __future__ import annotations

from rapidmq.auth.sasl import MECHANISMS, SaslError, is_loopback, parse_response
from rapidmq.auth.users import (
    HASHING_ALGORITHM,
    NoSuchUser,
    User,
    UserExists,
    UserStore,
    check_password,
    hash_password,
)

__all__ = [
    "HASHING_ALGORITHM",
    "MECHANISMS",
    "NoSuchUser",
    "SaslError",
    "User",
    "UserExists",
    "UserStore",
    "check_password",
    "hash_password",
    "is_loopback",
    "parse_response",
]
