"""
A certified OAuth 2.0 authorization server (panva's ``oidc-provider``, from npm) for tests.

* ``oidc-provider`` is installed once into a cache directory outside the repository:
  ``HEADWATER_OIDC_DIR`` (default ``~/.cache/headwater-tests/oidc-provider``), under a file
  lock so parallel runs do not install it twice. ``tests/oidc/server.mjs`` is copied next
  to its ``node_modules`` (Node resolves an ESM ``import`` from the script's directory).
* ``oidc_server`` (session) starts that script on a free loopback port with the clients
  below — one per client authentication method — 3-second access tokens and rotating
  refresh tokens; a small API on the same server (``/api/items``) needs a valid token.
* Without node/npm (or when the server cannot start) the tests skip locally and fail in CI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._npm import npm_install
from tests.fix_services import service_unavailable

OIDC_PROVIDER_VERSION = "9"
SERVER_SCRIPT = Path(__file__).parent / "oidc" / "server.mjs"
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 30.0
#: Access-token lifetime, seconds: short, so reads outlast several tokens.
TOKEN_TTL = 3
#: The RFC 8707 resource the API's /api/resource-items accepts tokens for.
RESOURCE = "https://api.headwater.test/"

#: Credentials that need form-urlencoding in a Basic header (RFC 6749 §2.3.1).
BASIC_ID = "svc:reader"
BASIC_SECRET = "s3cr+t%2F/with=pad%zz"
POST_ID = "post-client"
POST_SECRET = "post+secret%/=value"
#: client_secret_jwt: HS256 needs a secret of at least 32 bytes.
JWT_SECRET_ID = "jwt-secret-client"
JWT_SECRET = "hs256+shared%secret/that=is-long-enough-0123456789"
KEY_ID = "key-jwt-client"
REFRESH_ID = "refresh-client"
REFRESH_SECRET = "refresh+secret/=%"
#: Every secret the fixture hands out; no test output may contain any of them.
OIDC_SECRETS = (BASIC_SECRET, POST_SECRET, JWT_SECRET, REFRESH_SECRET)


class OidcUnavailable(RuntimeError):
    """oidc-provider cannot be installed or started here; the message says why."""


def default_dir() -> Path:
    """Where oidc-provider is installed: ``HEADWATER_OIDC_DIR`` or the user's cache."""
    configured = os.environ.get("HEADWATER_OIDC_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "headwater-tests" / "oidc-provider"


def ensure_installed(directory: Path) -> Path:
    """The directory holding ``node_modules/oidc-provider``, installing it if needed."""
    marker = directory / "node_modules" / "oidc-provider" / "package.json"
    npm_install(
        directory,
        f"oidc-provider@{OIDC_PROVIDER_VERSION}",
        marker,
        timeout=INSTALL_TIMEOUT,
        unavailable=OidcUnavailable,
    )
    return directory


@dataclasses.dataclass
class ClientKeys:
    """The private keys of the private_key_jwt client (PEM), by algorithm."""

    rsa_pem: str
    ec_pem: str

    @classmethod
    def generate(cls) -> ClientKeys:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        def pem(key: Any) -> str:
            return str(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            )

        return cls(
            pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            pem(ec.generate_private_key(ec.SECP256R1())),
        )

    def public_jwks(self) -> list[dict[str, Any]]:
        """The public halves as JWKs (``kid`` = ``rsa`` / ``ec``), for the client's ``jwks``."""
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        return [
            {**RSAAlgorithm.to_jwk(_public_key(self.rsa_pem), as_dict=True), "kid": "rsa"},
            {**ECAlgorithm.to_jwk(_public_key(self.ec_pem), as_dict=True), "kid": "ec"},
        ]


def _public_key(pem: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem.encode(), password=None).public_key()


def client_metadata(keys: ClientKeys) -> list[dict[str, Any]]:
    """The registered clients: one per token endpoint authentication method."""
    credentials = {"grant_types": ["client_credentials"], "redirect_uris": [],
                   "response_types": [], "scope": "api:read"}  # fmt: skip
    return [
        {**credentials, "client_id": BASIC_ID, "client_secret": BASIC_SECRET,
         "token_endpoint_auth_method": "client_secret_basic"},
        {**credentials, "client_id": POST_ID, "client_secret": POST_SECRET,
         "token_endpoint_auth_method": "client_secret_post"},
        {**credentials, "client_id": JWT_SECRET_ID, "client_secret": JWT_SECRET,
         "token_endpoint_auth_method": "client_secret_jwt"},
        {**credentials, "client_id": KEY_ID, "token_endpoint_auth_method": "private_key_jwt",
         "jwks": {"keys": keys.public_jwks()}},
        {"client_id": REFRESH_ID, "client_secret": REFRESH_SECRET,
         "grant_types": ["authorization_code", "refresh_token"],
         "redirect_uris": ["https://app.headwater.test/callback"], "response_types": ["code"],
         "token_endpoint_auth_method": "client_secret_basic"},
    ]  # fmt: skip


@dataclasses.dataclass
class OidcServer:
    """A running oidc-provider with its protected API."""

    issuer: str
    keys: ClientKeys
    process: subprocess.Popen[str] | None = None
    workdir: Path | None = None

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    @property
    def api_url(self) -> str:
        """base_url of the protected API."""
        return self.issuer + "/api"

    def stats(self) -> dict[str, Any]:
        """Tokens issued per client (``grants``) and API answers by status (``api``)."""
        import httpx

        data: dict[str, Any] = httpx.get(self.issuer + "/test/stats", timeout=5).json()
        return data

    def grants(self, client_id: str) -> int:
        """How many tokens the server has issued to ``client_id``."""
        return int(self.stats()["grants"].get(client_id, 0))

    def new_refresh_token(self, client_id: str = REFRESH_ID) -> str:
        """A fresh refresh token of ``client_id`` for a test user (no browser login)."""
        import httpx

        response = httpx.post(
            self.issuer + "/test/refresh-token", params={"client_id": client_id}, timeout=5
        )
        response.raise_for_status()
        return str(response.json()["refresh_token"])

    def revoke(self, token: str, client_id: str = REFRESH_ID, secret: str = REFRESH_SECRET) -> None:
        """Revoke ``token`` at the server's RFC 7009 revocation endpoint."""
        import httpx

        response = httpx.post(
            self.issuer + "/token/revocation",
            data={"token": token, "client_id": client_id, "client_secret": secret},
            timeout=5,
        )
        response.raise_for_status()

    def stop(self) -> None:
        """Stop the process (if this object started it) and remove its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_oidc(directory: Path | None = None) -> OidcServer:
    """Install (if needed) and start the server on a free loopback port; wait for it."""
    installed = ensure_installed(directory or default_dir())
    node = shutil.which("node")
    if not node:
        raise OidcUnavailable("node is not on PATH")
    script = installed / "headwater-oidc-server.mjs"
    # Copied on every start (atomically) so an edited script in the repository is what runs.
    tmp_script = installed / f".server-{os.getpid()}-{threading.get_ident()}.mjs"
    tmp_script.write_text(SERVER_SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    tmp_script.replace(script)
    keys = ClientKeys.generate()
    workdir = Path(tempfile.mkdtemp(prefix="headwater-oidc-"))
    config = workdir / "config.json"
    config.write_text(
        json.dumps({"clients": client_metadata(keys), "ttl": TOKEN_TTL, "resource": RESOURCE})
    )
    log = workdir / "server.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [node, str(script), str(config)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=installed,
        )  # fmt: skip
    server = OidcServer("", keys, process, workdir)
    line: list[str] = []
    reader = threading.Thread(
        target=lambda: line.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].strip():
        tail = (log.read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        server.stop()
        raise OidcUnavailable(f"oidc-provider did not start: {tail}")
    server.issuer = json.loads(line[0])["issuer"]
    return server


@pytest.fixture(scope="session")
def oidc_server() -> Iterator[OidcServer]:
    """A running oidc-provider for the session (skips locally / fails in CI without it)."""
    try:
        running = start_oidc()
    except OidcUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield running
    finally:
        running.stop()
