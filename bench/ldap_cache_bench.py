"""LDAP login latency uncached vs cached, and how many binds reach the directory.

Starts a real slapd (tests/integration/ldap/slapd.py, the LDAP tests' fixture
directory) and an in-process RapidMQ with ``auth_backends = internal,ldap``,
then measures:

  1. the authenticator alone (``Authenticator.authenticate``): one uncached
     login (a bind plus the group reads) against ``--logins`` cached ones;
  2. a whole AMQP connection open with pika (handshake included), uncached
     (``ldap_cache_ttl_s = 0``) against cached;
  3. the binds slapd logged during ``--logins`` repeated logins of one user
     within the TTL (must be 1).

    .venv/bin/python bench/ldap_cache_bench.py
    .venv/bin/python bench/ldap_cache_bench.py --logins 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rapidmq.auth.backends import LoginRequest
from rapidmq.auth.permissions import Permission
from rapidmq.server import Server
from tests.integration.conftest import serving
from tests.integration.ldap.slapd import Slapd, ensure_slapd

GROUPS = "ou=groups,dc=example,dc=com"


def settings(slapd: Slapd, ttl_s: float) -> dict[str, Any]:
    return {
        "auth_backends": ("internal", "ldap"),
        "ldap_servers": ("127.0.0.1",),
        "ldap_port": slapd.port,
        "ldap_user_dn_pattern": "cn=${username},ou=people,dc=example,dc=com",
        "ldap_tag_groups": f"administrator=cn=admins,{GROUPS};monitoring=cn=ops,{GROUPS}",
        "ldap_cache_ttl_s": ttl_s,
    }


def pika_open_close(port: int) -> float:
    started = time.perf_counter()
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("bob", "bob-pw"),
        connection_attempts=1,
    )
    pika.BlockingConnection(params).close()
    return time.perf_counter() - started


async def pika_latencies(server: Server, count: int) -> list[float]:
    port = server.ports["amqp"]
    assert port is not None
    return [await anyio.to_thread.run_sync(pika_open_close, port) for _ in range(count)]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.3f}"


async def main(logins: int, connections: int) -> None:
    problem = ensure_slapd()
    if problem is not None:
        sys.exit(f"ldap_cache_bench: {problem}")
    slapd = Slapd(Path(tempfile.mkdtemp(prefix="rapidmq-ldap-bench-")))
    slapd.start()
    rows: list[tuple[str, str, str]] = []
    try:
        async with serving(**settings(slapd, 60.0)) as server:
            server.permissions.set(Permission("bob", "/"))
            request = LoginRequest("amqp", "alice", "alice-pw", "127.0.0.1")
            before = slapd.binds()
            started = time.perf_counter()
            first = await server.authenticator.authenticate(request)
            uncached = time.perf_counter() - started
            assert first.user is not None
            cached: list[float] = []
            for _ in range(logins):
                started = time.perf_counter()
                result = await server.authenticator.authenticate(request)
                cached.append(time.perf_counter() - started)
                assert result.user is not None
            await anyio.sleep(0.3)  # slapd's log is written within milliseconds
            binds = slapd.binds() - before
            rows.append(("authenticator, uncached (1 login)", ms([uncached]), "-"))
            rows.append((f"authenticator, cached ({logins} logins)", ms(cached), "-"))
            await pika_latencies(server, 1)  # fills the cache for bob
            cached_open = await pika_latencies(server, connections)
        async with serving(**settings(slapd, 0.0)) as server:
            server.permissions.set(Permission("bob", "/"))
            uncached_open = await pika_latencies(server, connections)
        rows.append((f"pika connection open, uncached ({connections})", ms(uncached_open), "-"))
        rows.append((f"pika connection open, cached ({connections})", ms(cached_open), "-"))
        rows.append((f"binds at slapd during {logins + 1} logins of one user", "-", str(binds)))
    finally:
        slapd.stop()
    print(f"{'what':<48} {'median ms':>9} {'binds':>6}")
    for what, median, count in rows:
        print(f"{what:<48} {median:>9} {count:>6}")
    if binds != 1:
        sys.exit(f"ldap_cache_bench: expected 1 bind within the TTL, slapd saw {binds}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--connections", type=int, default=30)
    args = parser.parse_args()
    anyio.run(main, args.logins, args.connections, backend="trio")
