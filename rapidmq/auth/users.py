"""The internal user store: names, salted password hashes and tags.

Passwords are kept only as hashes in RabbitMQ's ``rabbit_password_hashing_sha256``
format: base64 of a 4-byte random salt followed by ``sha256(salt + utf8 password)``.
Hashes exported from RabbitMQ (``rabbitmqctl export_definitions``) therefore work
here unchanged, and hashes made here import into RabbitMQ.

With a metadata store, each change is written (a ``user`` record holding name,
password hash and tags) before it takes effect, and :meth:`UserStore.restore`
reads the users back at start-up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rapidmq.errors import RapidMQError
from rapidmq.storage.api import MetadataStore

__all__ = [
    "HASHING_ALGORITHM",
    "NoSuchUser",
    "User",
    "UserExists",
    "UserStore",
    "check_password",
    "hash_password",
]

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
"""The ``hashing_algorithm`` value RabbitMQ's definitions carry for these hashes."""

_SALT_BYTES = 4
_DIGEST_BYTES = hashlib.sha256().digest_size


class UserExists(RapidMQError):
    """A user of that name already exists."""


class NoSuchUser(RapidMQError):
    """No user of that name exists."""


@dataclass(slots=True, frozen=True)
class User:
    """One user. ``password_hash`` is empty for a user who cannot log in by password."""

    name: str
    password_hash: str
    tags: tuple[str, ...] = ()

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.tags


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Hash ``password`` as RabbitMQ's ``rabbit_password_hashing_sha256`` does.

    Args:
        password: the clear-text password.
        salt: 4 bytes; a random salt when omitted (only tests pass one).
    """
    if salt is None:
        salt = os.urandom(_SALT_BYTES)
    elif len(salt) != _SALT_BYTES:
        raise ValueError(f"salt must be {_SALT_BYTES} bytes, got {len(salt)}")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    """True if ``password`` matches ``password_hash``; False for an empty or malformed hash."""
    try:
        raw = base64.b64decode(password_hash.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    if len(raw) != _SALT_BYTES + _DIGEST_BYTES:
        return False
    salt, expected = raw[:_SALT_BYTES], raw[_SALT_BYTES:]
    actual = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return hmac.compare_digest(actual, expected)


# Compared against when the user does not exist, so that a missing user costs
# the same time as a wrong password and names cannot be probed by timing.
_UNMATCHABLE_HASH = hash_password(os.urandom(16).hex())


class UserStore:
    """The users RapidMQ knows, by name, optionally kept in a metadata store.

    Every change raises :class:`~rapidmq.storage.api.StorageError` (and does
    not take effect) when the store cannot write it.
    """

    __slots__ = ("_metadata", "_users")

    def __init__(
        self, users: Iterable[User] = (), *, metadata: MetadataStore | None = None
    ) -> None:
        self._users: dict[str, User] = {}
        self._metadata = metadata
        for user in users:
            self.put(user)

    def restore(self) -> int:
        """Read every stored user back, writing nothing; returns how many.

        Raises:
            StorageError: the store failed.
        """
        if self._metadata is None:
            return 0
        count = 0
        for (name,), value in self._metadata.items("user"):
            tags = value.get("tags", [])
            self._users[name] = User(name, str(value.get("password_hash", "")), tuple(tags))
            count += 1
        return count

    def _record(self, user: User) -> None:
        if self._metadata is not None:
            value = {
                "name": user.name,
                "password_hash": user.password_hash,
                "tags": list(user.tags),
            }
            self._metadata.put("user", (user.name,), value)

    @classmethod
    def with_default_user(cls, name: str = "guest", password: str = "guest") -> UserStore:
        """A store holding only the default user, tagged ``administrator``."""
        store = cls()
        store.add_user(name, password, tags=("administrator",))
        return store

    def add_user(self, name: str, password: str, tags: Iterable[str] = ()) -> User:
        """Create a user whose password is stored only as a salted hash.

        Raises:
            UserExists: a user of that name already exists.
        """
        if name in self._users:
            raise UserExists(f"user '{name}' already exists")
        user = User(name, hash_password(password), tuple(tags))
        self._record(user)
        self._users[name] = user
        return user

    def put(self, user: User) -> None:
        """Create or replace a user as given, e.g. from imported definitions."""
        self._record(user)
        self._users[user.name] = user

    def delete_user(self, name: str) -> None:
        """Remove a user.

        Raises:
            NoSuchUser: no user of that name exists.
        """
        if name not in self._users:
            raise NoSuchUser(f"no user '{name}'")
        if self._metadata is not None:
            self._metadata.delete("user", (name,))
        del self._users[name]

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None. Takes the same time either way."""
        user = self._users.get(name)
        stored = user.password_hash if user is not None else _UNMATCHABLE_HASH
        matched = check_password(password, stored)
        return user if matched and user is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._users

    def __iter__(self) -> Iterator[User]:
        return iter(sorted(self._users.values(), key=lambda user: user.name))

    def __len__(self) -> int:
        return len(self._users)

    def statistics(self) -> dict[str, int]:
        return {"users": len(self._users)}
