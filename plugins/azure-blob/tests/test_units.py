"""Pure logic (no service): config, URLs, hooks, names, record codecs, transfer bookkeeping."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import astuple

import pytest

from headwater import (
    AlreadyExists,
    ConfigError,
    ConnectionFailed,
    IntegrityError,
    Registry,
    Secret,
)
from headwater.toolkit import RetryPolicy
from headwater_azure_blob import AzureBlobConfig, AzureBlobConnector, hooks
from headwater_azure_blob._config import config_from_url
from headwater_azure_blob._errors import scrub, translate
from headwater_azure_blob._names import (
    glob_to_regex,
    literal_prefix,
    normalize_etag,
    require_format,
)
from headwater_azure_blob._parquet import ParquetEncoder
from headwater_azure_blob._plan import (
    BlobRef,
    FetchPlan,
    ReadPlan,
    Start,
    WritePlan,
    encode_state,
    state_in,
)
from headwater_azure_blob._records import BlobReading, RecordWriting
from headwater_azure_blob._transfer import (
    BlockPlan,
    DirectWriter,
    DownloadSink,
    RangeSet,
    Rechunker,
)

KEY = "c2VjcmV0LWtleS1tYXRlcmlhbC1mb3ItdGVzdHMtb25seQ=="
AZ = "https://acct.blob.core.windows.net"


def _config(**data) -> AzureBlobConfig:
    return AzureBlobConfig.model_validate({"container": "data", **data})


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {},
        {"account_key": KEY, "sas_token": "sv=1&sig=x"},
        {"account_key": KEY, "identity": "default"},
    ],
)
def test_exactly_one_auth(auth):
    """Zero or two credentials are refused with one readable message."""
    with pytest.raises(ConfigError) as info:
        AzureBlobConnector({"container": "data", "account_url": AZ, **auth})
    assert "exactly one of" in info.value.message


@pytest.mark.parametrize(
    ("url", "account"),
    [
        ("https://acct.blob.core.windows.net", "acct"),
        ("https://acct.blob.core.chinacloudapi.cn/", "acct"),
        ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
        ("http://localhost:10000/devstoreaccount1", "devstoreaccount1"),
        ("https://acct.z12.blob.storage.azure.net", "acct"),
    ],
)
def test_account_name_from_url(url, account):
    """The account for key auth comes from the host, or the path of an emulator URL."""
    assert account == _config(account_url=url, account_key=KEY).resolved_account_name


def test_account_key_needs_derivable_name():
    """A key with an endpoint that names no account asks for account_name."""
    with pytest.raises(ValueError, match="account_name"):
        _config(account_url="https://storage.internal", account_key=KEY)
    assert (
        "acct"
        == _config(
            account_url="https://storage.internal", account_name="acct", account_key=KEY
        ).resolved_account_name
    )


def test_account_name_alone_builds_endpoint():
    """account_name + endpoint_suffix gives the sovereign-cloud endpoint."""
    config = _config(account_name="acct", endpoint_suffix="core.usgovcloudapi.net", sas_token="s")
    assert "https://acct.blob.core.usgovcloudapi.net" == config.endpoint


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account_url", f"{AZ}?sv=2020&sig=abc"),
        ("account_url", "ftp://acct.blob.core.windows.net"),
        ("container", "Bad_Name"),
        ("container", "ab"),
        ("container", "a--b"),
        ("encoding", "utf-16"),
        ("max_concurrency", 0),
    ],
)
def test_invalid_fields(field, value):
    """Malformed values fail validation naming the field."""
    data = {"account_url": AZ, "account_key": KEY, field: value}
    with pytest.raises(ConfigError) as info:
        AzureBlobConnector({"container": "data", **data})
    assert field == info.value.field


def test_identity_fields_consistency():
    """Service-principal fields need identity='client_secret', and it needs all of them."""
    with pytest.raises(ValueError, match="only apply"):
        _config(account_url=AZ, account_key=KEY, tenant_id="t")
    with pytest.raises(ValueError, match="needs tenant_id"):
        _config(account_url=AZ, identity="client_secret", client_id="c")
    config = _config(
        account_url=AZ, identity="client_secret", tenant_id="t", client_id="c", client_secret="s"
    )
    assert "identity" == config.auth_field


def test_prefix_normalised():
    """A prefix is stored without a leading slash and with a trailing one."""
    assert "a/b/" == _config(account_url=AZ, account_key=KEY, prefix="/a/b").prefix
    assert "" == _config(account_url=AZ, account_key=KEY, prefix="").prefix


def test_literal_secrets_masked_references_kept():
    """repr and sanitized() mask a literal key and keep a reference as written."""
    connector = AzureBlobConnector(
        {"container": "data", "account_url": AZ, "account_key": KEY, "retry": {"attempts": 2}}
    )
    assert KEY not in repr(connector)
    assert KEY not in str(connector.config.model_dump())
    assert "***" == connector.config.sanitized()["account_key"]
    ref = AzureBlobConnector({"container": "data", "account_url": AZ, "sas_token": "env:MY_SAS"})
    assert "env:MY_SAS" == ref.config.sanitized()["sas_token"]


def test_secret_reference_resolved_at_connect(monkeypatch):
    """An env: key is read when the client is built, not when the config is parsed."""
    connector = AzureBlobConnector(
        {"container": "data", "account_url": AZ, "account_key": "env:HW_TEST_AZ_KEY"}
    )
    monkeypatch.setenv("HW_TEST_AZ_KEY", KEY)
    assert KEY == connector.secret("account_key")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"account_url": "http://acct.blob.core.windows.net", "account_key": KEY}, "account_url"),
        (
            {"account_url": "http://storage.example.com/acct", "sas_token": "sv=1&sig=x"},
            "account_url",
        ),
        (
            {
                "connection_string": "DefaultEndpointsProtocol=http;AccountName=acct;"
                f"AccountKey={KEY};EndpointSuffix=core.windows.net"
            },
            "connection_string",
        ),
    ],
    ids=["key", "sas", "connection-string"],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_credentials_over_plain_http_are_refused(config, field, mode):
    """An http:// endpoint off this machine: refused when connecting, before any request."""
    import asyncio

    async def acheck(connector):
        async with connector:
            return await connector.acheck()

    connector = AzureBlobConnector({"container": "data", **config})
    result = asyncio.run(acheck(connector)) if mode == "async" else connector.check()
    assert (False, "config", field) == (result.ok, result.category, result.field)
    assert "plain http" in result.message
    assert KEY not in result.message


def test_identity_without_extra_is_config_error(monkeypatch):
    """identity without azure-identity installed is a config error with an install hint."""
    # The test environment has azure-identity (adlfs needs it): hide it, as a missing
    # module (a None entry in sys.modules makes its import raise ImportError).
    for name in ("azure.identity", "azure.identity.aio"):
        monkeypatch.setitem(sys.modules, name, None)
    connector = AzureBlobConnector({"container": "data", "account_url": AZ, "identity": "default"})
    result = connector.check()
    assert ("config", "identity") == (result.category, result.field)
    assert "headwater-azure-blob[identity]" in (result.hint or "")


# --- URLs and hooks -----------------------------------------------------------------------


def test_az_url_with_connection_string_from_env():
    """az://CONTAINER/PATH takes a connection string reference from the environment."""
    data = config_from_url("az://logs/2024/", {}, {"AZURE_STORAGE_CONNECTION_STRING": "x"})
    assert {
        "container": "logs",
        "prefix": "2024/",
        "connection_string": "env:AZURE_STORAGE_CONNECTION_STRING",
    } == data


def test_az_url_with_account_and_key_from_env():
    """az:// with AZURE_STORAGE_ACCOUNT/KEY uses a reference, never the key itself."""
    env = {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": KEY}
    data = config_from_url("az://c1/p", {}, env)
    assert ("acct", "env:AZURE_STORAGE_KEY") == (data["account_name"], data["account_key"])
    assert KEY not in str(data)


def test_az_url_without_account_is_config_error():
    """az:// with no account anywhere is a config error naming account_name."""
    with pytest.raises(ConfigError) as info:
        config_from_url("az://c1/p", {}, {})
    assert "account_name" == info.value.field


def test_https_sas_url():
    """A SAS URL becomes account_url + container + prefix + a literal sas_token."""
    connector = AzureBlobConnector.from_url(f"{AZ}/cont/dir/file.csv?sv=2022&sig=SIGNATURE123")
    config = connector.config
    assert (AZ, "cont", "dir/file.csv/") == (config.account_url, config.container, config.prefix)
    assert isinstance(config.sas_token, Secret)
    assert "SIGNATURE123" not in repr(connector)


@pytest.mark.parametrize(
    ("url", "claimed"),
    [
        ("az://c/p", True),
        ("AZ://c/p", True),
        (f"{AZ}/c/p", True),
        ("https://acct.blob.core.usgovcloudapi.net/c", True),
        ("https://api.example.com/v1/items", False),
        ("https://acct.dfs.core.windows.net/c", False),
        ("postgresql://h/db", False),
    ],
)
def test_connector_for_url(url, claimed):
    """The hook claims az:// and Azure blob hosts only."""
    assert ("azure-blob" if claimed else None) == hooks.connector_for_url(url)


def test_registry_connects_from_url():
    """A registry with this plugin builds the connector from an az:// URL."""
    registry = Registry(autoload=False, plugins=[hooks])
    connector = registry.connect("az://cont/x", {"account_url": AZ, "account_key": KEY})
    assert isinstance(connector, AzureBlobConnector)
    assert ("cont", "x/") == (connector.config.container, connector.config.prefix)
    assert "azure-blob" == registry.connector_for_url("https://acct.blob.core.windows.net/c")


def test_entry_point_and_cheap_import():
    """The entry point is registered and importing the plugin imports no Azure SDK."""
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="headwater")}
    assert "headwater_azure_blob.hooks" == names["azure-blob"]
    code = (
        "import sys, headwater_azure_blob, headwater_azure_blob.hooks as h;"
        "h.register_connectors()[0].load();"
        "print(sorted(m for m in sys.modules if m.startswith(('azure', 'aiohttp'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("logs/*.jsonl", "logs/a.jsonl", True),
        ("logs/*.jsonl", "logs/sub/a.jsonl", False),
        ("logs/**/*.jsonl", "logs/a.jsonl", True),
        ("logs/**/*.jsonl", "logs/x/y/a.jsonl", True),
        ("logs/**", "logs/x/y", True),
        ("l?gs/[ab].csv", "lags/b.csv", True),
        ("l?gs/[!ab].csv", "lags/b.csv", False),
        ("a+b/(c).csv", "a+b/(c).csv", True),
    ],
)
def test_glob(pattern, name, matches):
    """Globs: * and ? stay in a segment, ** crosses them, classes work, the rest is literal."""
    assert matches == bool(glob_to_regex(pattern).match(name))


def test_literal_prefix_and_etag():
    """The listing prefix stops at the first wildcard; etags get one spelling."""
    assert "logs/2024-" == literal_prefix("logs/2024-*/x.csv")
    assert '"0x1"' == normalize_etag("0x1") == normalize_etag('"0x1"')


# --- records in blobs (around headwater.formats) ---------------------------------------------


def _reading(data_name="x.jsonl", *, start=None, size=None, md5=None, encoding=None, batch=2):
    ref = BlobRef(data_name, size if size is not None else 10**9, '"e"', encoding, md5)
    return BlobReading(
        "s",
        ref,
        start or Start(),
        require_format(data_name),
        rows=0,
        batch_size=batch,
        encoding="utf-8",
        delimiter=",",
        null_string="",
    )


def _feed_all(reading, data: bytes, step: int = 1):
    batches = []
    for i in range(0, len(data), step):
        batches += reading.feed(data[i : i + step])
    return batches + list(reading.finish())


def _rows_and_offsets(batches):
    return [(b.rows(), b.state["offset"]) for b in batches]


def test_reading_jsonl_byte_by_byte_states_after_each_batch():
    """Records split across stored chunks decode whole; each batch's state has the offset after it."""
    data = b'{"a": 1}\n\n{"a": "\xc3\xbc"}\n{"a": 3}'
    batches = _feed_all(_reading(batch=1), data)
    assert [([{"a": 1}], 9), ([{"a": "ü"}], 22), ([{"a": 3}], 30)] == _rows_and_offsets(batches)
    assert [1, 2, 3] == [b.state["rows"] for b in batches]


def test_reading_rejects_non_objects_naming_the_offset():
    """A JSON array line is refused naming its byte offset in the blob."""
    reading = _reading(start=Start(offset=100))
    with pytest.raises(ConfigError, match="byte 100"):
        list(reading.feed(b"[1, 2]\n"))


def test_reading_csv_quoted_newlines_null_and_empty_string():
    """Quoted newlines and doubled quotes decode across chunks; NULL is unquoted, '' quoted."""
    data = b'k,v\n1,"two\nlines"\n\n2,"say ""hi"""\n3,\n4,""'
    batches = _feed_all(_reading("x.csv", batch=1), data)
    assert [
        ([{"k": "1", "v": "two\nlines"}], 18),
        ([{"k": "2", "v": 'say "hi"'}], 34),
        ([{"k": "3", "v": None}], 37),
        ([{"k": "4", "v": ""}], 41),
    ] == _rows_and_offsets(batches)
    assert ["k", "v"] == batches[-1].state["header"]


def test_reading_csv_utf8_bom_is_not_part_of_the_first_name():
    """A spreadsheet's byte-order mark does not end up in the first column's name."""
    batches = _feed_all(_reading("x.csv"), "\ufeffid,name\n1,a\n".encode())
    assert [{"id": "1", "name": "a"}] == batches[0].rows()
    assert ["id", "name"] == batches[0].state["header"]


def test_reading_csv_resumes_with_the_saved_header():
    """Given the saved header, a reading started mid-blob keys rows by it."""
    reading = _reading("x.csv", start=Start(offset=18, header=["k", "v"]))
    assert 18 == reading.fetch_from
    batches = _feed_all(reading, b"9,\n1,2,3\n", step=100)
    assert [{"k": "9", "v": None}, {"k": "1", "v": "2", "_extra": ["3"]}] == batches[0].rows()


def test_reading_csv_unterminated_quote():
    """A quote left open at the end of the blob is an error, not a silent record."""
    reading = _reading("x.csv")
    assert [] == list(reading.feed(b'k\n"open\n'))
    with pytest.raises(ConfigError, match="unterminated"):
        list(reading.finish())


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_reading_resumes_by_skipping_never_twice(suffix):
    """
    A compressed blob is fetched from its first byte again; the decoded bytes before the
    state's offset are skipped, so every resume yields exactly the records after it.
    """
    records = [{"n": n, "pad": "x" * (n % 7)} for n in range(50)]
    writing = RecordWriting(
        require_format("e.jsonl" + suffix), encoding="utf-8", delimiter=",", null_string=""
    )
    stored = writing.encode(records[:20]) + writing.encode(records[20:]) + writing.finish()
    batches = _feed_all(_reading("e.jsonl" + suffix, batch=7), stored, step=97)
    assert records == [r for b in batches for r in b.rows()]
    for index, batch in enumerate(batches):
        reading = _reading("e.jsonl" + suffix, start=Start(offset=batch.state["offset"]), batch=7)
        assert 0 == reading.fetch_from
        rest = [r for b in _feed_all(reading, stored, step=1000) for r in b.rows()]
        assert records[sum(len(b) for b in batches[: index + 1]) :] == rest


def test_compressed_state_past_the_end_is_refused():
    """An offset beyond the decoded end of a compressed blob is a state error, found at the end."""
    stored = gzip.compress(b'{"a": 1}\n')
    with pytest.raises(ConfigError, match="past the end") as info:
        _feed_all(_reading("x.jsonl.gz", start=Start(offset=500)), stored, step=100)
    assert "state" == info.value.field
    with pytest.raises(ConfigError, match="past the end"):
        _reading("x.jsonl", start=Start(offset=500), size=9)


def test_content_encoding_is_undone_before_the_suffix_compression():
    """A blob stored with Content-Encoding gzip reads as its decoded content."""
    stored = gzip.compress(b'{"a": 1}\n{"a": 2}\n')
    batches = _feed_all(_reading("x.jsonl", encoding="gzip"), stored, step=5)
    assert [{"a": 1}, {"a": 2}] == batches[0].rows()
    twice = gzip.compress(gzip.compress(b'{"a": 3}\n'))
    batches = _feed_all(_reading("x.jsonl.gz", encoding="x-gzip"), twice, step=5)
    assert [{"a": 3}] == batches[0].rows()


def test_unknown_content_encoding_is_a_config_error_naming_it():
    """A coding the connector cannot undo is named; identity is no coding at all."""
    with pytest.raises(ConfigError, match="'br'") as info:
        _reading("x.jsonl", encoding="br")
    assert "content_encoding" == info.value.field
    assert [{"a": 1}] == _feed_all(_reading("x.jsonl", encoding="identity"), b'{"a":1}\n')[0].rows()


def test_corrupt_compressed_data_is_an_integrity_error_not_a_network_one():
    """Bytes that do not inflate fail as corrupt data, naming the coding, never as a network error."""
    stored = bytearray(gzip.compress(b'{"a": 1}\n' * 1000))
    stored[30:40] = b"\xff" * 10
    with pytest.raises(IntegrityError, match="gzip") as info:
        _feed_all(_reading("x.jsonl", encoding="gzip"), bytes(stored), step=4096)
    assert not isinstance(info.value, ConnectionFailed)


def test_reading_from_the_start_checks_content_md5():
    """The stored bytes hash to the Content-MD5 or the read fails before its last batch."""
    data = b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'
    good = hashlib.md5(data, usedforsecurity=False).digest()
    assert 3 == sum(len(b) for b in _feed_all(_reading(md5=good, batch=10), data, step=4))
    reading = _reading(md5=b"0" * 16, batch=10)
    with pytest.raises(IntegrityError, match="Content-MD5"):
        _feed_all(reading, data, step=4)


def test_writing_csv_null_empty_string_and_new_fields():
    """CSV out: NULL unquoted, '' quoted; a field outside the header is refused."""
    writing = RecordWriting(
        require_format("x.csv"), encoding="utf-8", delimiter=",", null_string=""
    )
    assert b'a,b\n1,\n2,""\n' == writing.encode([{"a": 1, "b": None}, {"a": 2, "b": ""}])
    with pytest.raises(ConfigError, match="not in the CSV header"):
        writing.encode([{"a": 2, "c": 3}])


def test_writing_continued_csv_writes_no_second_header():
    """Continuing a CSV blob: records go under its header, which is not repeated."""
    writing = RecordWriting(
        require_format("x.csv"),
        encoding="utf-8",
        delimiter=",",
        null_string="",
        continuing=True,
        csv_header=["b", "a"],
    )
    assert b"2,1\n" == writing.encode([{"a": 1, "b": 2}]) + writing.finish()


def test_writing_compresses_by_suffix():
    """out.jsonl.gz holds gzip bytes (one member per write) that decode to the records."""
    writing = RecordWriting(
        require_format("out.jsonl.gz"), encoding="utf-8", delimiter=",", null_string=""
    )
    stored = writing.encode([{"a": 1}]) + writing.encode([{"a": 2}]) + writing.finish()
    assert stored[:2] == b"\x1f\x8b"
    assert [{"a": 1}, {"a": 2}] == [
        json.loads(line) for line in gzip.decompress(stored).splitlines()
    ]
    assert 2 == writing.count


def test_formats_by_name():
    """Suffixes give format and compression; unknown ones and Arrow are refused clearly."""
    assert ("jsonl", "zstd") == astuple(require_format("a/e.ndjson.zst"))[:2]
    assert ("csv", None, "\t") == astuple(require_format("t.tsv"))
    assert "parquet" == require_format("x.bin", "parquet").fmt
    for name in ("x.bin", "x.arrow", "x.gz"):
        with pytest.raises(ConfigError, match="cannot tell"):
            require_format(name)
    with pytest.raises(ConfigError):
        require_format("x.parquet.gz")


# --- Parquet out ------------------------------------------------------------------------------


def _parquet_rows(data: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def _row_groups(pieces) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(pa.BufferReader(b"".join(pieces))).num_row_groups)


def test_parquet_encoder_unifies_the_first_row_group():
    """A column NULL at first and integer later, or int then float, makes one column."""
    pytest.importorskip("pyarrow")
    encoder = ParquetEncoder()
    out = encoder.encode([{"a": None, "b": 1}]) + encoder.encode([{"a": 5, "b": 2.5}])
    table = _parquet_rows(out + encoder.finish())
    assert ("int64", "double") == (
        str(table.schema.field("a").type),
        str(table.schema.field("b").type),
    )
    assert [{"a": None, "b": 1.0}, {"a": 5, "b": 2.5}] == table.to_pylist()
    assert 2 == encoder.count


def test_parquet_encoder_names_the_column_that_does_not_fit():
    """Types with no common Arrow type, or a late new column, fail naming the column."""
    pytest.importorskip("pyarrow")
    encoder = ParquetEncoder()
    encoder.encode([{"id": 1, "when": "today"}])
    with pytest.raises(ConfigError, match="'when'") as info:
        encoder.encode([{"id": 2, "when": 3.5}]) + encoder.finish()
    assert "when" == info.value.field
    late = ParquetEncoder(row_group_size=1)
    late.encode([{"id": 1}])
    with pytest.raises(ConfigError, match="'extra'"):
        late.encode([{"id": 2, "extra": "x"}])
    fitting = ParquetEncoder(row_group_size=1)
    fitting.encode([{"n": 1.5}])
    fitting.encode([{"n": 2}])  # an integer fits a double column unchanged
    with pytest.raises(ConfigError, match="'n'"):
        fitting.encode([{"n": "three"}])


def test_parquet_encoder_streams_row_groups():
    """Bytes come out as row groups fill, before the end, and Arrow batches pass through."""
    pa = pytest.importorskip("pyarrow")
    encoder = ParquetEncoder(row_group_size=1000)
    pieces = []
    for start in range(0, 5000, 500):
        batch = pa.record_batch({"n": list(range(start, start + 500))})
        pieces.append(encoder.encode(batch))
    pieces.append(encoder.finish())
    assert sum(1 for piece in pieces[:-1] if piece) >= 4  # a row group every two batches
    assert 5000 == encoder.count
    table = _parquet_rows(b"".join(pieces))
    assert (list(range(5000)), 5) == (table.column("n").to_pylist(), _row_groups(pieces))


# --- the state a write commits ------------------------------------------------------------------


class _Blob:
    def __init__(self, etag="0x1", metadata=None, size=10):
        self.etag = etag
        self.metadata = metadata or {}
        self.size = size
        self.content_settings = type("S", (), {"content_type": "text/csv"})()


def _plan(**options):
    return WritePlan("out/x.jsonl", "application/x-ndjson", None, options.pop("overwrite", False))


def test_state_round_trips_through_ascii_metadata():
    """The state is base64url JSON under headwater_state, found only under its key."""
    state = {"source": {"offset": 10, "name": "ü"}, "records": 3}
    value = encode_state("k1", state)
    assert value.isascii()
    assert state == state_in({"headwater_state": value}, "k1", "b")
    assert state_in({"headwater_state": value}, "k2", "b") is None
    assert state_in({}, "k1", "b") is None
    with pytest.raises(ConfigError, match="did not write"):
        state_in({"headwater_state": "not base64 json"}, "k1", "b")


def test_write_plan_creates_continues_or_refuses():
    """New blob: create only; blob with this key's state: continue it; another blob: refuse."""
    fresh = _plan().decide(None, state_key="k", state={})
    assert (False, True) == (fresh.continuing, "match_condition" in fresh.conditions())
    assert not fresh.one_request  # a copy's blob is written in blocks: it stays continuable
    held = _Blob(metadata={"headwater_state": encode_state("k", {"s": 1}), "owner": "me"})
    going_on = _plan().decide(held, state_key="k", state={}, seen='"0x1"')
    assert (True, '"0x1"', False) == (going_on.continuing, going_on.etag, going_on.checksum)
    assert {"owner": "me"} == going_on.kept
    with pytest.raises(AlreadyExists):
        _plan().decide(_Blob(), state_key="k", state={})
    assert not _plan(overwrite=True).decide(_Blob(), state_key="k", state={}).continuing
    assert _plan().decide(None, state_key=None, state=None).one_request


def test_write_plan_refuses_a_blob_changed_since_its_state_was_read():
    """Another commit since written_state (or a deleted blob) would repeat or lose records."""
    held = _Blob(etag="0x2", metadata={"headwater_state": encode_state("k", {})})
    for props, seen in ((held, '"0x1"'), (held, None), (None, '"0x1"'), (_Blob(), '"0x1"')):
        with pytest.raises(IntegrityError, match="changed since"):
            _plan(overwrite=True).decide(props, state_key="k", state={}, seen=seen)


def test_write_plan_keeps_blocks_and_refuses_a_put_blob():
    """The kept blocks must add up to the blob; a blob made by one Put Blob has none."""
    plan = _plan()
    plan.keep_blocks([("a", 4), ("b", 6)], 10)
    assert ["a", "b"] == plan.base
    with pytest.raises(ConfigError, match="not written as a list of blocks"):
        plan.keep_blocks([], 10)


def test_state_metadata_over_azure_limit_is_refused():
    """A state that would take the metadata past 8 KiB fails before the commit, naming the limit."""
    plan = _plan().decide(None, state_key="k", state={"source": {"cursor": "x" * 7000}})
    with pytest.raises(ConfigError, match="8192") as info:
        plan.commit_metadata()
    assert "state" == info.value.field
    small = _plan().decide(None, state_key="k", state={"source": {"cursor": 1}})
    assert {"headwater_state"} == set(small.commit_metadata())


# --- transfer bookkeeping ---------------------------------------------------------------


def test_rangeset_merges_and_reports_gaps():
    """Ranges merge when they touch; missing() lists the holes."""
    ranges = RangeSet()
    for start, end in [(10, 20), (30, 40), (20, 25), (0, 5), (38, 50)]:
        ranges.add(start, end)
    assert [(5, 10), (25, 30), (50, 60)] == ranges.missing(60)
    assert 5 + 15 + 20 == ranges.total()
    assert 25 == ranges.end_of_run(12)
    assert 7 == ranges.end_of_run(7)


def test_sink_out_of_order_writes_hash_in_order(tmp_path):
    """Chunks written out of order land in place and hash to the in-order MD5."""
    data = os.urandom(5000)
    path = tmp_path / "f"
    with path.open("w+b") as handle:
        sink = DownloadSink(handle, len(data), checksum=True)
        for start in (3000, 1000, 0, 4000, 2000):
            sink.seek(start)
            sink.write(data[start : start + 1000])
        digest = sink.finish()
    assert hashlib.md5(data, usedforsecurity=False).digest() == digest
    assert data == path.read_bytes()


def test_background_sink_writes_hashes_and_reports_failures(tmp_path):
    """The writer thread lands out-of-order chunks and hashes them; its errors surface."""
    data = os.urandom(9000)
    path = tmp_path / "f"
    with path.open("w+b") as handle:
        sink = DownloadSink(handle, len(data), checksum=True, background=True)
        try:
            for start in (6000, 0, 3000):
                sink.seek(start)
                sink.write(bytearray(data[start : start + 3000]))
            digest = sink.finish()
        finally:
            sink.close()
    assert (hashlib.md5(data, usedforsecurity=False).digest(), data) == (
        digest,
        path.read_bytes(),
    )
    with path.open("rb") as read_only:
        sink = DownloadSink(read_only, 10, checksum=False, background=True)
        try:
            sink.write(b"0123456789")
            with pytest.raises(OSError, match="Bad file descriptor"):
                sink.drain()
        finally:
            sink.close()


@pytest.fixture
def buffered_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink as on a system without O_DIRECT: every write goes through the page cache."""
    monkeypatch.delattr(os, "O_DIRECT", raising=False)


def _cached_bytes(path) -> int:
    """How much of ``path`` is in the page cache (util-linux ``fincore``)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[0])


def _download(path, data: bytes, chunk: int, order: list[int], **options) -> bytes | None:
    """Write ``data`` through a sink chunk by chunk, chunks in ``order``; return the MD5."""
    with path.open("w+b") as handle:
        sink = DownloadSink(handle, len(data), checksum=True, **options)
        try:
            for index in order:
                sink.seek(index * chunk)
                sink.write(data[index * chunk : (index + 1) * chunk])
            return sink.finish()
        finally:
            sink.close()


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")
@pytest.mark.parametrize("background", [False, True])
def test_sink_writes_aligned_chunks_past_the_page_cache(tmp_path, background):
    """
    Aligned chunks are written with O_DIRECT (the file is not left in the page cache),
    the unaligned tail through the page cache; out-of-order chunks still hash in order.
    """
    if shutil.which("fincore") is None:
        pytest.skip("util-linux fincore not installed")
    chunk = 1 << 20
    data = os.urandom(6 * chunk + 123)  # the seventh chunk is 123 bytes: not aligned
    path = tmp_path / "f"
    digest = _download(path, data, chunk, [1, 2, 6, 0, 4, 5, 3], background=background)
    assert (hashlib.md5(data, usedforsecurity=False).digest(), data) == (
        digest,
        path.read_bytes()[: len(data)],
    )
    cached_after_download = _cached_bytes(path)  # read_bytes above cached it all again
    path.unlink()
    _download(path, data, chunk, list(range(7)), background=background)
    assert _cached_bytes(path) <= 2 * 4096 < len(data) // 2, cached_after_download


def test_buffered_sink_leaves_the_file_cached(tmp_path, buffered_only):
    """Without O_DIRECT the same download goes through (and stays in) the page cache."""
    if shutil.which("fincore") is None:
        pytest.skip("util-linux fincore not installed")
    chunk = 1 << 20
    data = os.urandom(4 * chunk + 5)
    path = tmp_path / "f"
    digest = _download(path, data, chunk, [3, 0, 4, 2, 1], background=True)
    assert hashlib.md5(data, usedforsecurity=False).digest() == digest
    assert _cached_bytes(path) >= len(data) - 4096


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")
def test_direct_writes_refused_fall_back_to_buffered(tmp_path, monkeypatch):
    """A file system that refuses O_DIRECT (EINVAL on a write) gets buffered writes instead."""
    real_pwrite = os.pwrite
    direct: list[int] = []

    def pwrite(fd: int, data, offset: int) -> int:
        if fd in direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    real_init = DirectWriter.__init__

    def init(self: DirectWriter, fd: int) -> None:
        real_init(self, fd)
        direct.append(self._fd)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(DirectWriter, "__init__", init)
    data = os.urandom(3 * 8192)
    path = tmp_path / "f"
    digest = _download(path, data, 8192, [2, 0, 1])
    assert (hashlib.md5(data, usedforsecurity=False).digest(), data) == (
        digest,
        path.read_bytes(),
    )


def test_direct_writer_without_o_direct_takes_nothing(tmp_path, buffered_only):
    """Where the OS has no O_DIRECT the writer is inactive and leaves every write to the caller."""
    with (tmp_path / "f").open("w+b") as handle:
        writer = DirectWriter(handle.fileno())
        assert (False, 0) == (writer.active, writer.write(0, memoryview(bytes(4096))))
        writer.close()


def test_background_sink_writes_back_while_downloading(tmp_path, monkeypatch, buffered_only):
    """
    Buffered: every 32 MiB written starts a write-back round, so the final fsync has
    little left.
    """
    synced: list[int] = []
    real_sync = os.fdatasync

    def counting_sync(fd: int) -> None:
        real_sync(fd)
        synced.append(os.fstat(fd).st_size)

    monkeypatch.setattr(os, "fdatasync", counting_sync)
    chunk = os.urandom(4 << 20)
    size = 20 * len(chunk)  # 80 MiB: two rounds
    with (tmp_path / "f").open("w+b") as handle:
        sink = DownloadSink(handle, size, checksum=True, background=True)
        try:
            for _ in range(20):
                sink.write(chunk)
            sink.finish()  # waits for the rounds asked for
        finally:
            sink.close()
    assert synced, "no write-back round ran"
    assert all(0 < written <= size for written in synced)


def test_failed_write_back_fails_the_download(tmp_path, monkeypatch, buffered_only):
    """A write-back error is raised by finish(): a later fsync might not report it again."""

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_sync)
    chunk = os.urandom(4 << 20)
    with (tmp_path / "f").open("w+b") as handle:
        sink = DownloadSink(handle, 9 * len(chunk), checksum=False, background=True)
        try:
            for _ in range(9):
                sink.write(chunk)
            with pytest.raises(IntegrityError, match="Input/output error") as caught:
                sink.finish()
        finally:
            sink.close()
    assert "disk" in (caught.value.hint or "")


def test_sink_refuses_gaps_and_excess(tmp_path):
    """finish() refuses missing bytes; writing past the size is an integrity error."""
    with (tmp_path / "f").open("w+b") as handle:
        sink = DownloadSink(handle, 10, checksum=False)
        sink.write(b"12345")
        assert [(5, 10)] == sink.missing()
        with pytest.raises(IntegrityError, match="incomplete"):
            sink.finish()
        with pytest.raises(IntegrityError, match="more bytes"):
            sink.write(b"6789012")


def test_rechunker_and_block_ids():
    """Pieces are cut into exact blocks; block ids are unique and of one length."""
    rechunker = Rechunker(4)
    blocks = rechunker.push(b"ab") + rechunker.push(b"cdefghij") + [rechunker.rest()]
    assert [b"abcd", b"efgh", b"ij"] == blocks
    assert BlockPlan(checksum=False).md5() is None
    plan = BlockPlan()
    ids = [plan.next_block(block) for block in blocks]
    assert len(set(ids)) == 3 == len({len(i) for i in ids}) + 2
    assert hashlib.md5(b"abcdefghij", usedforsecurity=False).digest() == plan.md5()
    assert 10 == plan.size


class _Props:
    def __init__(self, md5):
        self.size = 10
        self.etag = "0x1"
        self.content_settings = type("S", (), {"content_md5": md5})()


def test_fetch_plan_retry_budget():
    """Failures without progress use up the budget; progress resets it; others raise."""
    policy = RetryPolicy(attempts=3, initial=0.5, jitter=0)
    plan = FetchPlan.from_properties("x", _Props(bytearray(b"m")), policy=policy)
    assert ('"0x1"', b"m") == (plan.etag, plan.md5)
    cut = ConnectionFailed("cut")
    assert [0.5, 1.0, 0.5, 1.0] == [
        plan.after_failure(cut, progressed=False),
        plan.after_failure(cut, progressed=False),
        plan.after_failure(cut, progressed=True),
        plan.after_failure(cut, progressed=False),
    ]
    with pytest.raises(ConnectionFailed, match="gave up"):
        plan.after_failure(cut, progressed=False)
    with pytest.raises(IntegrityError):
        plan.after_failure(IntegrityError("changed"), progressed=True)


def test_read_plan_state_handling():
    """The state skips finished blobs, resumes the current one, refuses a changed one."""
    state = {"stream": "d/*.csv", "blob": "d/b.csv", "etag": '"e"', "offset": 7, "rows": 3}
    plan = ReadPlan("d/*.csv", state, None)
    assert (True, False) == (plan.wants("d/a.csv"), plan.wants("d/x/a.csv"))
    assert plan.start(BlobRef("d/a.csv", 10, '"z"')) is None
    assert 7 == plan.start(BlobRef("d/b.csv", 10, '"e"')).offset
    assert 0 == plan.start(BlobRef("d/c.csv", 10, '"z"')).offset
    with pytest.raises(ConfigError, match="changed"):
        plan.start(BlobRef("d/b.csv", 10, '"other"'))
    with pytest.raises(ConfigError):
        ReadPlan("other.csv", state, None)


# --- errors -------------------------------------------------------------------------------


def test_scrub_masks_credentials():
    """Driver text loses URL queries, SAS parameters, long base64 runs and extra lines."""
    text = (
        f"GET https://acct.blob.core.windows.net/c/b?sv=1&sig=abc%2Bdef failed key={KEY} "
        "se=2030 sp=rl\nRequestId: 123"
    )
    cleaned = scrub(text)
    for secret in ("abc%2Bdef", KEY, "se=2030", "RequestId"):
        assert secret not in cleaned
    assert "https://acct.blob.core.windows.net/c/b?***" in cleaned


def test_translate_transport_errors():
    """Connect errors are network failures on account_url; TLS ones say tls."""
    from azure.core.exceptions import ServiceRequestError

    network = translate(ServiceRequestError("refused"), auth_field="account_key")
    assert ("network", "account_url", True) == (
        network.category,
        network.field,
        network.retryable,
    )
    import ssl

    tls_cause = ssl.SSLCertVerificationError("certificate verify failed")
    tls = translate(ServiceRequestError("x", error=tls_cause), auth_field="account_key")
    assert "tls" == tls.category


def test_translate_decoding_failure_is_not_a_network_error():
    """A body whose Content-Encoding the transport could not undo is corrupt data, not a cut."""
    from azure.core.exceptions import HttpResponseError
    from urllib3.exceptions import DecodeError

    cut = HttpResponseError("read failed", error=ConnectionResetError("reset"))
    assert isinstance(translate(cut, auth_field="account_key"), ConnectionFailed)
    bad = HttpResponseError("read failed", error=DecodeError("incorrect header check"))
    error = translate(bad, auth_field="account_key", context="read 'x.jsonl'")
    assert isinstance(error, IntegrityError)
    assert not isinstance(error, ConnectionFailed)
    assert "DecodeError" in error.message


def test_compressed_reading_inflates_on_a_thread_that_close_ends():
    """A compressed blob's reading inflates on a thread of its own; close() ends it mid-blob."""
    import gzip
    import threading

    data = b"".join(b'{"n": %d}\n' % n for n in range(2000))
    reading = _reading("e.jsonl.gz", batch=100)
    batches = reading.feed(gzip.compress(data)[:2000])
    first = next(batches)
    assert [{"n": n} for n in range(100)] == first.rows()
    ahead = [t for t in threading.enumerate() if t.name == "headwater-read-ahead"]
    assert ahead
    batches.close()
    reading.close()
    reading.close()  # idempotent
    assert not any(t.is_alive() for t in ahead)
