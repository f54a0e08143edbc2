"""
Blob listings: the List Blobs request sent through the SDK client's own pipeline, and its
XML answer read by a streaming parser instead of the SDK's model deserializer.

Why: the SDK builds each listed blob from the response's element tree with its generated
deserializer, about 0.2 ms of CPU per blob (most of a listing's time); reading the few
fields a listing needs from the same XML with the standard library's parser costs about
a twentieth of that.

What stays the SDK's: the request goes through the container client's pipeline
(``_send_request``, the generated client's documented way to send a request of one's
own), so it has the client's credential and signing, headers and API version, retry
policy, hosts, redirects, timeouts, TLS and transport — everything `list_blobs` has
except its deserializer. The query is the one the SDK's ``list_blob_flat_segment`` /
``list_blob_hierarchy_segment`` build (``restype=container&comp=list``, ``prefix``,
``delimiter``, ``marker``, ``maxresults``, values quoted as its serializer quotes them),
sent to the container's URL, never to an address the response names. A client without
that method (another SDK release) is listed through `list_blobs` / `walk_blobs` as
before: `from_sdk` turns their entries into the same `Listed` values.

What a listing yields is what the SDK's pager gave: names (``Encoded="true"`` ones
percent-decoded, as the SDK does), size, last-modified time (the same timezone-aware
datetime), etag, Content-MD5 (decoded bytes), content type and encoding; with a
delimiter, a page's prefixes and then its blobs, as `walk_blobs` orders them. A response
that is not what List Blobs returns (not XML, another root, an entry that is neither
``Blob`` nor ``BlobPrefix``, a blob without a name, etag or size, a number or date that
does not parse) fails the listing with a `ServerError` naming the cause: no entry is
ever skipped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import email.utils
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final
from urllib.parse import quote, unquote

from headwater import ServerError

#: Bytes handed to the parser at a time: each blob's elements are dropped once read, so
#: the parsed tree never holds more than a chunk's worth of them.
_FEED: Final = 64 * 1024
#: The only entries a ``<Blobs>`` element holds.
_ENTRIES: Final = frozenset({"Blob", "BlobPrefix"})
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
#: RFC 1123 as the service writes it: ``Fri, 04 Dec 2026 21:27:39 GMT``.
_RFC1123: Final = re.compile(
    r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT\Z"
)
#: Parsed dates: a listing's blobs share few distinct modification seconds.
_DATES: dict[str, datetime] = {}
_DATES_MAX: Final = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    """One entry of a listing page: a blob, or (``is_prefix``) a virtual directory."""

    #: The full name in the container (percent-decoded when the service encoded it).
    name: str
    is_prefix: bool = False
    size: int | None = None
    last_modified: datetime | None = None
    #: As the listing spells it (``0x8D...``, no quotes).
    etag: str | None = None
    content_md5: bytes | None = None
    content_type: str | None = None
    content_encoding: str | None = None


def from_sdk(entry: Any) -> Listed:
    """The `Listed` of an SDK ``BlobProperties`` (a listing's, or a HEAD's) or ``BlobPrefix``."""
    settings = getattr(entry, "content_settings", None)
    if settings is None:  # a BlobPrefix of walk_blobs
        return Listed(entry.name, is_prefix=True)
    md5 = settings.content_md5
    return Listed(
        entry.name,
        size=entry.size,
        last_modified=entry.last_modified,
        etag=entry.etag,
        content_md5=bytes(md5) if md5 else None,
        content_type=settings.content_type or None,
        content_encoding=settings.content_encoding or None,
    )


def can_send(container: Any) -> bool:
    """Whether ``container`` (sync or aio) has the pipeline entry this module sends through."""
    return callable(getattr(getattr(container, "_client", None), "_send_request", None))


def request(
    container: Any,
    *,
    prefix: str | None,
    delimiter: str | None,
    marker: str | None,
    size: int,
) -> Any:
    """The List Blobs request of one page, as the SDK's generated operation builds it."""
    from azure.core.rest import HttpRequest

    params = {"restype": "container", "comp": "list"}
    if prefix:
        params["prefix"] = quote(prefix, safe="")
    if delimiter is not None:
        params["delimiter"] = quote(delimiter, safe="")
    if marker:
        params["marker"] = quote(marker, safe="")
    params["maxresults"] = str(size)
    headers = {"x-ms-version": container.api_version, "Accept": "application/xml"}
    return HttpRequest("GET", container.url, params=params, headers=headers)


def send(container: Any, page: Any, options: dict[str, Any]) -> Any:
    """
    Send ``page`` (a `request`) through ``container``'s pipeline: the response (sync
    client), or the awaitable of it (aio client), its body read.
    """
    return container._client._send_request(page, stream=False, **options)


@contextlib.contextmanager
def not_xml(where: str) -> Iterator[None]:
    """Around `send`: a body the pipeline could not parse as XML fails as the listing's."""
    from azure.core.exceptions import DecodeError

    try:
        yield
    except DecodeError:
        raise _malformed(where, "the body is not well-formed XML") from None


def page(response: Any, where: str) -> tuple[list[Listed], str | None]:
    """
    The entries of one List Blobs response and the next page's marker (``None``: last).

    Raises:
        azure.core.exceptions.HttpResponseError: the service refused (the status the SDK
            would raise it for, with the service's error code and message), which the
            connector translates as it does the SDK's own errors.
        ServerError: the body is not a List Blobs result (``where`` names the listing).
    """
    if response.status_code != 200:
        raise _status_error(response)
    return parse(response.content, where)


def parse(body: bytes, where: str) -> tuple[list[Listed], str | None]:
    """The entries of a List Blobs XML body (see `page`) and its next marker."""
    # Typed loosely: its events are (name, Element) pairs with "end" events only.
    parser: Any = ET.XMLPullParser(events=("end",))
    blobs: list[Listed] = []
    prefixes: list[Listed] = []
    root: ET.Element | None = None  # the last element that ended: the root, in the end
    view = memoryview(body)
    try:
        for start in range(0, len(view), _FEED):
            parser.feed(view[start : start + _FEED])
            last = _read(parser, blobs, prefixes, where)
            root = root if last is None else last
        parser.close()
        last = _read(parser, blobs, prefixes, where)
        root = root if last is None else last
    except ET.ParseError as exc:
        raise _malformed(where, f"the body is not well-formed XML ({exc})") from None
    if root is None or root.tag != "EnumerationResults":
        found = "nothing" if root is None else f"<{root.tag}>"
        raise _malformed(where, f"expected <EnumerationResults>, found {found}")
    _check_entries(root, len(blobs) + len(prefixes), where)
    return prefixes + blobs, root.findtext("NextMarker") or None


def _read(
    parser: Any, blobs: list[Listed], prefixes: list[Listed], where: str
) -> ET.Element | None:
    """Take the finished entries out of ``parser``; the last element that ended."""
    last: ET.Element | None = None
    for _, element in parser.read_events():
        tag = element.tag
        if tag == "Blob":
            blobs.append(_blob(element, where))
            element.clear()
        elif tag == "BlobPrefix":
            prefixes.append(Listed(_name(element, where), is_prefix=True))
            element.clear()
        last = element
    return last


def _check_entries(root: ET.Element, taken: int, where: str) -> None:
    """Every entry read sits in the one ``<Blobs>``, and nothing else does."""
    found = root.findall("Blobs")
    if len(found) != 1:
        raise _malformed(where, f"expected one <Blobs> element, found {len(found)}")
    (entries,) = found
    for entry in entries:
        if entry.tag not in _ENTRIES:
            raise _malformed(where, f"unknown entry <{entry.tag}> in <Blobs>")
    if len(entries) != taken:
        raise _malformed(where, "a <Blob> or <BlobPrefix> element outside <Blobs>")


def _name(entry: ET.Element, where: str) -> str:
    element = entry.find("Name")
    text = None if element is None else element.text
    if not text:
        raise _malformed(where, f"a <{entry.tag}> without a name")
    assert element is not None
    encoded = element.get("Encoded")
    if encoded is None or encoded == "false":
        return text
    if encoded == "true":
        return unquote(text)
    raise _malformed(where, f"<Name Encoded={encoded!r}> of {text!r}")


def _blob(blob: ET.Element, where: str) -> Listed:
    name = _name(blob, where)
    props = blob.find("Properties")
    if props is None:
        raise _malformed(where, f"blob {name!r} has no <Properties>")
    etag = props.findtext("Etag")
    length = props.findtext("Content-Length")
    if not etag or length is None:
        missing = "Etag" if not etag else "Content-Length"
        raise _malformed(where, f"blob {name!r} has no <{missing}>")
    try:
        size = int(length)
        modified = _date(props.findtext("Last-Modified"))
        md5 = props.findtext("Content-MD5")
        digest = base64.b64decode(md5) if md5 else None
    except (ValueError, binascii.Error) as exc:
        raise _malformed(where, f"blob {name!r}: {exc}") from None
    return Listed(
        name,
        size=size,
        last_modified=modified,
        etag=etag,
        content_md5=digest or None,
        content_type=props.findtext("Content-Type") or None,
        content_encoding=props.findtext("Content-Encoding") or None,
    )


def _date(text: str | None) -> datetime | None:
    """An RFC 1123 date as the SDK's deserializer makes it (UTC-aware)."""
    if not text:
        return None
    found = _DATES.get(text)
    if found is not None:
        return found
    match = _RFC1123.match(text)
    if match is not None and match[2] in _MONTHS:
        day, month, year, hour, minute, second = match.groups()
        found = datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
            tzinfo=UTC,
        )  # fmt: skip
    else:
        # Any other spelling: the SDK's own parsing (``Deserializer.deserialize_rfc``).
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            raise ValueError(f"Last-Modified {text!r} is not an HTTP date")
        offset = timezone(timedelta(seconds=parsed[9] or 0))
        found = datetime(*parsed[:6], tzinfo=offset)
    if len(_DATES) >= _DATES_MAX:
        _DATES.clear()
    _DATES[text] = found
    return found


def _status_error(response: Any) -> Exception:
    """The SDK's exception for a List Blobs answer other than 200, as its pager raises it."""
    from azure.core import exceptions as az

    code, message = _service_error(response)
    kinds: dict[int, type[az.HttpResponseError]] = {
        401: az.ClientAuthenticationError,
        404: az.ResourceNotFoundError,
        409: az.ResourceExistsError,
        304: az.ResourceNotModifiedError,
    }
    kind = kinds.get(response.status_code, az.HttpResponseError)
    text = message or response.reason or f"HTTP {response.status_code}"
    error = kind(message=f"{text}\nErrorCode:{code}", response=response)
    error.error_code = code  # type: ignore[attr-defined]  # as process_storage_error sets it
    return error


def _service_error(response: Any) -> tuple[str | None, str | None]:
    """The error code (header, else body) and the first line of the service's message."""
    code = response.headers.get("x-ms-error-code")
    message = None
    try:
        # The SDK's pipeline has parsed this body with the same parser already (expat:
        # no external entities, entity expansion bounded).
        body = ET.fromstring(response.content or b"<x/>")  # noqa: S314
    except ET.ParseError:
        return code, None
    code = code or body.findtext("Code")
    text = body.findtext("Message")
    if text:
        message = text.strip().splitlines()[0]
    return code, message


def _malformed(where: str, cause: str) -> ServerError:
    return ServerError(
        f"{where}: the service's List Blobs response could not be read: {cause}",
        retryable=False,
        hint="nothing was listed from this page; report the endpoint's software and version",
    )
