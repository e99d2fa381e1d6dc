"""The server's TLS context: what it enforces, and the one-line errors for bad files."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapidmq.config import Settings
from rapidmq.transport.tcp import ListenError
from rapidmq.transport.tls import TLSConfigError, server_context
from tests.tls_support import PKI, make_pki, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PKI]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


def _settings(pki: PKI, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "tls_cert": str(pki.server_cert),
        "tls_key": str(pki.server_key),
        "tls_ca": str(pki.ca),
    }
    options.update(overrides)
    return Settings(**options)  # type: ignore[arg-type]


def _error(settings: Settings) -> str:
    with pytest.raises(TLSConfigError) as info:
        server_context(settings)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_context_enforces_tls12_and_forward_secret_ciphers(pki: PKI) -> None:
    context = server_context(_settings(pki))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["kea"] in ("kx-ecdhe", "kx-dhe") and c["aead"] for c in tls12), tls12


def test_verify_modes_follow_the_settings(pki: PKI) -> None:
    optional = server_context(_settings(pki, tls_verify_peer=True))
    assert optional.verify_mode == ssl.CERT_OPTIONAL
    required = server_context(_settings(pki, tls_verify_peer=True, tls_fail_if_no_peer_cert=True))
    assert required.verify_mode == ssl.CERT_REQUIRED


def test_missing_certificate_file_names_the_setting(pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    text = _error(_settings(pki, tls_cert=str(missing)))
    assert text == f"cannot read tls_cert {missing}: no such file or directory; fix --tls-cert"


def test_missing_key_and_ca_files_name_their_settings(pki: PKI, tmp_path: Path) -> None:
    assert _error(_settings(pki, tls_key=str(tmp_path / "k"))).startswith("cannot read tls_key ")
    assert _error(_settings(pki, tls_ca=str(tmp_path / "c"))).startswith("cannot read tls_ca ")


def test_key_of_another_certificate_is_refused(pki: PKI) -> None:
    text = _error(_settings(pki, tls_key=str(pki.alice_key)))
    assert text == (
        f"tls_key {pki.alice_key} does not match the certificate in tls_cert "
        f"{pki.server_cert}; give the key of that certificate with --tls-key"
    )


def test_file_that_is_not_a_certificate_is_refused(pki: PKI, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert _error(_settings(pki, tls_cert=str(junk))).startswith(
        f"tls_cert {junk} holds no PEM certificate"
    )
    assert _error(_settings(pki, tls_ca=str(junk))).startswith(
        f"tls_ca {junk} holds no PEM certificate"
    )
    # A certificate where the key belongs is not a key.
    assert _error(_settings(pki, tls_key=str(pki.ca))).startswith(
        f"tls_key {pki.ca} holds no usable PEM private key"
    )


def test_encrypted_key_is_refused_without_prompting(pki: PKI, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            *("openssl", "pkey", "-in", str(pki.server_key), "-aes256"),
            *("-passout", "pass:secret", "-out", str(encrypted)),
        ],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    text = _error(_settings(pki, tls_key=str(encrypted)))
    assert text == f"tls_key {encrypted} is encrypted; give an unencrypted key with --tls-key"


def test_verify_peer_needs_a_ca(pki: PKI) -> None:
    text = _error(_settings(pki, tls_ca="", tls_verify_peer=True))
    assert "tls_verify_peer" in text and "--tls-ca" in text


def test_errors_are_reported_like_listen_errors(pki: PKI, tmp_path: Path) -> None:
    """start-up prints a ListenError as one line and exits 1; a TLS error goes the same way."""
    with pytest.raises(ListenError):
        server_context(_settings(pki, tls_cert=str(tmp_path / "missing.pem")))
