"""
Azure SDK exceptions → headwater errors, in one place.

Azure error texts are multi-line (request id, time, the raw XML body) and may carry
credential material: a SAS lives in request URLs, and an authentication failure can
quote the request's signature. Only a scrubbed first line of the service's message is
ever copied into a headwater error, and errors are raised ``from None`` so the original
text does not travel along as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

from headwater import (
    AlreadyExists,
    AuthFailed,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    IntegrityError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TLSFailure,
)
from headwater.toolkit import redact

#: 403 error codes that mean "who you are was not accepted" rather than "not allowed".
_AUTH_CODES: Final = frozenset(
    {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}
)
_URL_QUERY: Final = re.compile(r"(?P<url>\b[a-z][a-z0-9+.\-]*://[^\s?'\"<>]+)\?[^\s'\"<>]*", re.I)
#: Base64 runs as long as a signature (44) or key (88): never worth showing.
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/]{32,}={0,2}")
_SAS_PARAMS: Final = re.compile(r"\b(?:sig|se|sp|sv|st|spr|srt|ss|skoid|sktid)=[^&\s'\"]+", re.I)
_MAX_DETAIL: Final = 240
#: Transport exceptions (urllib3, requests, aiohttp) for a body whose Content-Encoding
#: could not be undone.
_DECODING_ERRORS: Final = frozenset({"DecodeError", "ContentDecodingError", "ContentEncodingError"})


def scrub(text: object) -> str:
    """
    One line of driver text that is safe to show: first line only, URL queries, long
    base64 runs and SAS parameters masked, known secrets redacted, length capped.
    """
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    line = _URL_QUERY.sub(lambda m: f"{m['url']}?***", line)
    line = _SAS_PARAMS.sub("***", line)
    line = _BASE64_RUN.sub("***", line)
    line = redact(line)
    if len(line) > _MAX_DETAIL:
        line = line[: _MAX_DETAIL - 3] + "..."
    return line


def translate(
    exc: BaseException,
    *,
    auth_field: str,
    context: str | None = None,
) -> HeadwaterError:
    """
    The headwater error for an Azure SDK (or transport) exception.

    Args:
        exc: what the SDK raised.
        auth_field: the config field holding the credential in use, named by auth errors.
        context: what was being done (``"fetch 'a/b.csv'"``), prefixed to the message.
    """
    if isinstance(exc, HeadwaterError):
        return exc
    from azure.core import exceptions as az

    where = f"{context}: " if context else ""
    if isinstance(exc, az.ClientAuthenticationError) and exc.status_code is None:
        # azure-identity could not get a token (no managed identity, not logged in, ...).
        return AuthFailed(
            f"{where}could not obtain an Azure AD token "
            f"({type(exc).__name__}: {scrub(exc.message)})",
            field="identity",
            hint="check the identity settings (az login, managed identity, tenant/client ids)",
        )
    if isinstance(exc, az.HttpResponseError) and exc.status_code is not None:
        return _http_error(exc, where, auth_field)
    if isinstance(exc, az.HttpResponseError):
        # The SDK wraps body-read failures (connection cut mid-download) without a status.
        inner = exc.inner_exception
        if isinstance(inner, BaseException) and inner is not exc:
            if isinstance(inner, az.HttpResponseError) and inner.status_code is not None:
                return _http_error(inner, where, auth_field)
            if type(inner).__name__ in _DECODING_ERRORS:
                # The transport could not undo a Content-Encoding: the data, not the network.
                return IntegrityError(
                    f"{where}the response body could not be decoded ({type(inner).__name__}: "
                    f"{scrub(inner)})",
                    hint="the blob's Content-Encoding does not match its bytes",
                )
            return ConnectionFailed(
                f"{where}the connection broke while receiving data ({type(inner).__name__})",
                hint="the transfer is retried and resumed up to retry.attempts times",
            )
        return ConnectionFailed(f"{where}the response could not be read: {scrub(exc.message)}")
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
        text = scrub(exc.message)
        if _is_tls(exc):
            return TLSFailure(
                f"{where}TLS failure: {text}",
                field="account_url",
                hint="check the endpoint's certificate (or use http:// for a local emulator)",
            )
        return ConnectionFailed(
            f"{where}cannot reach the storage endpoint: {text}",
            field="account_url",
            hint="check account_url / account_name and the network (firewall, proxy, DNS)",
        )
    if isinstance(exc, TimeoutError | ConnectionError):
        return ConnectionFailed(f"{where}{type(exc).__name__}: {scrub(exc)}")
    if isinstance(exc, az.AzureError):
        return ConnectorError(f"{where}{type(exc).__name__}: {scrub(exc.message)}")
    return ConnectorError(f"{where}{type(exc).__name__}: {scrub(exc)}")


def broke_mid_body(exc: BaseException) -> bool:
    """
    Whether ``exc`` is a response body that broke after the service began to answer (the
    SDK wraps such a failure in an `HttpResponseError` without a status): the endpoint
    is alive, only this transfer was cut.
    """
    from azure.core.exceptions import HttpResponseError

    if not isinstance(exc, HttpResponseError) or exc.status_code is not None:
        return False
    inner = exc.inner_exception
    if isinstance(inner, HttpResponseError) and inner.status_code is not None:
        return False  # a status after all: `translate` reads it as that status
    return isinstance(inner, BaseException) and inner is not exc


def _http_error(exc: object, where: str, auth_field: str) -> HeadwaterError:
    from azure.core import exceptions as az

    assert isinstance(exc, az.HttpResponseError)
    status = int(exc.status_code or 0)
    code = _error_code(exc)
    detail = scrub(exc.message)
    tag = f"HTTP {status}{', ' + code if code else ''}"
    if status == 401 or (status == 403 and _is_authentication(code, detail)):
        return AuthFailed(
            f"{where}the storage account rejected the credential in {auth_field} ({tag})",
            field=auth_field,
            hint="check the key / connection string, and that a SAS has not expired",
        )
    if status == 403:
        return PermissionDenied(
            f"{where}not allowed: {detail} ({tag})",
            field=auth_field,
            hint="the credential is valid but lacks a permission (SAS permissions, RBAC role, "
            "firewall rule) for this operation",
        )
    if status == 404:
        if code == "ContainerNotFound":
            return NotFound(
                f"{where}the container does not exist ({tag})",
                field="container",
                hint="create it or fix the container name",
            )
        return NotFound(f"{where}no such blob ({tag})")
    if status == 409 and code == "BlobAlreadyExists":
        return AlreadyExists(f"{where}the blob exists ({tag})", hint="pass overwrite=True")
    if status == 412:
        return IntegrityError(
            f"{where}the blob changed while it was being read (etag no longer matches; {tag})",
            hint="try again; the new version will be read from the start",
        )
    if status == 400 and code == "InvalidHeaderValue" and "version" in detail.lower():
        return ConfigError(
            f"{where}the service does not accept this API version ({tag})",
            field="api_version",
            hint="set api_version to one the endpoint supports",
        )
    retry_after = _retry_after(exc)
    if status == 429 or (
        status == 503
        and code in {"ServerBusy", "IngressOverAccountLimit", "EgressOverAccountLimit"}
    ):
        return RateLimited(f"{where}throttled: {detail} ({tag})", retry_after=retry_after)
    if status >= 500:
        return ServerError(
            f"{where}the storage service failed: {detail} ({tag})",
            retry_after=retry_after,
            retryable=status in (500, 502, 503, 504),
        )
    return ConnectorError(f"{where}{detail} ({tag})")


def _is_tls(exc: BaseException) -> bool:
    """Whether a transport failure is a TLS one (walks the exception chain)."""
    import ssl

    seen: set[int] = set()
    current: object = exc
    while isinstance(current, BaseException) and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, ssl.SSLError) or "SSL" in name or "Certificate" in name:
            return True
        current = (
            getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        )
    text = str(exc).lower()
    # aiohttp says "ssl:default" in every connect error, so look for real TLS words only.
    return "certificate verify failed" in text or "[ssl" in text or "sslerror" in text


def _error_code(exc: object) -> str | None:
    code = getattr(exc, "error_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        code = headers.get("x-ms-error-code")
    if code is None:
        return None
    return str(getattr(code, "value", code))


def _is_authentication(code: str | None, detail: str) -> bool:
    if code in _AUTH_CODES:
        return True
    # Azurite answers a bad signature with AuthorizationFailure; Azure says the same words.
    lowered = detail.lower()
    return "failed to authenticate" in lowered or "signature" in lowered


def _retry_after(exc: object) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    from headwater.toolkit import parse_retry_after

    value = headers.get("Retry-After")
    return parse_retry_after(value) if value else None


@contextlib.contextmanager
def translated(auth_field: str, context: str | None = None) -> Iterator[None]:
    """Re-raise anything the SDK raises inside the block as a headwater error."""
    try:
        yield
    except HeadwaterError:
        raise
    except Exception as exc:
        raise translate(exc, auth_field=auth_field, context=context) from None
