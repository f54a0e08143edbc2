"""
Listings parsed from the List Blobs XML by headwater (`_listing`) against the SDK's own
listing, field by field, sync and async.

On Azurite, blobs are made by the Azure SDK and the expected items are built from the
SDK's ``list_blobs`` / ``walk_blobs`` (same page size, so the same pages) the way the
connector built them before it parsed the XML itself. What Azurite cannot produce — names
the service sends ``Encoded="true"`` (characters XML 1.0 cannot hold; Azurite answers
those with a 500), and broken responses — comes from a loopback HTTP server that answers
List Blobs with fixed bodies, listed by the SDK and by the connector alike.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest

from headwater import AuthFailed, Item, NotFound, ServerError
from headwater_azure_blob import _listing
from headwater_azure_blob._names import blob_format, normalize_etag

pytestmark = pytest.mark.integration

#: name -> (data, upload options). Every character class the brief names, and nested prefixes.
BLOBS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "plain.txt": (b"plain", {"content_type": "text/plain"}),
    "sp ace/file name.csv": (b"a,b\n1,2\n", {"content_type": "text/csv"}),
    "pct%41/h#sh?q+plus.jsonl": (b'{"a": 1}\n', {}),
    "pct%41/100%.txt": (b"%", {}),
    "ünï/cödé€😀.jsonl.gz": (b"\x1f\x8b", {"content_type": "application/gzip"}),
    "amp&<>'\"/quote's.parquet": (b"PAR1", {}),
    "tab\there/new\nline.txt": (b"t", {}),
    "del\x7f/c1\x85.bin": (b"d", {}),
    "a/top.txt": (b"top", {}),
    "a/b/sib.tsv": (b"x\ty\n", {}),
    "a/b/c/deep.json": (b"{}", {}),
    "a/b/c/d/deeper.ndjson": (b"{}\n", {}),
    "gz/coded.jsonl": (b"\x1f\x8b", {"content_encoding": "gzip"}),
    "md5/explicit.bin": (
        b"data",
        {"content_md5": hashlib.md5(b"other", usedforsecurity=False).digest()},
    ),
    "empty": (b"", {}),
}
#: Staged and committed as blocks: the service keeps no Content-MD5 for it.
BLOCK_BLOB = "blocks/no-md5.csv"


def _upload(container: Any) -> None:
    from azure.storage.blob import BlobBlock, ContentSettings

    for name, (data, settings) in BLOBS.items():
        if "content_md5" in settings:  # a stored MD5 other than the data's: set afterwards
            blob = container.upload_blob(name, data)
            blob.set_http_headers(content_settings=ContentSettings(**settings))
        else:
            container.upload_blob(name, data, content_settings=ContentSettings(**settings))
    blob = container.get_blob_client(BLOCK_BLOB)
    blob.stage_block("b1", b"x,y\n")
    blob.commit_block_list([BlobBlock("b1")])


@pytest.fixture
def filled(container: Any) -> Any:
    _upload(container)
    return container


def expected_item(relative: str, entry: Any) -> Item:
    """What the connector made of an SDK listing entry before it parsed the XML itself."""
    if not hasattr(entry, "content_settings"):
        return Item(relative, "prefix")
    settings = entry.content_settings
    extra: dict[str, Any] = {"etag": normalize_etag(entry.etag)}
    if settings.content_md5:
        extra["content_md5"] = base64.b64encode(bytes(settings.content_md5)).decode()
    if settings.content_type:
        extra["content_type"] = settings.content_type
    if settings.content_encoding:
        extra["content_encoding"] = settings.content_encoding
    found = blob_format(relative)
    if found is not None:
        extra["format"] = found.fmt
        if found.compression is not None:
            extra["compression"] = found.compression
    return Item(relative, "blob", size=entry.size, modified=entry.last_modified, extra=extra)


def sdk_items(
    container: Any, *, root: str = "", path: str = "", recursive: bool, page_size: int
) -> list[Item]:
    """The SDK's listing of ``root + path``, page by page, as the connector's items."""
    start = root + path or None
    if recursive:
        pager = container.list_blobs(name_starts_with=start, results_per_page=page_size)
    else:
        pager = container.walk_blobs(name_starts_with=start, results_per_page=page_size)
    return [
        expected_item(entry.name[len(root) :], entry) for page in pager.by_page() for entry in page
    ]


def assert_same(got: list[Item], want: list[Item]) -> None:
    """Equal item by item and field by field (datetimes with the same UTC offset too)."""
    assert [item.name for item in got] == [item.name for item in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine.kind == theirs.kind, mine.name
        assert mine.size == theirs.size, mine.name
        assert mine.modified == theirs.modified, mine.name
        if theirs.modified is not None:
            assert mine.modified is not None
            assert mine.modified.utcoffset() == theirs.modified.utcoffset(), mine.name
        assert mine.extra == theirs.extra, mine.name
    assert got == want


@pytest.mark.parametrize("page_size", [2, 5000])
async def test_recursive_listing_equals_the_sdk(make_twin, filled, page_size):
    """Every blob, over several pages: the same items, fields and order as the SDK's."""
    twin = make_twin(list_page_size=page_size)
    got = await twin.list(recursive=True)
    want = sdk_items(filled, recursive=True, page_size=page_size)
    assert len(want) == len(BLOBS) + 1
    assert_same(got, want)
    by_name = {item.name: item for item in got}
    assert "content_md5" not in by_name[BLOCK_BLOB].extra
    explicit = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    assert by_name["md5/explicit.bin"].extra["content_md5"] == explicit
    assert by_name["gz/coded.jsonl"].extra["content_encoding"] == "gzip"
    assert by_name["ünï/cödé€😀.jsonl.gz"].extra["compression"] == "gzip"
    assert by_name["plain.txt"].modified is not None
    assert by_name["plain.txt"].modified.tzinfo is UTC


@pytest.mark.parametrize("path", [None, "a/", "a/b", "a/b/c/", "sp ace/", "pct%41/", "ünï/"])
@pytest.mark.parametrize("page_size", [1, 3, 5000])
async def test_one_level_equals_the_sdk(make_twin, filled, path, page_size):
    """Prefixes and blobs one level down (a page's prefixes first, as walk_blobs)."""
    twin = make_twin(list_page_size=page_size)
    got = await twin.list(path)
    directory = "" if path is None else path.rstrip("/") + "/"
    want = sdk_items(filled, path=directory, recursive=False, page_size=page_size)
    assert want
    assert_same(got, want)


@pytest.mark.parametrize("path", ["a/", "pct%41/"])
async def test_nested_recursive_equals_the_sdk(make_twin, filled, path):
    twin = make_twin(list_page_size=2)
    got = await twin.list(path, recursive=True)
    assert_same(got, sdk_items(filled, path=path, recursive=True, page_size=2))


@pytest.mark.parametrize("recursive", [False, True])
async def test_source_prefix_names_are_relative(make_twin, filled, recursive):
    """With ``prefix`` in the config, names are relative to it, as before."""
    twin = make_twin(prefix="a/", list_page_size=2)
    got = await twin.list(recursive=recursive)
    want = sdk_items(filled, root="a/", recursive=recursive, page_size=2)
    assert_same(got, want)
    assert {item.name for item in got} >= {"top.txt"}


async def test_empty_container(twin, container):
    assert await twin.list() == []
    assert await twin.list(recursive=True) == []
    with pytest.raises(NotFound):
        await twin.list("nothing/")


async def test_sdk_listing_where_the_extension_point_is_missing(make_twin, filled, monkeypatch):
    """A client without ``_send_request`` is listed by the SDK's pager: the same items."""
    twin = make_twin(list_page_size=3)
    fast = await twin.list(recursive=True)
    fast_level = await twin.list("a/")
    monkeypatch.setattr(_listing, "can_send", lambda container: False)
    assert_same(await twin.list(recursive=True), fast)
    assert_same(await twin.list("a/"), fast_level)


async def test_read_of_a_directory_lists_through_the_parser(make_twin, filled):
    """`read` finds its blobs through the same listing (refs with size, etag, MD5)."""
    twin = make_twin(list_page_size=1)
    batches = await twin.read("sp ace/")
    assert [record for batch in batches for record in batch.records] == [{"a": "1", "b": "2"}]


# --- a loopback List Blobs server: encoded names and broken responses ------------------------

_HEAD = '<?xml version="1.0" encoding="utf-8"?>'


def _blob_xml(
    name: str, *, encoded: bool = False, md5: str | None = "XUFAKrxLKna5cZ2REBfFkg=="
) -> str:
    attr = ' Encoded="true"' if encoded else ""
    md5_xml = f"<Content-MD5>{md5}</Content-MD5>" if md5 is not None else "<Content-MD5 />"
    return (
        f"<Blob><Name{attr}>{name}</Name><Properties>"
        "<Creation-Time>Thu, 03 Dec 2026 10:00:00 GMT</Creation-Time>"
        "<Last-Modified>Fri, 04 Dec 2026 21:27:39 GMT</Last-Modified>"
        "<Etag>0x8DE1234567890AB</Etag><Content-Length>5</Content-Length>"
        f"<Content-Type>text/plain</Content-Type><Content-Encoding />{md5_xml}"
        "<BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus>"
        "<SomeFutureField>x</SomeFutureField></Properties><OrMetadata /></Blob>"
    )


def _page(entries: str, marker: str = "") -> bytes:
    return (
        f'{_HEAD}<EnumerationResults ServiceEndpoint="https://elsewhere.example/" '
        f'ContainerName="cont"><Prefix /><Marker /><MaxResults>5000</MaxResults>'
        f"<Blobs>{entries}</Blobs><NextMarker>{marker}</NextMarker></EnumerationResults>"
    ).encode()


class _Stub(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Any = self.server
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        server.queries.append(query)
        marker = query.get("marker", [""])[0]
        status, body = server.pages[marker] if marker in server.pages else server.pages[""]
        if isinstance(status, list):  # a sequence of answers for this marker
            status, body = status.pop(0) if len(status) > 1 else status[0]
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if status != 200:
            self.send_header("x-ms-error-code", body.decode().split("<Code>")[1].split("<")[0])
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Any]:
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.pages = {}
    server.queries = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def stub_twin(make_twin, azurite, stub):
    return make_twin(account_url=stub.url, container="cont", retry={"attempts": 2, "initial": 0.01})


def _sdk_container(azurite: Any, url: str) -> Any:
    from azure.storage.blob import ContainerClient

    return ContainerClient(
        url,
        "cont",
        credential={"account_name": azurite.account_name, "account_key": azurite.account_key},
        retry_total=0,
    )


#: Encoded names as the service sends them, and what they decode to.
ENCODED = {
    "ctl%01char": "ctl\x01char",
    "nul%00x%EF%BF%BE": "nul\x00x\ufffe",
    "dir%2Fesc%1B.jsonl": "dir/esc\x1b.jsonl",
    "100%25%20sure+%2B": "100% sure++",
}


async def test_encoded_names_equal_the_sdk(stub, stub_twin, azurite):
    """``Encoded="true"`` names are percent-decoded as the SDK decodes them, over two pages."""
    first = "".join(_blob_xml(raw, encoded=True) for raw in list(ENCODED)[:2])
    second = "".join(_blob_xml(raw, encoded=True) for raw in list(ENCODED)[2:])
    second += _blob_xml("plain &amp; simple", md5=None)
    stub.pages = {"": (200, _page(first, "2!72!next page")), "2!72!next page": (200, _page(second))}
    got = await stub_twin.list(recursive=True)
    client = _sdk_container(azurite, stub.url)
    want = [expected_item(e.name, e) for e in client.list_blobs()]
    assert [item.name for item in got] == [*ENCODED.values(), "plain & simple"]
    assert_same(got, want)
    # The marker went back as the service gave it, to the configured host only.
    assert [q.get("marker") for q in stub.queries[-4:]] == [None, ["2!72!next page"]] * 2


async def test_encoded_prefixes_equal_the_sdk(stub, stub_twin, azurite):
    entries = (
        '<BlobPrefix><Name Encoded="true">d%01/</Name></BlobPrefix>'
        + _blob_xml("a.txt")
        + "<BlobPrefix><Name>plain/</Name></BlobPrefix>"
    )
    stub.pages = {"": (200, _page(entries))}
    got = await stub_twin.list()
    want = [expected_item(e.name, e) for e in _sdk_container(azurite, stub.url).walk_blobs()]
    assert [(item.name, item.kind) for item in got] == [
        ("d\x01/", "prefix"),
        ("plain/", "prefix"),
        ("a.txt", "blob"),
    ]
    assert_same(got, want)
    assert stub.queries[0]["delimiter"] == ["/"]


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (_page(_blob_xml("a")).replace(b"</EnumerationResults>", b""), "not well-formed XML"),
        (b"not xml at all", "not well-formed XML"),
        (_page("<Thing><Name>x</Name></Thing>"), "unknown entry <Thing>"),
        (_page(_blob_xml("a").replace("<Etag>0x8DE1234567890AB</Etag>", "")), "no <Etag>"),
        (
            _page(_blob_xml("a").replace("<Content-Length>5</Content-Length>", "")),
            "no <Content-Length>",
        ),
        (_page(_blob_xml("a").replace("<Content-Length>5<", "<Content-Length>five<")), "'a'"),
        (_page(_blob_xml("a").replace("Fri, 04 Dec", "Someday")), "not an HTTP date"),
        (_page(_blob_xml("a").replace("<Name>a</Name>", "")), "without a name"),
        (_page(_blob_xml("a", encoded=True).replace('"true"', '"maybe"')), "Encoded='maybe'"),
        (
            _page(_blob_xml("a")).replace(b"<Blobs>", b"<Other>").replace(b"</Blobs>", b"</Other>"),
            "one <Blobs>",
        ),
        (
            _page(_blob_xml("a")).replace(
                b"<Marker />", b"<Marker>" + _blob_xml("b").encode() + b"</Marker>"
            ),
            "outside <Blobs>",
        ),
        (b'<?xml version="1.0"?><Error><Code>X</Code></Error>', "found <Error>"),
        (b"<EnumerationResults />", "one <Blobs>"),
    ],
)
async def test_a_response_that_does_not_parse_fails_clearly(stub, stub_twin, body, cause):
    """Never a silently shorter listing: a clear error naming the cause."""
    stub.pages = {"": (200, body)}
    with pytest.raises(ServerError) as raised:
        await stub_twin.list(recursive=True)
    assert "List Blobs response could not be read" in str(raised.value)
    assert cause in str(raised.value)
    assert raised.value.retryable is False


async def test_a_broken_second_page_fails_after_the_first(stub, stub_twin):
    stub.pages = {"": (200, _page(_blob_xml("a"), "m")), "m": (200, b"<EnumerationResults><Blobs>")}
    got: list[str] = []

    async def consume() -> None:
        if stub_twin.is_async:
            async for item in stub_twin.connector.alist(recursive=True):
                got.append(item.name)
        else:
            got.extend(item.name for item in stub_twin.connector.list(recursive=True))

    with pytest.raises(ServerError, match="not well-formed XML"):
        await consume()
    assert got == ["a"]


def _error(code: str, message: str) -> bytes:
    return f"{_HEAD}<Error><Code>{code}</Code><Message>{message}\nRequestId:x\nTime:y</Message></Error>".encode()


async def test_service_errors_are_translated_as_before(stub, stub_twin):
    stub.pages = {"": (404, _error("ContainerNotFound", "The specified container does not exist."))}
    with pytest.raises(NotFound) as raised:
        await stub_twin.list()
    assert raised.value.field == "container"
    stub.pages = {
        "": (403, _error("AuthenticationFailed", "Server failed to authenticate the request."))
    }
    with pytest.raises(AuthFailed):
        await stub_twin.list()


async def test_a_transient_status_is_retried_by_the_sdk_pipeline(stub, stub_twin):
    """The request runs through the client's retry policy: a 503 then the page."""
    answers = [(503, _error("ServerBusy", "busy")), (200, _page(_blob_xml("a")))]
    stub.pages = {"": (answers, b"")}
    assert [item.name for item in await stub_twin.list(recursive=True)] == ["a"]
    assert len(stub.queries) == 2


def test_dates_parse_as_the_sdk_parses_them():
    from azure.storage.blob._generated._utils.serialization import Deserializer

    for text in (
        "Fri, 04 Dec 2026 21:27:39 GMT",
        "Mon, 29 Feb 2016 00:00:00 GMT",
        "Fri, 4 Dec 2026 21:27:39 +0100",
        "4 Dec 2026 21:27:39 GMT",
    ):
        mine = _listing._date(text)
        theirs = Deserializer.deserialize_rfc(text)
        assert mine == theirs
        assert mine is not None
        assert mine.utcoffset() == theirs.utcoffset()
