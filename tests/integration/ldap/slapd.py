"""A real OpenLDAP slapd for the LDAP tests and the cache benchmark.

``ensure_slapd()`` installs Debian's slapd when it is missing (once; returns a
reason string when it cannot).  ``Slapd`` writes a slapd.conf-style
configuration into a temporary directory (mdb database, suffix
dc=example,dc=com, the core/cosine/inetorgperson schemas), loads
``fixture.ldif`` with slapadd, and runs slapd in the foreground on free ports
(LDAP, and LDAPS when given a certificate) with ``-d stats``, so that every
operation is logged to a file: :meth:`Slapd.binds` counts the BIND operations
that reached the server.  :meth:`pause` and :meth:`resume` SIGSTOP and SIGCONT
it to simulate a directory that accepts connections but never answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["BASE", "FIXTURE", "ROOT_DN", "ROOT_PW", "Slapd", "ensure_slapd"]

FIXTURE = Path(__file__).with_name("fixture.ldif")
BASE = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "root-secret"
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMAS = ("core", "cosine", "inetorgperson")
MODULE_DIRS = ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib/aarch64-linux-gnu/ldap")

_install_problem: str | None = None
_install_tried = False


def ensure_slapd() -> str | None:
    """None when slapd can run here, else why not (after one install attempt)."""
    global _install_problem, _install_tried
    if os.path.exists(SLAPD) and os.path.exists(SLAPADD):
        return None
    if _install_tried:
        return _install_problem
    _install_tried = True
    if shutil.which("apt-get") is None:
        _install_problem = "slapd is not installed and apt-get is not available"
        return _install_problem
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "slapd", "ldap-utils"]
    done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, timeout=600, check=False)
    if done.returncode != 0 or not os.path.exists(SLAPD):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        _install_problem = f"slapd could not be installed with apt-get: {' '.join(tail)}"
        return _install_problem
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Slapd:
    """One slapd child process with the fixture directory loaded."""

    def __init__(
        self, directory: Path, *, tls_cert: Path | None = None, tls_key: Path | None = None
    ) -> None:
        self.dir = directory
        self.port = free_port()
        self.ldaps_port = free_port() if tls_cert is not None else None
        self.log_path = directory / "slapd.log"
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        module_dir = next((d for d in MODULE_DIRS if os.path.exists(f"{d}/back_mdb.so")), None)
        lines = [f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS]
        if module_dir is not None:
            lines += [f"modulepath {module_dir}", "moduleload back_mdb"]
        lines += [f"pidfile {self.dir / 'slapd.pid'}", f"argsfile {self.dir / 'slapd.args'}"]
        if self.tls_cert is not None and self.tls_key is not None:
            lines += [
                f"TLSCertificateFile {self.tls_cert}",
                f"TLSCertificateKeyFile {self.tls_key}",
            ]
        lines += [
            "database mdb",
            f'suffix "{BASE}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.dir / 'db'}",
            "maxsize 16777216",
            "access to attrs=userPassword by anonymous auth by self read by * none",
            "access to * by * read",
        ]
        path = self.dir / "slapd.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self) -> None:
        (self.dir / "db").mkdir(exist_ok=True)
        config = self._config()
        subprocess.run(
            [SLAPADD, "-f", str(config), "-l", str(FIXTURE)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        urls = f"ldap://127.0.0.1:{self.port}/"
        if self.ldaps_port is not None:
            urls += f" ldaps://127.0.0.1:{self.ldaps_port}/"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [SLAPD, "-f", str(config), "-h", urls, "-d", "stats"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("slapd exited at start:\n" + self.log_path.read_text())
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("slapd did not start listening:\n" + self.log_path.read_text())

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def binds(self) -> int:
        """BIND operations slapd has received so far (from its stats log)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return sum(1 for line in text.splitlines() if " BIND dn=" in line and " method=" in line)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
