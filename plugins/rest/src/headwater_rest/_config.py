"""
The ``rest`` connector's configuration: an HTTP API described as data.

Everything here is pydantic (no HTTP import), so building or validating a config, or
printing its JSON Schema, costs nothing. The JSON Schema of `RestConfig` is the public
configuration reference; every field carries a description.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from headwater import ConfigError
from headwater.toolkit import BreakerSettings, ConnectorConfig, CredentialResolver, Secret
from headwater.toolkit import RetrySettings as CoreRetrySettings
from headwater.toolkit import is_credential_name as _core_is_credential_name
from headwater_rest._schemes import AUTH_SCHEMES

# defer_build: a model's validator is built when it is first used, not at import. A config
# model's validator covers the models it nests, so a read builds one (`RestConfig`'s), not
# one per model; a nested model used on its own (``StreamConfig.model_validate``) builds
# its own then. The errors are the same either way.
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)

_M = TypeVar("_M", bound=BaseModel)


def _defaults(model: type[_M]) -> Callable[[], _M]:
    """
    A ``default_factory`` giving ``model`` with its defaults, made as pydantic makes a default
    (unvalidated): ``model()`` would build the nested model's own validator just for that.
    """

    def make() -> _M:
        return model.model_construct()

    make.__name__ = f"default_{model.__name__}"
    return make


def _no_items() -> list[Any]:
    # Not ``default_factory=list``: pydantic reads a factory's signature, and `list`'s
    # costs it a parse of its text signature (~2 ms of a first use).
    return []


class _Model(BaseModel):
    model_config = _FROZEN


class _Tagged(_Model):
    """
    A member of a union told apart by ``type`` (auth schemes, pagination styles). Its dump
    always names its ``type``, even where defaults are left out (a saved source), so the
    dump reads back as the same member instead of an unknown plugin's.
    """

    @model_serializer(mode="wrap")
    def _with_type(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {"type": getattr(self, "type"), **data}  # noqa: B009  declared by subclasses
        return data


# --- headers and query parameters that carry credentials ------------------------------------


def is_credential_name(name: str) -> bool:
    """
    Whether a header or query parameter called ``name`` carries a credential: core's
    rule (`headwater.toolkit.is_credential_name`), the one the redactor uses too.
    """
    return _core_is_credential_name(name)


#: A value marked explicitly, whatever its name says: ``{secret: VALUE}`` / ``{plain: VALUE}``.
_MARKS: Final = ("secret", "plain")


def _mark_of(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, Mapping) and len(value) == 1:
        ((mark, inner),) = value.items()
        if mark in _MARKS:
            return mark, inner
    return None


def _secret_or_plain(value: Any, *, secret_by_default: bool) -> Any:
    """One value as the config holds it: a `Secret`, or the plain value."""
    marked = _mark_of(value)
    if marked is not None:
        mark, value = marked
        if mark == "plain":
            return value
        secret_by_default = True
    if secret_by_default and (isinstance(value, str | Secret) or callable(value)):
        return Secret.parse(value)
    if secret_by_default and isinstance(value, int | float) and not isinstance(value, bool):
        # A numeric key (``appid: 12345``) is a credential too; it is sent as text anyway.
        return Secret.literal_value(str(value))
    return value


def _secrets_by_name(values: Any) -> Any:
    """Make the values of credential-named or ``{secret: ...}`` entries `Secret` s."""
    if not isinstance(values, Mapping):
        return values
    return {
        name: _secret_or_plain(
            value, secret_by_default=isinstance(name, str) and is_credential_name(name)
        )
        for name, value in values.items()
    }


def _dump_marked(value: Any, secret_by_default: bool) -> Any:
    """The inverse of `_secret_or_plain`: a marker wherever the name alone would mislead."""
    if isinstance(value, Secret):
        return value.display() if secret_by_default else {"secret": value.display()}
    if secret_by_default and isinstance(value, str):
        return {"plain": value}
    return value


def _dump_by_name(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _dump_marked(v, is_credential_name(name)) for name, v in values.items()}


#: Header values; a credential-named one (see `is_credential_name`) is a `Secret`.
Headers = Annotated[
    dict[str, str | Secret], BeforeValidator(_secrets_by_name), PlainSerializer(_dump_by_name)
]
#: Query parameters; a credential-named one is a `Secret`.
Params = Annotated[
    dict[str, str | int | float | bool | Secret],
    BeforeValidator(_secrets_by_name),
    PlainSerializer(_dump_by_name),
]

_CREDENTIAL_NOTE = (
    " Values of credential-named entries (Authorization, Cookie, key, api_key, X-Master-Key, "
    "appid, code, sig, names with token, secret, password, auth, session, signature) are "
    "secrets: they accept secret references, are masked when shown, and count as "
    "credentials (never over plain http to a non-loopback host). Mark any value "
    "explicitly with {secret: VALUE} or {plain: VALUE} to override the name's guess."
)


def has_credentials(values: Mapping[str, Any]) -> bool:
    """Whether a headers / params mapping holds a credential."""
    return any(isinstance(v, Secret) for v in values.values())


def resolve_values(
    values: Mapping[str, Any], field: str, resolvers: Mapping[str, CredentialResolver]
) -> dict[str, Any]:
    """
    ``values`` with every `Secret` resolved (and registered for redaction) — at connect
    time, never stored back into a config. ``field`` names the mapping in errors.
    """
    return {
        name: value.resolve(f"{field}.{name}", resolvers) if isinstance(value, Secret) else value
        for name, value in values.items()
    }


def resolve_client_cert(
    tls: TlsSettings | None, resolvers: Mapping[str, CredentialResolver]
) -> tuple[str, str | None] | None:
    """``tls``'s client certificate and key PEM, resolved at connect time (``None``: no mTLS)."""
    if tls is None:
        return None
    cert = tls.client_cert.resolve("tls.client_cert", resolvers)
    key = tls.client_key.resolve("tls.client_key", resolvers) if tls.client_key else None
    return cert, key


# --- auth ----------------------------------------------------------------------------------


class NoAuth(_Tagged):
    """No credentials (public APIs)."""

    type: Literal["none"] = "none"


class BearerAuth(_Tagged):
    """``Authorization: Bearer <token>`` with a static token."""

    type: Literal["bearer"] = "bearer"
    token: Secret = Field(description="The bearer token (a literal or a secret reference).")


class ApiKeyAuth(_Tagged):
    """An API key sent in a header or a query parameter."""

    type: Literal["api_key"] = "api_key"
    key: Secret = Field(description="The API key (a literal or a secret reference).")
    name: str = Field(
        default="X-API-Key", min_length=1, description="Header or query parameter carrying the key."
    )
    location: Literal["header", "query"] = Field(
        default="header", description="Send the key as a header or as a query parameter."
    )
    prefix: str = Field(
        default="", description="Text put before the key in a header (``Token ``, ``ApiKey ``)."
    )


class BasicAuth(_Tagged):
    """HTTP basic authentication."""

    type: Literal["basic"] = "basic"
    username: str = Field(description="User name (not secret).")
    password: Secret = Field(description="Password (a literal or a secret reference).")


#: ``client_auth`` values: how the client authenticates to the token endpoint.
ClientAuthMethod = Literal[
    "basic", "basic_unencoded", "body", "client_secret_jwt", "private_key_jwt"
]


class _OAuth2Base(_Tagged):
    token_url: str | None = Field(
        default=None,
        description="The authorization server's token endpoint (https). Give this or issuer.",
    )
    issuer: str | None = Field(
        default=None,
        description="The authorization server's issuer URL, instead of token_url: the token "
        "endpoint and the client authentication methods it accepts are read from its metadata "
        "(/.well-known/oauth-authorization-server, else /.well-known/openid-configuration), "
        "once per process.",
    )
    scope: str | None = Field(default=None, description="Space-separated scopes to request.")
    audience: str | None = Field(
        default=None, description="``audience`` parameter, if the server needs one."
    )
    client_auth: ClientAuthMethod = Field(
        default="basic",
        description="How the client authenticates to the token endpoint: ``basic`` "
        "(client_secret_basic: id and secret form-urlencoded, then HTTP basic, as RFC 6749 "
        "§2.3.1 says), ``basic_unencoded`` (HTTP basic with id and secret as written, for a "
        "server that does not decode them), ``body`` (client_secret_post: form fields), "
        "``client_secret_jwt`` (an HS256 assertion signed with client_secret) or "
        "``private_key_jwt`` (an assertion signed with private_key; RFC 7523).",
    )
    private_key: Secret | None = Field(
        default=None,
        description="PEM private key signing the private_key_jwt assertion (a secret "
        "reference: ``file:``, ``keyring:``, ``env:``).",
    )
    key_id: str | None = Field(
        default=None,
        description="``kid`` of private_key as registered with the server (private_key_jwt).",
    )
    algorithm: Literal["RS256", "PS256", "ES256"] = Field(
        default="RS256",
        description="Signing algorithm of the private_key_jwt assertion (RS256 and PS256 need "
        "an RSA key, ES256 a P-256 key); client_secret_jwt always signs with HS256.",
    )
    assertion_audience: Literal["token_url", "issuer"] = Field(
        default="token_url",
        description="``aud`` of a client assertion: the token endpoint URL, or the issuer "
        "(for servers that ask for it; needs issuer).",
    )
    leeway: float = Field(
        default=30.0,
        ge=0,
        description="Seconds before expiry at which a cached token is renewed (capped at a "
        "tenth of the token's lifetime, so short-lived tokens are still reused).",
    )
    token_cache: Literal["memory", "keyring"] = Field(
        default="memory",
        description="``keyring`` also keeps the access token in the OS keyring until it "
        "expires, so separate processes reuse it.",
    )
    extra_params: dict[str, str] = Field(
        default_factory=dict, description="Additional form fields for the token request."
    )

    @field_validator("token_url", "issuer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    @model_validator(mode="after")
    def _endpoint_and_method(self) -> _OAuth2Base:
        if (self.token_url is None) == (self.issuer is None):
            raise ValueError("give token_url or issuer (one of them)")
        if self.client_auth == "private_key_jwt" and self.private_key is None:
            raise ValueError("client_auth: private_key_jwt needs private_key")
        if self.private_key is not None and self.client_auth != "private_key_jwt":
            raise ValueError("private_key is used only with client_auth: private_key_jwt")
        if self.assertion_audience == "issuer" and self.issuer is None:
            raise ValueError("assertion_audience: issuer needs issuer")
        return self


class ClientCredentialsAuth(_OAuth2Base):
    """OAuth2 client credentials grant; the token is cached and shared by every request."""

    type: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"
    client_id: str = Field(description="OAuth2 client id (not secret).")
    client_secret: Secret | None = Field(
        default=None,
        description="OAuth2 client secret (a literal or a secret reference); not used with "
        "private_key_jwt.",
    )

    @model_validator(mode="after")
    def _needs_a_credential(self) -> ClientCredentialsAuth:
        if self.client_secret is None and self.client_auth != "private_key_jwt":
            raise ValueError(f"client_auth: {self.client_auth} needs client_secret")
        return self


class RefreshTokenAuth(_OAuth2Base):
    """
    OAuth2 refresh-token grant.

    When the server rotates the refresh token, the new one is saved atomically where the
    old one came from: a ``file:`` reference is rewritten (temp file + rename), a
    ``keyring:`` reference is updated; other kinds keep it in memory for this process.
    """

    type: Literal["oauth2_refresh_token"] = "oauth2_refresh_token"
    refresh_token: Secret = Field(
        description="The refresh token (a literal or a secret reference)."
    )
    client_id: str | None = Field(
        default=None, description="OAuth2 client id, if the server needs one."
    )
    client_secret: Secret | None = Field(default=None, description="OAuth2 client secret, if any.")

    @model_validator(mode="after")
    def _jwt_needs_a_secret(self) -> RefreshTokenAuth:
        if self.client_auth == "client_secret_jwt" and self.client_secret is None:
            raise ValueError("client_auth: client_secret_jwt needs client_secret")
        return self


#: Keys of a plugin scheme's settings that are plain unless marked; other strings are secrets.
_PLAIN_SUFFIXES = ("type", "url", "id", "name", "scope", "location", "audience", "region")


def _plugin_secret_by_default(key: str) -> bool:
    return not key.lower().endswith(_PLAIN_SUFFIXES)


class PluginAuth(BaseModel):
    """
    An auth scheme provided by another plugin (``register_auth_schemes``).

    Which settings are secret is the plugin's business, so every string setting is a
    `Secret` (a reference, or a literal that a sources file refuses) except those whose
    names end in ``url``, ``id``, ``name``, ``scope``, ... and those written
    ``{plain: VALUE}``; ``{secret: VALUE}`` makes any setting secret. The factory gets the
    settings as written; it resolves secret ones through ``secret(field)``.
    """

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    type: str = Field(min_length=1, description="The scheme name a plugin registered.")

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {
            key: value
            if key == "type" or not isinstance(key, str)
            else _secret_or_plain(value, secret_by_default=_plugin_secret_by_default(key))
            for key, value in data.items()
        }

    def settings(self) -> dict[str, Any]:
        """The settings minus ``type``, as written (a secret as its reference or literal)."""
        written: dict[str, Any] = {}
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, Secret) and not value.is_callable:
                # A literal is handed over as it was before it became a Secret (and is
                # registered with the redactor on the way).
                value = value.reference or value.resolve(f"auth.{key}", {})
            written[key] = value
        return written

    @model_serializer(mode="plain")
    def _dump(self) -> dict[str, Any]:
        # The sanitized view is also what a sources file stores: secrets as references
        # (a literal is refused before saving) and markers wherever the name would mislead.
        shown: dict[str, Any] = {"type": self.type}
        for key, value in (self.model_extra or {}).items():
            shown[key] = _dump_marked(value, _plugin_secret_by_default(key))
        return shown


#: The auth types this plugin provides (named once, in the light ``hooks`` module).
BUILTIN_AUTH_TYPES = AUTH_SCHEMES


def _auth_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in BUILTIN_AUTH_TYPES else "plugin"


AuthConfig = Annotated[
    Annotated[NoAuth, Tag("none")]
    | Annotated[BearerAuth, Tag("bearer")]
    | Annotated[ApiKeyAuth, Tag("api_key")]
    | Annotated[BasicAuth, Tag("basic")]
    | Annotated[ClientCredentialsAuth, Tag("oauth2_client_credentials")]
    | Annotated[RefreshTokenAuth, Tag("oauth2_refresh_token")]
    | Annotated[PluginAuth, Tag("plugin")],
    Discriminator(_auth_tag),
]


# --- paths into JSON ------------------------------------------------------------------------

#: The path language, as documented in the README and quoted in errors.
PATH_LANGUAGE: Final = (
    "a dotted path (data.items, data.-1.id: negative indexes count from the end) or the "
    "JSONPath subset $, .name, ['name'], [index] (negative too) and, for records only, a "
    "final [*] or .*"
)

_PATH_TOKEN: Final = re.compile(
    r"""\.?(?P<name>[^.\[\]'"*$@?()]+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<quote>['"])(?P<key>[^'"]*)(?P=quote)\]"""
)


def parse_path(path: str, *, wildcard: bool = False) -> list[str]:
    """
    ``path`` as its steps (``"$.data[-1]['id']"`` → ``["data", "-1", "id"]``, ``[]`` for
    the root). Anything outside the documented language (slices, filters, recursive
    descent, unions, a wildcard other than a final one where ``wildcard`` allows it)
    raises `ValueError`: such a path would otherwise find nothing, silently.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    if wildcard:
        for tail in ("[*]", ".*"):
            if text.endswith(tail):
                text = text[: -len(tail)]
                break
    steps: list[str] = []
    pos = 0
    while pos < len(text):
        if text.startswith("..", pos):
            raise ValueError(
                f"path {path!r}: recursive descent (..) is not supported; {PATH_LANGUAGE}"
            )
        match = _PATH_TOKEN.match(text, pos)
        if match is None or (pos > 0 and match.group("name") and text[pos] != "."):
            rest = text[pos:]
            if re.match(r"\[-?\d*:", rest):
                what = "a slice"
            elif rest.startswith("[?"):
                what = "a filter"
            elif "*" in rest[:3]:
                what = "a wildcard"
            else:
                what = repr(rest[:12])
            hint = ""
            if re.match(r"\[-1:\]", rest):
                hint = " (for the last item write .-1 or [-1])"
            raise ValueError(f"path {path!r}: {what} is not supported{hint}; {PATH_LANGUAGE}")
        steps.append(match.group("name") or match.group("index") or match.group("key") or "")
        pos = match.end()
    return steps


def _checked_path(value: str | None, *, wildcard: bool = False) -> str | None:
    if value is not None:
        parse_path(value, wildcard=wildcard)
    return value


# --- pagination ----------------------------------------------------------------------------


#: Where pagination parameters go: ``inject`` of every style.
Inject = Literal["query", "body", "header"]
_INJECT_DESCRIPTION: Final = (
    "Where the pagination parameters go: ``query`` parameters, the JSON ``body`` (the "
    "parameter name is then a dotted path into it, ``start_cursor`` or ``variables.after``; "
    "the first request's body is the stream's json; needs method: POST) or request "
    "``header`` s."
)


class _PaginationBase(_Tagged):
    stop_on_empty: bool = Field(
        default=True,
        description="End the stream at the first page without records, whatever the "
        "response says about more pages; but an empty page that says more follow "
        "(has_more_path true, or a total beyond what was read) without a cursor to them is "
        "a PaginationError, not an end.",
    )
    inject: Inject = Field(default="query", description=_INJECT_DESCRIPTION)

    @field_validator("*")
    @classmethod
    def _paths(cls, value: Any, info: ValidationInfo) -> Any:
        # Every *_path setting is in the path language, or the config does not load
        # (the error's location names the field).
        if (info.field_name or "").endswith("_path") and isinstance(value, str):
            parse_path(value)
        return value


class NoPagination(_PaginationBase):
    """One request, one page."""

    type: Literal["none"] = "none"


class CursorPagination(_PaginationBase):
    """The body carries the next page's cursor; it is sent back as a query parameter."""

    type: Literal["cursor"] = "cursor"
    cursor_path: str = Field(
        default="next_cursor", description="Dotted path of the next cursor in the response body."
    )
    cursor_param: str = Field(
        default="cursor", description="Query parameter that carries the cursor."
    )
    has_more_path: str | None = Field(
        default=None,
        description="Dotted path of a boolean saying whether more pages follow; when it is "
        "false the stream ends even if a cursor is present.",
    )


class HeaderCursorPagination(_PaginationBase):
    """A response header carries the next page's cursor, sent back as a query parameter."""

    type: Literal["header_cursor"] = "header_cursor"
    header: str = Field(
        default="X-Next-Cursor", description="Response header holding the next cursor."
    )
    cursor_param: str = Field(
        default="cursor", description="Query parameter that carries the cursor."
    )


class OffsetPagination(_PaginationBase):
    """``offset``/``limit`` query parameters, with or without a total in the body."""

    type: Literal["offset"] = "offset"
    offset_param: str = Field(default="offset", description="Query parameter for the offset.")
    limit_param: str = Field(default="limit", description="Query parameter for the page size.")
    limit: int = Field(default=100, ge=1, description="Records asked for per page.")
    start: int = Field(default=0, ge=0, description="Offset of the first record.")
    total_path: str | None = Field(
        default=None, description="Dotted path of the total record count in the body, if any."
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Pages fetched at once when the total is known (order is kept).",
    )


class PageNumberPagination(_PaginationBase):
    """``page`` (and optionally ``per_page``) query parameters."""

    type: Literal["page"] = "page"
    page_param: str = Field(default="page", description="Query parameter for the page number.")
    size_param: str | None = Field(
        default=None, description="Query parameter for the page size (omit to use the server's)."
    )
    size: int | None = Field(default=None, ge=1, description="Records asked for per page.")
    start: int = Field(default=1, ge=0, description="Number of the first page.")
    total_pages_path: str | None = Field(
        default=None, description="Dotted path of the page count in the body, if any."
    )
    total_path: str | None = Field(
        default=None,
        description="Dotted path of the total record count in the body (needs ``size``).",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Pages fetched at once when the page count is known (order is kept).",
    )

    @model_validator(mode="after")
    def _total_needs_size(self) -> PageNumberPagination:
        if self.total_path and not self.size:
            raise ValueError("total_path needs size (the page size) to count pages")
        return self


class _UrlPagination(_PaginationBase):
    @field_validator("inject")
    @classmethod
    def _query_only(cls, value: str) -> str:
        if value != "query":
            raise ValueError("inject: the next page's URL carries its own position; use query")
        return value


class NextUrlPagination(_UrlPagination):
    """The response body carries the URL of the next page."""

    type: Literal["next_url"] = "next_url"
    next_url_path: str = Field(
        default="next", description="Dotted path of the next page's URL in the body."
    )


class LinkHeaderPagination(_UrlPagination):
    """The RFC 8288 ``Link`` response header names the next page (``rel="next"``)."""

    type: Literal["link"] = "link"
    rel: str = Field(default="next", description="Link relation of the next page.")


class PluginPagination(BaseModel):
    """A pagination style provided by another plugin (``register_pagination_styles``)."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    type: str = Field(min_length=1, description="The style name a plugin registered.")
    stop_on_empty: bool = Field(default=True, description="End the stream at an empty page.")
    inject: Inject = Field(default="query", description=_INJECT_DESCRIPTION)

    def settings(self) -> dict[str, Any]:
        """The style's settings minus ``type``, as written."""
        return {"stop_on_empty": self.stop_on_empty, **(self.model_extra or {})}


BUILTIN_PAGINATION_TYPES = ("none", "cursor", "header_cursor", "offset", "page", "next_url", "link")


def _pagination_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in BUILTIN_PAGINATION_TYPES else "plugin"


PaginationConfig = Annotated[
    Annotated[NoPagination, Tag("none")]
    | Annotated[CursorPagination, Tag("cursor")]
    | Annotated[HeaderCursorPagination, Tag("header_cursor")]
    | Annotated[OffsetPagination, Tag("offset")]
    | Annotated[PageNumberPagination, Tag("page")]
    | Annotated[NextUrlPagination, Tag("next_url")]
    | Annotated[LinkHeaderPagination, Tag("link")]
    | Annotated[PluginPagination, Tag("plugin")],
    Discriminator(_pagination_tag),
]


# --- streams -------------------------------------------------------------------------------


class IncrementalConfig(_Model):
    """Ask only for records changed since the last run."""

    field: str = Field(
        description="Dotted path of the cursor field in each record (``updated_at``)."
    )
    param: str = Field(description="Query parameter that sends the last value seen (``since``).")
    initial: str | int | float | None = Field(
        default=None, description="Value sent on the very first run; omit to send nothing."
    )

    @field_validator("field")
    @classmethod
    def _field_path(cls, value: str) -> str:
        parse_path(value)
        return value


class ParentConfig(_Model):
    """Read this stream once per record of another stream (sub-resources)."""

    stream: str = Field(description="The parent stream.")
    alias: str | None = Field(
        default=None,
        description="Name of the parent record in path templates (``/orgs/{org.id}/repos``); "
        "defaults to the parent stream's name.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Fields copied into every child record: child field → dotted path in "
        "the parent record (``{org_id: id}``).",
    )

    @field_validator("fields")
    @classmethod
    def _field_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            parse_path(path)
        return value


class WriteSettings(_Model):
    """How ``write`` sends a stream's records: JSON bodies to one endpoint."""

    path: str | None = Field(
        default=None,
        description="Path under base_url the records go to (default: the stream's path); "
        "per record it may hold ``{record.field}`` placeholders (``/items/{record.id}``).",
    )
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method.")
    mode: Literal["record", "batch"] = Field(
        default="record",
        description="``record``: one request per record, the record as the body; ``batch``: "
        "one request per batch_size records, a JSON array as the body (or under batch_field).",
    )
    batch_size: int = Field(
        default=100, ge=1, le=100_000, description="Records per request in batch mode."
    )
    batch_field: str | None = Field(
        default=None,
        description="In batch mode, send ``{batch_field: [records]}`` instead of the bare array.",
    )
    idempotency_header: str | None = Field(
        default=None,
        description="Header that carries an idempotency key, for APIs that support one "
        "(``Idempotency-Key``). Each request gets a key derived from its method, path and body "
        "(the same on every retry and every run); a POST or PATCH that carries one is retried "
        "like a PUT. Without it a POST or PATCH is retried only when the API cannot have "
        "processed it: no connection, 429, 503.",
    )

    @field_validator("path")
    @classmethod
    def _relative_write_path(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "://" in value:
            raise ValueError("path is relative to base_url; put the scheme and host in base_url")
        return value if value.startswith("/") else "/" + value

    @field_validator("idempotency_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError("not an HTTP header name")
        return value

    @model_validator(mode="after")
    def _placeholders_per_record(self) -> WriteSettings:
        if self.mode == "batch" and self.path is not None and "{" in self.path:
            raise ValueError("path placeholders ({record.field}) need mode: record")
        if self.mode == "record" and self.batch_field is not None:
            raise ValueError("batch_field needs mode: batch")
        return self


class StreamConfig(_Model):
    """One readable resource of the API."""

    path: str = Field(
        description="Path under base_url (``/items``); may hold ``{alias.field}`` placeholders "
        "filled from the parent record."
    )
    method: Literal["GET", "POST"] = Field(default="GET", description="HTTP method.")
    params: Params = Field(
        default_factory=dict,
        description="Query parameters of every request of this stream." + _CREDENTIAL_NOTE,
    )
    json_body: Any = Field(
        default=None, alias="json", description="JSON request body (for POST search endpoints)."
    )
    headers: Headers = Field(
        default_factory=dict, description="Extra request headers." + _CREDENTIAL_NOTE
    )
    records: str | None = Field(
        default=None,
        description="Where the records are in the response: a dotted path (``data.items``) "
        "or a simple JSONPath (``$.data.items[*]``); omit when the body is the list itself.",
    )
    primary_key: list[str] = Field(
        default_factory=_no_items,
        description="Field(s) identifying a record (reported by metadata).",
    )
    pagination: PaginationConfig = Field(
        default_factory=_defaults(NoPagination), description="How to get from one page to the next."
    )
    incremental: IncrementalConfig | None = Field(
        default=None, description="Incremental sync settings."
    )
    parent: ParentConfig | None = Field(
        default=None, description="Parent stream for sub-resources."
    )
    max_pages: int | None = Field(
        default=None, ge=1, description="Stop after this many pages (per run)."
    )
    max_records: int | None = Field(
        default=None, ge=1, description="Stop after this many records (per run)."
    )
    write: WriteSettings | None = Field(
        default=None,
        description="Where and how ``write`` sends records to this stream (none: not writable).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("records")
    @classmethod
    def _records_path(cls, value: str | None) -> str | None:
        return _checked_path(value, wildcard=True)

    @model_validator(mode="after")
    def _body_needs_post(self) -> StreamConfig:
        if self.pagination.inject == "body":
            if self.method != "POST":
                raise ValueError("pagination.inject: body needs method: POST (a JSON body)")
            if self.json_body is not None and not isinstance(self.json_body, dict):
                raise ValueError("pagination.inject: body needs json to be an object")
        return self

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("path is relative to base_url; put the scheme and host in base_url")
        return value if value.startswith("/") else "/" + value


# --- resilience ----------------------------------------------------------------------------


class Timeouts(_Model):
    """Seconds to wait for each phase of a request."""

    connect: float = Field(default=10.0, gt=0, description="Establishing a connection.")
    read: float = Field(default=30.0, gt=0, description="Waiting for response data.")
    write: float = Field(default=30.0, gt=0, description="Sending the request.")
    pool: float = Field(default=10.0, gt=0, description="Waiting for a free pooled connection.")


class ResponseRule(_Model):
    """
    A response to try again whatever its status says (the design's "retry on result"):
    it matches when every condition given holds.
    """

    status: list[int] | None = Field(
        default=None,
        description="The response's status is one of these (an integer or a list; any "
        "status when omitted, 2xx included).",
    )
    path: str | None = Field(
        default=None,
        description="A path into the JSON body (the records path language: ``error.code``, "
        "``$.status``); alone it matches when the path holds a value (not null). A body that "
        "is not JSON never matches.",
    )
    equals: Any = Field(
        default=None,
        description="The value at path equals this JSON value (``null`` included, when given).",
    )
    in_: list[Any] | None = Field(
        default=None, alias="in", description="The value at path is one of these JSON values."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @field_validator("status", mode="before")
    @classmethod
    def _one_status(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("status")
    @classmethod
    def _http_status(cls, value: list[int] | None) -> list[int] | None:
        bad = [s for s in value or [] if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"status: not an HTTP status (100-599): {bad[0]}")
        return value

    @field_validator("path")
    @classmethod
    def _body_path(cls, value: str | None) -> str | None:
        return _checked_path(value)

    @model_validator(mode="after")
    def _conditions(self) -> ResponseRule:
        given = self.model_fields_set
        if "equals" in given and "in_" in given:
            raise ValueError("give equals or in, not both")
        for name in ("equals", "in_"):
            if name in given and self.path is None:
                raise ValueError(f"{name.rstrip('_')} needs path (where in the body to look)")
        if self.status is None and self.path is None:
            raise ValueError("a rule needs status, path or both (it would match every response)")
        return self

    def matches(self, status: int, body: Callable[[], Any]) -> bool:
        """Whether a response with ``status`` and JSON ``body()`` (`NO_JSON` if none) matches."""
        if self.status is not None and status not in self.status:
            return False
        if self.path is None:
            return True
        document = body()
        if document is NO_JSON:
            return False
        found, value = _value_at(document, parse_path(self.path))
        given = self.model_fields_set
        if "equals" in given:
            return found and _same_json(value, self.equals)
        if "in_" in given:
            return found and any(_same_json(value, v) for v in self.in_ or [])
        return found and value is not None


#: What `ResponseRule.matches` gets for a body that is empty or not JSON.
NO_JSON: Final = object()


def _value_at(document: Any, steps: list[str]) -> tuple[bool, Any]:
    """``(found, value)`` at ``steps`` of a parsed JSON document."""
    current = document
    for step in steps:
        if isinstance(current, dict) and step in current:
            current = current[step]
        elif isinstance(current, list) and re.fullmatch(r"-?\d+", step):
            index = int(step)
            if not -len(current) <= index < len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def _same_json(a: Any, b: Any) -> bool:
    # JSON has one number type, but true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


class RetrySettings(CoreRetrySettings):
    """
    The retry settings every connector nests (attempts, initial, maximum, jitter,
    timeout), plus what only HTTP has: which statuses and responses are tried again and
    how rate-limit headers are read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="RetrySettings", defer_build=True)

    statuses: list[int] = Field(
        default_factory=lambda: [408, 429, 502, 503, 504],
        description="HTTP statuses tried again (add 500 for an API whose 500s are passing). "
        "A 403 that announces an exhausted rate limit counts as a 429.",
    )
    max_rate_limit_wait: float = Field(
        default=900.0,
        ge=0,
        description="Longest wait, in seconds, for an announced rate-limit reset; a longer "
        "one ends the read with a rate_limited error saying when the limit resets (the "
        "saved state resumes there).",
    )
    on_response: list[ResponseRule] = Field(
        default_factory=_no_items,
        description="Responses tried again whatever their status: a list of rules "
        "(``{status: 200, path: state, equals: pending}``, ``{path: error.code, in: [busy]}``); "
        "one that matches makes the response count as a failure worth another try, under the "
        "same attempts, back-off and POST safety as retry.statuses. In Python, "
        "``RestConnector(config, retry_if=callable)`` takes a predicate over the response.",
    )
    rate_limit_reset: Literal["auto", "epoch", "delta"] = Field(
        default="auto",
        description="How X-RateLimit-Reset is read: epoch seconds (GitHub), delta seconds, "
        "or auto (values past 10^9 are epoch seconds). RateLimit-Reset is always delta.",
    )

    @field_validator("statuses")
    @classmethod
    def _http_statuses(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 400 <= s <= 599]
        if bad:
            raise ValueError(f"not an HTTP error status (400-599): {bad[0]}")
        return value


class RateLimit(_Model):
    """A client-side limit shared by every request of the connector (sync and async)."""

    requests_per_second: float | None = Field(
        default=None, gt=0, description="Requests per second."
    )
    requests_per_minute: float | None = Field(
        default=None, gt=0, description="Requests per minute."
    )

    @property
    def interval(self) -> float:
        """Seconds between two requests (the stricter limit wins)."""
        gaps = [0.0]
        if self.requests_per_second:
            gaps.append(1.0 / self.requests_per_second)
        if self.requests_per_minute:
            gaps.append(60.0 / self.requests_per_minute)
        return max(gaps)


class TlsSettings(_Model):
    """Mutual TLS: the client certificate presented to the API and the token endpoint."""

    client_cert: Secret = Field(
        description="PEM client certificate (chain), a secret reference (``file:``, "
        "``keyring:``, ``env:``) or a literal."
    )
    client_key: Secret | None = Field(
        default=None,
        description="PEM private key of client_cert (a secret reference); omit when "
        "client_cert holds the key too.",
    )


# --- the connector config ------------------------------------------------------------------


class RestConfig(ConnectorConfig):
    """Configuration of the ``rest`` connector."""

    model_config = ConfigDict(defer_build=True)

    base_url: str = Field(
        description="Scheme, host, port and base path of the API (``https://api.example.com/v1``)."
    )
    headers: Headers = Field(
        default_factory=dict,
        description="Headers sent with every request to base_url's origin." + _CREDENTIAL_NOTE,
    )
    params: Params = Field(
        default_factory=dict,
        description="Query parameters sent with every request to base_url's origin."
        + _CREDENTIAL_NOTE,
    )
    auth: AuthConfig = Field(
        default_factory=_defaults(NoAuth),
        description="How to authenticate (``type`` selects the scheme).",
    )
    streams: dict[str, StreamConfig] = Field(
        default_factory=dict, description="Stream name → how to read it."
    )
    check_path: str | None = Field(
        default=None,
        description="A cheap path for check() (``/me``); default: the first stream's first page.",
    )
    timeouts: Timeouts = Field(default_factory=_defaults(Timeouts), description="Request timeouts.")
    verify: bool | Path = Field(
        default=True,
        description="TLS verification: true (system CAs), or the path of a CA bundle. "
        "Setting false is refused unless allow_insecure is also set.",
    )
    tls: TlsSettings | None = Field(
        default=None,
        description="Mutual TLS (a client certificate and key) for the API and the token endpoint.",
    )
    allow_insecure: bool = Field(
        default=False,
        description="Allow verify: false (never with credentials to a non-loopback host).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=_no_items,
        description="Other hosts (``cdn.example.com`` or ``https://cdn.example.com:8443``) "
        "whose next-page URLs and redirects may be followed, without credentials.",
    )
    retry: RetrySettings = Field(
        default_factory=_defaults(RetrySettings), description="Retry policy."
    )
    breaker: BreakerSettings = Field(
        default_factory=_defaults(BreakerSettings), description="Circuit breaker."
    )
    rate_limit: RateLimit | None = Field(
        default=None, description="Client-side request rate limit."
    )
    max_connections: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Connection pool size (also bounds concurrent page fetches).",
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="Records per batch; default one batch per page."
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _check_http_url(value).rstrip("/")

    @field_validator("check_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            return "/" + value
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RestConfig:
        for name, stream in self.streams.items():
            parent = stream.parent
            if parent is None:
                continue
            if parent.stream not in self.streams:
                raise ValueError(f"stream {name!r}: parent stream {parent.stream!r} is not defined")
            if stream.incremental is not None:
                raise ValueError(f"stream {name!r}: incremental is not supported on child streams")
            seen = {name}
            current: StreamConfig | None = stream
            while current is not None and current.parent is not None:
                if current.parent.stream in seen:
                    raise ValueError(f"stream {name!r}: parent streams form a cycle")
                seen.add(current.parent.stream)
                current = self.streams.get(current.parent.stream)
        if self.verify is False and not self.allow_insecure:
            raise ValueError("verify: false needs allow_insecure: true")
        return self

    @classmethod
    def from_yaml(cls, source: str | Path) -> RestConfig:
        """
        Load a config from a YAML file (or YAML text when ``source`` holds a newline).

        Raises:
            ConfigError: unreadable file, invalid YAML, or a config that does not validate.
        """
        import yaml

        from headwater.toolkit import validate_config

        text = str(source)
        if "\n" not in text:
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {source}: {exc.strerror or type(exc).__name__}"
                ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError("a REST config is a YAML mapping (base_url, auth, streams, ...)")
        config = validate_config(cls, data, connector_id="rest")
        assert isinstance(config, RestConfig)
        return config


def _check_http_url(value: str) -> str:
    # Messages never quote the value: a URL may carry a password or a token.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s):// URL (scheme://host[:port][/path])")
    try:
        # urllib checks the port only when asked. This also catches "https://u:pa/ss@h",
        # whose "password" urllib takes for a port, as RFC 3986 says.
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError("the URL's port must be a number from 0 to 65535") from None
    if parts.username or parts.password:
        raise ValueError("put credentials in auth, not in the URL")
    if parts.query or parts.fragment:
        raise ValueError("the URL must not carry a query or fragment; use params")
    return value
