"""
The ``postgres`` connector's configuration, and how it becomes libpq connection parameters.

A config names the server either by URL (``postgresql://user@host:5432/db?sslmode=...``)
or by parameters (``host``, ``port``, ``dbname``, ``user``); the two are exclusive.
Everything else (password, TLS, timeouts, pool) applies to both.

A password written into the URL is taken out of it when the config is built and kept
as a `headwater.Secret` in ``password``, so the config's URL, repr and sanitized view
never contain it. Like any secret field it may be a reference: in
``postgresql://app:env:PGPASSWORD@db/prod`` the password is resolved from the
environment variable when a connection is made (percent-encode ``/`` and ``@`` in a
reference: ``keyring:pg%2Fapp``).

Nothing here imports psycopg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from headwater import ConnectorConfig, Secret
from headwater.toolkit import BreakerSettings, RetrySettings, is_credential_name
from headwater_postgres.__about__ import __version__

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

#: Fields that name the server; with ``url`` they are refused (the URL names it).
TARGET_FIELDS = ("host", "port", "dbname", "user")

#: Config fields that are libpq TLS parameters of the same name.
TLS_FIELDS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")

#: Query parameters a URL may carry that the config also has as fields; both given and
#: different is an error, so a URL's ``sslmode=verify-full`` is never silently weakened.
#: Connection settings that also have a default here: a URL's query may set them instead.
_DEFAULTED_URL_PARAMS = (
    "connect_timeout",
    "application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
)
_URL_PARAM_FIELDS = (*TLS_FIELDS, *_DEFAULTED_URL_PARAMS, "options")

DEFAULT_APPLICATION_NAME = f"headwater-postgres/{__version__}"


class DatabaseRetrySettings(RetrySettings):
    """
    The shared retry settings with a database's defaults: fewer and shorter tries than an
    HTTP API's, so a wrong port fails in about 2 s while a restarting server is waited for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="RetrySettings")

    attempts: int = Field(default=3, ge=1, description="Tries per call, the first included.")
    maximum: float = Field(default=5.0, ge=0, description="Longest back-off, seconds.")
    timeout: float = Field(
        default=30.0, gt=0, description="Give up retrying one call after this long."
    )


class PostgresConfig(ConnectorConfig):
    """
    Configuration of the ``postgres`` connector.

    Give either ``url`` or ``host`` (+ ``port``, ``dbname``, ``user``). Examples::

        {"url": "postgresql://reporting@db.internal:5432/sales?sslmode=verify-full",
         "password": "keyring:db.internal/reporting", "sslrootcert": "/etc/ssl/corp-ca.pem"}

        {"host": "127.0.0.1", "dbname": "test", "user": "postgres"}
    """

    model_config = ConnectorConfig.model_config | {
        "json_schema_extra": {
            # A form builder shows the two ways to name the server as alternatives.
            "oneOf": [
                {
                    "title": "Connection URL",
                    "required": ["url"],
                    "not": {"anyOf": [{"required": [f]} for f in TARGET_FIELDS]},
                },
                {
                    "title": "Connection parameters",
                    "required": ["host"],
                    "not": {"required": ["url"]},
                },
            ]
        }
    }

    url: str | None = Field(
        default=None,
        description="libpq connection URL, postgresql://[user[:password]@]host[:port]/dbname"
        "[?param=value...]. Exclusive with host/port/dbname/user. A password in it is moved "
        "to `password` (it may be a secret reference such as env:PGPASSWORD).",
        examples=["postgresql://reporting@db.internal:5432/sales?sslmode=verify-full"],
    )
    host: str | None = Field(
        default=None,
        description="Server host name or IP address (or a Unix socket directory).",
        examples=["db.internal"],
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Server TCP port (default 5432)."
    )
    dbname: str | None = Field(default=None, description="Database name.")
    user: str | None = Field(default=None, description="Role to log in as.")
    password: Secret | None = Field(
        default=None,
        description="Password: a literal or a secret reference (env:NAME, file:PATH, "
        "keyring:SERVICE/USERNAME), resolved on every new connection so rotation works.",
    )
    options: str | None = Field(
        default=None,
        description="libpq `options` sent to the server at start-up, e.g. "
        "'-c search_path=sales,public'.",
    )
    sslmode: SslMode | None = Field(
        default=None,
        description="TLS mode. libpq's default is 'prefer'; use 'verify-full' to check the "
        "server certificate and host name. Never weakened silently: a URL sslmode that "
        "disagrees with this field is a config error.",
    )
    sslrootcert: str | None = Field(
        default=None,
        description="CA certificate file (PEM) to verify the server with; 'system' uses the "
        "operating system's store.",
    )
    sslcert: Path | None = Field(default=None, description="Client certificate file (PEM).")
    sslkey: Path | None = Field(default=None, description="Client private key file (PEM).")
    sslcrl: Path | None = Field(default=None, description="Certificate revocation list file.")
    connect_timeout: int = Field(
        default=10, ge=2, le=600, description="Seconds to wait for a connection (libpq, >= 2)."
    )
    statement_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds after which the server cancels a statement; unset means no limit.",
    )
    keepalives: bool = Field(default=True, description="TCP keepalives on the connection.")
    keepalives_idle: int = Field(
        default=30, ge=1, description="Seconds of idleness before TCP keepalives start."
    )
    keepalives_interval: int = Field(
        default=10, ge=1, description="Seconds between TCP keepalive probes."
    )
    keepalives_count: int = Field(
        default=3, ge=1, description="Lost keepalive probes before the connection is dead."
    )
    application_name: str = Field(
        default=DEFAULT_APPLICATION_NAME,
        max_length=63,
        description="Shown in pg_stat_activity; defaults to headwater-postgres/<version>.",
    )
    pool_min_size: int = Field(
        default=0, ge=0, le=1000, description="Connections the pool keeps open when idle."
    )
    pool_max_size: int = Field(
        default=5, ge=1, le=1000, description="Most connections the pool opens at once."
    )
    pool_max_idle: float = Field(
        default=600.0, gt=0, description="Seconds an idle connection above the minimum lives."
    )
    pool_max_lifetime: float = Field(
        default=3600.0, gt=0, description="Seconds before a connection is recycled."
    )
    pool_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an operation waits for a free pooled connection.",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most rows per batch read."
    )
    batch_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        description="Aim for batches of at most this many bytes (estimated from the table's "
        "statistics, or for a query from its first 10 rows), so wide rows make smaller batches.",
    )
    retry: DatabaseRetrySettings = Field(
        default_factory=DatabaseRetrySettings,
        description="Retries of connecting and of catalog calls (check, list, metadata): a "
        "server restarting or a dropped connection is a transient fault. Reads resume from "
        "their state and writes are one transaction, so neither is retried here.",
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings,
        description="Circuit breaker of the server (host, port and database): after this many "
        "failed calls in a row, calls fail at once until the reset timeout has passed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _take_password_out_of_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        url, password = split_url_password(data["url"])
        if password is None:
            return data
        if data.get("password") is not None:
            raise ValueError("give the password in the URL or in `password`, not both")
        return {**data, "url": url, "password": Secret.parse(password)}

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = urlsplit(value).scheme.lower()
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("url must start with postgresql:// or postgres://")
        # A bad port is found here, named, rather than as urllib's ValueError later.
        netloc = value.partition("://")[2].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
        for one in netloc.split(","):
            port = one.rpartition("]")[2] if one.startswith("[") else one
            _, colon, digits = port.rpartition(":")
            if colon and digits and not (digits.isdigit() and 0 < int(digits) <= 65535):
                raise ValueError("the URL's port must be a number from 1 to 65535")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_the_server(self) -> PostgresConfig:
        given = [f for f in TARGET_FIELDS if getattr(self, f) is not None]
        if self.url is not None and given:
            raise ValueError(
                f"give either url or {'/'.join(TARGET_FIELDS)}, not both (got url and "
                f"{', '.join(given)})"
            )
        if self.url is None and self.host is None:
            raise ValueError("give url, or host (with port, dbname, user)")
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        if self.url is not None:
            query = dict(parse_qsl(urlsplit(self.url).query))
            if "password" in query:
                raise ValueError("put the password in `password`, not in the URL query")
            secret = sorted(name for name in query if is_credential_name(name))
            if secret:
                # sslpassword and the like would be saved, shown and logged with the URL.
                raise ValueError(
                    f"the URL's query parameter {secret[0]} carries a credential, which a URL "
                    "would show and a sources file would store; put it in a libpq service "
                    "file (service=NAME in the URL) instead"
                )
            for name in _URL_PARAM_FIELDS:
                if name in _DEFAULTED_URL_PARAMS and name not in self.model_fields_set:
                    continue  # a default: the URL's value stands (see connect_kwargs)
                mine = getattr(self, name)
                shown = int(mine) if isinstance(mine, bool) else mine
                if mine is not None and name in query and str(shown) != query[name]:
                    raise ValueError(
                        f"the URL says {name}={query[name]} but the config says {name}={shown}"
                    )
        return self

    # --- derived values (pure) ---------------------------------------------------------

    def display_target(self) -> str:
        """``host:port/dbname`` for messages (never credentials)."""
        if self.url is not None:
            parts = urlsplit(self.url)
            host = parts.hostname or "localhost"
            port = parts.port or 5432
            dbname = parts.path.lstrip("/") or "(default)"
        else:
            host, port, dbname = self.host or "localhost", self.port or 5432, self.dbname or ""
        return f"{host}:{port}/{unquote(dbname) or '(default)'}"

    def connect_kwargs(self) -> dict[str, Any]:
        """
        libpq keyword parameters for this config, without the password.

        The URL (if any) goes in as ``conninfo`` and the rest as keywords; libpq merges
        them with keywords winning, which is why conflicting values were refused above.
        """
        kwargs: dict[str, Any] = {}
        if self.url is None:
            for name in TARGET_FIELDS:
                value = getattr(self, name)
                if value is not None:
                    kwargs[name] = value
        for name in TLS_FIELDS:
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = str(value)
        defaulted: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "application_name": self.application_name,
            "keepalives": int(self.keepalives),
        }
        if self.keepalives:
            defaulted["keepalives_idle"] = self.keepalives_idle
            defaulted["keepalives_interval"] = self.keepalives_interval
            defaulted["keepalives_count"] = self.keepalives_count
        # A URL that sets one of these keeps its value unless the config sets it too
        # (keywords win over the conninfo in libpq, so a default must not be sent).
        in_url = dict(parse_qsl(urlsplit(self.url).query)) if self.url is not None else {}
        for name, value in defaulted.items():
            if name not in in_url or name in self.model_fields_set:
                kwargs[name] = value
        options = [self.options] if self.options else []
        if self.url is not None and "options" in dict(parse_qsl(urlsplit(self.url).query)):
            options = [dict(parse_qsl(urlsplit(self.url).query))["options"]]
        # Timestamps are read as UTC and intervals as ISO 8601 whatever the role's
        # defaults, so the value mapping does not depend on the server's settings.
        options.append("-c TimeZone=UTC -c IntervalStyle=iso_8601")
        if self.statement_timeout is not None:
            options.append(f"-c statement_timeout={round(self.statement_timeout * 1000)}")
        kwargs["options"] = " ".join(options)
        return kwargs

    def conninfo(self) -> str:
        """The URL without its password, or an empty conninfo (parameters are keywords)."""
        return self.url or ""


def split_url_password(url: str) -> tuple[str, str | None]:
    """
    ``postgresql://u:pw@h/db`` → (``postgresql://u@h/db``, ``pw``); the password unquoted.

    The userinfo is found as libpq finds it, not as `urllib.parse` does: it is everything
    before the first ``@`` met before any ``/``, so a password may hold ``?`` and ``#``
    (urllib would end the host part there and leave the password in the URL). Only the
    first ``:`` of the userinfo separates user and password, so a reference such as
    ``env:PGPASSWORD`` may be written as the password unencoded. A password holding
    ``/`` cannot be written unencoded (libpq would read ``user:pa`` as host and port), so
    such a URL is refused rather than guessed at.

    Raises:
        ValueError: a ``user:pass/word@host`` URL; the message never holds the URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, None
    slash, at = rest.find("/"), rest.find("@")
    if at == -1 or (slash != -1 and slash < at):
        if at != -1 and _looks_like_userinfo(rest[:slash]):
            raise ValueError(
                "the URL's password seems to hold '/', which ends the host part of a URL: "
                "percent-encode it (/ as %2F; also ? as %3F, # as %23, @ as %40), or give "
                "it in `password`"
            )
        return url, None
    userinfo, hostpart = rest[:at], rest[at + 1 :]
    if ":" not in userinfo:
        return url, None
    user, _, password = userinfo.partition(":")
    # Re-encoded, so the URL left behind parses the same way for urllib and libpq.
    user = quote(unquote(user), safe="")
    clean = f"{scheme}://{user}@{hostpart}" if user else f"{scheme}://{hostpart}"
    return clean, unquote(password)


def _looks_like_userinfo(hostport: str) -> bool:
    """``user:pa`` before a ``/`` whose port is no number: a password cut short by ``/``."""
    for one in hostport.split(","):
        host, colon, port = one.rpartition(":") if not one.endswith("]") else ("", "", "")
        if colon and not host.endswith("]") and host.count(":") == 0 and not port.isdigit():
            return True
    return False
