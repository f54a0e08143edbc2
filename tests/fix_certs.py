"""
Throwaway certificates for TLS tests, made with the ``openssl`` command line tool.

``make_certs(directory)`` writes a CA (``ca.crt``/``ca.key``), a server certificate it
signed (``server.crt``/``server.key``, for ``localhost`` and ``127.0.0.1`` by default)
and a second, unrelated CA (``other.crt``/``other.key``). ``make_server_cert`` signs
more server certificates with ``ca``, for other names (a certificate naming only
``DNS:localhost``, to test host-name checks); ``make_client_cert`` signs client
certificates (``CN`` = a PostgreSQL role, for ``cert`` authentication).

The extensions are written out (key usage, key identifiers), because strict
verification (``VERIFY_X509_STRICT``, on by default since Python 3.13) refuses
certificates without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: Names of the default server certificate.
DEFAULT_SAN = "DNS:localhost,IP:127.0.0.1"


def openssl_available() -> bool:
    """Whether the ``openssl`` tool is on PATH."""
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA, ``<name>.crt`` and ``<name>.key``; returns the certificate."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN=headwater test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def _signed_cert(
    directory: Path, name: str, *, cn: str, usage: str, ca: str, extra: str = ""
) -> tuple[Path, Path]:
    """``<name>.crt`` / ``<name>.key`` for ``CN=<cn>`` and ``usage``, signed by ``<ca>``."""
    (directory / f"{name}.ext").write_text(
        extra + "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


def make_server_cert(
    directory: Path, name: str = "server", *, san: str = DEFAULT_SAN, ca: str = "ca"
) -> tuple[Path, Path]:
    """
    ``<name>.crt`` and ``<name>.key``: a server certificate for ``san`` (an openssl
    subjectAltName value, ``DNS:localhost,IP:127.0.0.1``) signed by the CA ``<ca>.crt``.
    """
    return _signed_cert(
        directory, name, cn="localhost", usage="serverAuth", ca=ca, extra=f"subjectAltName={san}\n"
    )


def make_client_cert(directory: Path, name: str, *, cn: str, ca: str = "ca") -> tuple[Path, Path]:
    """``<name>.crt`` and ``<name>.key`` (mode 0600): a client certificate for ``CN=<cn>``."""
    cert, key = _signed_cert(directory, name, cn=cn, usage="clientAuth", ca=ca)
    key.chmod(0o600)  # libpq refuses a key others can read
    return cert, key


def make_certs(directory: Path, *, san: str = DEFAULT_SAN) -> None:
    """A CA, a server certificate for ``san`` signed by it, and another CA."""
    make_ca(directory, "ca")
    make_ca(directory, "other")
    make_server_cert(directory, "server", san=san)
