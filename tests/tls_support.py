"""Certificates for the TLS tests, made with the ``openssl`` command on each run.

``make_pki(directory)`` writes a test CA, a server certificate for 127.0.0.1 and
localhost, client certificates with CN "alice" and CN "guest", an expired client
certificate, and a client certificate from another CA (which the broker does not
trust).  Keys are 2048-bit RSA and unencrypted.  The ``cryptography`` package is not
a dependency of RapidMQ, so the command line tool does the work.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PKI", "client_context", "make_pki", "openssl_available"]


@dataclass(frozen=True)
class PKI:
    """Paths of the generated PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    alice_cert: Path
    alice_key: Path
    guest_cert: Path
    guest_key: Path
    expired_cert: Path
    expired_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN=RapidMQ test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
        cwd=d,
    )  # fmt: skip
    return cert, key


def _signed(
    d: Path,
    name: str,
    cn: str,
    ca: tuple[Path, Path],
    extensions: str,
    dates: tuple[str, str] | None = None,
) -> tuple[Path, Path]:
    """A key and a certificate for ``cn`` signed by ``ca``, valid now or over ``dates``."""
    cert, key, csr, ext = d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    _run(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
        "-keyout", str(key), "-out", str(csr),
        cwd=d,
    )  # fmt: skip
    ext.write_text(extensions + "\n")
    if dates is None:
        _run(
            "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
            cwd=d,
        )  # fmt: skip
        return cert, key
    # `openssl x509` cannot back-date a certificate; `openssl ca` takes explicit dates.
    db = d / f"{name}-db"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    conf = db / "ca.cnf"
    conf.write_text(
        "[ca]\ndefault_ca = test\n"
        "[test]\n"
        f"dir = {db}\ndatabase = {db}/index.txt\nserial = {db}/serial\n"
        f"new_certs_dir = {db}\ndefault_md = sha256\npolicy = any\n"
        "unique_subject = no\ncopy_extensions = none\n"
        "[any]\ncommonName = supplied\n"
    )
    _run(
        "ca", "-batch", "-config", str(conf), "-cert", str(ca[0]), "-keyfile", str(ca[1]),
        "-startdate", dates[0], "-enddate", dates[1], "-extfile", str(ext),
        "-in", str(csr), "-out", str(cert), "-notext",
        cwd=d,
    )  # fmt: skip
    return cert, key


_SERVER_EXT = (
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost"
)
_CLIENT_EXT = (
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=clientAuth"
)


def make_pki(directory: Path) -> PKI:
    """Write every test certificate under ``directory`` (a fresh directory)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    other = _ca(d, "other-ca")
    server = _signed(d, "server", "localhost", ca, _SERVER_EXT)
    alice = _signed(d, "alice", "alice", ca, _CLIENT_EXT)
    guest = _signed(d, "guest", "guest", ca, _CLIENT_EXT)
    expired = _signed(
        d, "expired", "alice", ca, _CLIENT_EXT, dates=("20200101000000Z", "20200201000000Z")
    )
    stranger = _signed(d, "stranger", "alice", other, _CLIENT_EXT)
    return PKI(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        alice_cert=alice[0],
        alice_key=alice[1],
        guest_cert=guest[0],
        guest_key=guest[1],
        expired_cert=expired[0],
        expired_key=expired[1],
        other_ca=other[0],
        stranger_cert=stranger[0],
        stranger_key=stranger[1],
    )


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts ``ca`` and presents ``cert`` if given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
