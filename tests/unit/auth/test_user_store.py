from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.auth.users import (
    HASHING_ALGORITHM,
    NoSuchUser,
    User,
    UserExists,
    UserStore,
    check_password,
    hash_password,
)

# guest's hash as `rabbitmqctl export_definitions` printed it on RabbitMQ 3.10.8.
RABBITMQ_GUEST_HASH = "4+yH4cp+Cu8K4VcQoNPwQoIjbCg0YB9VrEb4Sgu/lIN0TJRA"


def test_hash_is_base64_of_salt_and_sha256_of_salt_and_password() -> None:
    salt = bytes([1, 2, 3, 4])
    raw = base64.b64decode(hash_password("pässword", salt))
    assert raw == salt + hashlib.sha256(salt + "pässword".encode()).digest()


def test_hash_made_by_rabbitmq_is_reproduced_from_its_salt() -> None:
    salt = base64.b64decode(RABBITMQ_GUEST_HASH)[:4]
    assert hash_password("guest", salt) == RABBITMQ_GUEST_HASH
    assert check_password("guest", RABBITMQ_GUEST_HASH)
    assert not check_password("Guest", RABBITMQ_GUEST_HASH)


@given(st.text())
def test_every_password_checks_against_its_own_hash_only(password: str) -> None:
    first, second = hash_password(password), hash_password(password)
    assert (check_password(password, first), check_password(password + "x", first)) == (
        True,
        False,
    )
    assert check_password(password, second)


def test_salt_is_random() -> None:
    hashes = {hash_password("same") for _ in range(20)}
    assert len(hashes) == 20


def test_salt_must_be_four_bytes() -> None:
    with pytest.raises(ValueError, match=r"^salt must be 4 bytes, got 3$"):
        hash_password("x", b"abc")


@pytest.mark.parametrize(
    "password_hash",
    ["", "not base64!", "é", base64.b64encode(b"short").decode(), RABBITMQ_GUEST_HASH[:-4]],
)
def test_empty_or_malformed_hash_never_matches(password_hash: str) -> None:
    assert check_password("guest", password_hash) is False


def test_store_keeps_only_a_hash_and_authenticates_with_it() -> None:
    store = UserStore()
    user = store.add_user("alice", "wonderland", tags=["monitoring"])
    assert user == User("alice", user.password_hash, ("monitoring",))
    assert "wonderland" not in user.password_hash
    assert check_password("wonderland", user.password_hash)
    assert store.get("alice") == user
    assert (
        store.authenticate("alice", "wonderland"),
        store.authenticate("alice", "Wonderland"),
        store.authenticate("bob", "wonderland"),
    ) == (user, None, None)


def test_adding_an_existing_user_is_refused() -> None:
    store = UserStore()
    store.add_user("alice", "one")
    with pytest.raises(UserExists, match=r"^user 'alice' already exists$"):
        store.add_user("alice", "two")
    assert store.authenticate("alice", "one") is not None


def test_deleted_user_can_no_longer_log_in() -> None:
    store = UserStore()
    store.add_user("alice", "pw")
    store.delete_user("alice")
    assert (store.get("alice"), store.authenticate("alice", "pw"), len(store)) == (None, None, 0)
    with pytest.raises(NoSuchUser, match=r"^no user 'alice'$"):
        store.delete_user("alice")


def test_default_store_holds_guest_as_administrator() -> None:
    store = UserStore.with_default_user()
    [guest] = list(store)
    assert (guest.name, guest.tags, guest.is_administrator) == ("guest", ("administrator",), True)
    assert store.authenticate("guest", "guest") == guest
    assert store.statistics() == {"users": 1}


def test_user_imported_with_a_rabbitmq_hash_logs_in() -> None:
    store = UserStore([User("guest", RABBITMQ_GUEST_HASH, ("administrator",))])
    assert store.authenticate("guest", "guest") == User(
        "guest", RABBITMQ_GUEST_HASH, ("administrator",)
    )
    assert [user.name for user in store] == ["guest"]


def test_user_without_a_password_hash_cannot_log_in() -> None:
    store = UserStore([User("service", "")])
    assert store.authenticate("service", "") is None


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def local_rabbitmq() -> None:
    if shutil.which("rabbitmqctl") is None or rabbitmqctl("status").returncode != 0:
        pytest.skip("no local RabbitMQ reachable with rabbitmqctl")


@pytest.mark.differential
@pytest.mark.usefixtures("local_rabbitmq")
def test_rabbitmq_checks_guest_with_the_same_algorithm() -> None:
    exported = json.loads(rabbitmqctl("export_definitions", "-").stdout)
    [guest] = [user for user in exported["users"] if user["name"] == "guest"]
    assert guest["hashing_algorithm"] == HASHING_ALGORITHM
    assert check_password("guest", guest["password_hash"])


@pytest.mark.differential
@pytest.mark.usefixtures("local_rabbitmq")
def test_rabbitmq_accepts_a_hash_made_by_rapidmq() -> None:
    name = f"rapidmq-test-{uuid.uuid4().hex[:12]}"
    user = UserStore().add_user(name, "s3cret pässword", tags=["monitoring"])
    definitions = {
        "users": [
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(user.tags),
            }
        ]
    }
    # rabbitmqctl runs as the rabbitmq user, so the file must be readable by others.
    with tempfile.TemporaryDirectory(prefix="rapidmq-definitions-") as folder:
        os.chmod(folder, 0o755)
        file = Path(folder, "definitions.json")
        file.write_text(json.dumps(definitions), encoding="utf-8")
        file.chmod(0o644)
        imported = rabbitmqctl("import_definitions", str(file))
    assert imported.returncode == 0, imported.stderr
    try:
        right = rabbitmqctl("authenticate_user", name, "s3cret pässword")
        wrong = rabbitmqctl("authenticate_user", name, "s3cret passwort")
        assert (right.returncode, wrong.returncode != 0) == (0, True)
    finally:
        rabbitmqctl("delete_user", name)
