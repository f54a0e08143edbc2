"""
The contract suite can fail: a connector broken in one invariant fails exactly that check.

Each case writes a connector module into a pytester directory — `GoodConnector`, which
keeps every invariant, or a subclass that breaks one — and runs the contract suite on it
in-process. The good connector passes every check; each broken one fails exactly the
check of the invariant it breaks, with a message naming that invariant.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import textwrap

import pytest

from headwater._plugins import get_registry

# pytester's in-process runs restore sys.modules afterwards, dropping modules first
# imported inside them; a re-imported pydantic.fields next to the old pydantic.main breaks
# model creation. Import everything the runs use up front so it stays put (and is fast).
for _module in (
    "pydantic.fields",
    "pydantic.json_schema",
    "headwater._connector",
    "headwater.testing._suite",
    "headwater.testing._faults",
    "headwater._files",
    "headwater._builtin.files_connector",
    "headwater.testing",
):
    importlib.import_module(_module)
get_registry().load()

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)

GOOD = '''
"""An in-memory connector keeping every invariant: the base the broken ones override."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from pydantic import Field

from headwater import AlreadyExists, AuthFailed, Batch, Capability, Connector, ConnectorConfig, Estimate, FetchResult, Item, NotFound, Secret, WriteResult
from headwater.toolkit import atomic_file, safe_destination
from headwater.formats import EncodedLines
from headwater._redact import get_logger

log = get_logger("goodconn")
VALID = "correct-horse-battery"
WRITTEN: dict[str, list[dict[str, Any]]] = {}


class GoodConfig(ConnectorConfig):
    token: Secret = Field(description="API token.")
    records: int = Field(default=9, description="Records in the `numbers` stream.")
    large: int = Field(default=0, description="Records in the `large` stream.")


class GoodConnector(Connector[GoodConfig]):
    id = "good"
    Config = GoodConfig
    capabilities = frozenset({
        Capability.CHECK, Capability.LIST, Capability.READ, Capability.RESUME,
        Capability.METADATA, Capability.FETCH, Capability.WRITE,
    })
    read_formats = frozenset({"jsonl"})

    def _login(self) -> str:
        token = self.secret("token")
        log.debug("logging in with token %s", token)  # redacted: get_logger filters
        if token != VALID:
            raise AuthFailed("the service rejected the token", field="token")
        return token

    def check_connection(self) -> str:
        self._login()
        return "ok"

    def _streams(self) -> dict[str, int]:
        sizes = {"numbers": self.config.records, "large": self.config.large}
        return {**sizes, **{name: len(rows) for name, rows in WRITTEN.items()}}

    def _rows(self, stream: str, start: int):
        if stream in WRITTEN:
            yield from WRITTEN[stream][start:]
            return
        if stream not in self._streams():
            raise NotFound(f"no stream {stream!r}", field="stream")
        for i in range(start, self._streams()[stream]):
            yield {"id": i, "square": i * i}

    def list(self, path=None):
        self._login()
        for name, size in sorted(self._streams().items()):
            yield Item(name, "stream", size=size, modified=datetime(2026, 1, 1, tzinfo=timezone.utc))

    def _state(self, offset: int) -> dict[str, Any]:
        return {"offset": offset}

    def read(self, stream, state=None, *, batch_size=None, **options):
        self._login()
        size = batch_size or 100
        offset = int(state["offset"]) if state else 0
        batch = []
        for row in self._rows(stream, offset):
            batch.append(row)
            if len(batch) >= size:
                offset += len(batch)
                yield Batch(stream, self._encoded(batch, options), self._state(offset))
                batch = []
        if batch:
            offset += len(batch)
            yield Batch(stream, self._encoded(batch, options), self._state(offset))

    def _encoded(self, rows, options):
        if options.get("format") != "jsonl":
            return rows
        return EncodedLines(b"".join(json.dumps(r).encode() + b"\\n" for r in rows), len(rows))

    def estimate(self, stream, **options):
        return Estimate(rows=self._streams().get(stream), exact=True)

    def metadata(self, item):
        self._login()
        if item not in self._streams():
            raise NotFound(f"no stream {item!r}", field="item")
        return {"name": item, "records": self._streams()[item]}

    def fetch(self, item, dest, *, overwrite=True):
        data = "".join(json.dumps(r) + "\\n" for b in self.read(item) for r in b.rows()).encode()
        target = safe_destination(dest, item + ".jsonl")
        if target.exists() and not overwrite:
            raise AlreadyExists(f"{target} exists")
        with atomic_file(target) as out:
            out.write(data)
        return FetchResult(target, len(data), "sha256:" + hashlib.sha256(data).hexdigest(), True)

    def write(self, stream, batches, **options):
        self._login()
        rows = [r for b in batches for r in (b.rows() if isinstance(b, Batch) else b)]
        WRITTEN[stream] = rows
        return WriteResult(stream, len(rows))
'''

HOOKS = """
from headwater import ConnectorRef, hookimpl
{imports}

@hookimpl
def register_connectors():
    return [ConnectorRef("{id}", "{target}")]

@hookimpl
def connector_for_url(url):
    return "{id}" if url.startswith("good://") else None
"""

SUITE = """
import uuid

import pytest

from headwater.testing import DEFAULT_HEAVY_MODULES, ConnectorContract
from {module} import {cls} as Subject


class TestSubject(ConnectorContract):
    connector_id = "good"
    stream = "numbers"
    large_stream = "large"
    large_min_records = 20_000
    memory_limit = 2 * 2**20
    entry_point = "hooks_under_test"
    url_example = "good://somewhere"
    heavy_modules = (*DEFAULT_HEAVY_MODULES, "fakeheavy", "fakesdk")

    @pytest.fixture
    def connector(self):
        return Subject({{"token": "correct-horse-battery"}})

    @pytest.fixture
    def bad_credentials_connector(self):
        return Subject({{"token": "wrong-token-value"}})

    @pytest.fixture
    def large_stream_connector(self):
        return Subject({{"token": "correct-horse-battery", "large": 20_000}})

    def new_write_stream(self, connector):
        return f"written-{{uuid.uuid4().hex}}"
"""

# Checks that cost a subprocess or a large read: run only where a case targets them.
SLOW_CHECKS = ("imports_nothing_heavy", "sdk_lazily", "memory_bounded")


@dataclasses.dataclass
class Case:
    """A connector broken in one invariant, and how the suite must report it."""

    name: str
    #: The body of `class Broken(GoodConnector)`, or a whole module when `module` is set.
    body: str
    #: The contract check that must fail (test name, parameter included).
    check: str
    #: Substrings the failure message must contain.
    message: tuple[str, ...]
    #: Top of the connector module (imports, config classes).
    prelude: str = ""
    #: Extra source for the hooks module (imports of heavy modules).
    hooks_imports: str = ""
    connector_id: str = "good"


CASES = [
    Case(
        "id-not-a-valid-id",
        'id = "Good_Connector"',
        "test_contract_id_is_stable",
        ("[stable id]", "'Good_Connector' is invalid"),
    ),
    Case(
        "id-renamed-after-release",
        'id = "good-v2"',
        "test_contract_id_is_stable",
        ("[stable id]", "changed from 'good' to 'good-v2'", "immutable"),
    ),
    Case(
        "secret-typed-as-str",
        "Config = BrokenConfig",
        "test_contract_config_schema_marks_secrets",
        ("[config schema]", "'password' looks like a secret", "headwater.Secret"),
        prelude='class BrokenConfig(GoodConfig):\n    password: str = Field(default="", description="Database password.")\n',
    ),
    Case(
        "nested-secret-typed-as-str",
        "Config = BrokenConfig",
        "test_contract_config_schema_marks_secrets",
        ("[config schema]", "'proxy.password' looks like a secret"),
        prelude=(
            "from pydantic import BaseModel\n"
            "class Proxy(BaseModel):\n"
            '    """An HTTP proxy."""\n'
            '    host: str = Field(default="proxy", description="Proxy host.")\n'
            '    password: str = Field(default="", description="Proxy password.")\n'
            "class BrokenConfig(GoodConfig):\n"
            '    proxy: Proxy = Field(default_factory=Proxy, description="Proxy to use.")\n'
        ),
    ),
    Case(
        "config-field-undocumented",
        "Config = BrokenConfig",
        "test_contract_config_fields_documented",
        ("[config documented]", "without a description: region"),
        prelude='class BrokenConfig(GoodConfig):\n    region: str = "eu"\n',
    ),
    Case(
        "nested-field-undocumented",
        "Config = BrokenConfig",
        "test_contract_config_fields_documented",
        ("[config documented]", "without a description: tls.ca_file"),
        prelude=(
            "from pydantic import BaseModel\n"
            "class Tls(BaseModel):\n"
            "    ca_file: str = ''\n"
            "class BrokenConfig(GoodConfig):\n"
            '    tls: Tls = Field(default_factory=Tls, description="TLS settings.")\n'
        ),
    ),
    Case(
        "capability-declared-not-implemented",
        "capabilities = GoodConnector.capabilities | {Capability.PARTITIONS}",
        "test_contract_capabilities_match_operations",
        ("[capabilities]", "declares 'partitions' but does not override partitions()"),
        prelude="from headwater import Capability\n",
    ),
    Case(
        "undeclared-operation-works",
        "capabilities = GoodConnector.capabilities - {Capability.FETCH}",
        "test_contract_capabilities_match_operations",
        ("[capabilities]", "fetch() is not declared but did not raise NotSupported"),
        prelude="from headwater import Capability\n",
    ),
    Case(
        "read-format-differs",
        "def _encoded(self, rows, options):\n"
        "    if options.get('format') != 'jsonl':\n"
        "        return rows\n"
        "    return EncodedLines(b''.join(b'{\"id\": 0}' + NL for r in rows), len(rows))",
        "test_contract_read_formats_give_the_same_records",
        ("[read formats]", "read('numbers', format='jsonl') gave other records"),
        prelude="NL = bytes([10])\n",
    ),
    Case(
        "estimate-wrong",
        "def estimate(self, stream, **options):\n    return Estimate(rows=99, exact=True)",
        "test_contract_estimate_is_cheap_and_typed",
        ("[estimate]", "says exactly 99 rows; read gave 9"),
    ),
    Case(
        "check-fails-on-working-source",
        'def check_connection(self):\n    self._login()\n    raise ServerError("in maintenance")',
        "test_contract_check_ok",
        ("[check]", "check() on the `connector` fixture failed: server: in maintenance"),
        prelude="from headwater import ServerError\n",
    ),
    Case(
        "check-raises-on-bad-credentials",
        "def check(self):\n    self._login()\n    return CheckResult.success()",
        "test_contract_check_reports_bad_credentials",
        ("[check with bad credentials]", "check() raised AuthFailed instead of returning"),
        prelude="from headwater import CheckResult\n",
    ),
    Case(
        "check-accepts-bad-credentials",
        'def check_connection(self):\n    return "ok"',
        "test_contract_check_reports_bad_credentials",
        ("[check with bad credentials]", "returned ok=True with bad credentials"),
    ),
    Case(
        "check-message-shows-secret",
        "def check(self):\n"
        "    result = super().check()\n"
        "    token = self.secret('token')\n"
        "    return dataclasses.replace(result, message=f'{result.message} (token {token})')",
        "test_contract_check_reports_bad_credentials",
        ("[check with bad credentials]", "the secret appears in check() message"),
        prelude="import dataclasses\n",
    ),
    Case(
        "repr-shows-secret",
        "def __repr__(self):\n    return f\"<Broken token={self.secret('token')}>\"",
        "test_contract_secrets_not_in_repr_str_or_errors",
        ("[secrets never shown]", "a secret appears in repr(connector)"),
    ),
    # (No "error chain shows a secret" case: a headwater error's __cause__ / __context__
    # are redacted copies whatever a connector chains to it; core/tests/test_error_chain.py.)
    Case(
        "logs-show-secret",
        "def _login(self):\n"
        "    token = super()._login()\n"
        "    logging.getLogger('brokenconn').debug('authenticated with %s', token)\n"
        "    return token",
        "test_contract_secrets_not_in_logs",
        ("[secrets never shown]", "a secret appears in", "log", "RedactingFilter"),
        prelude="import logging\n",
    ),
    Case(
        "list-items-malformed",
        "def list(self, path=None):\n"
        "    for item in super().list(path):\n"
        "        yield Item(item.name, 'stream', size=-1, modified=datetime(2026, 1, 1))",
        "test_contract_list_items_well_formed",
        ("[list items]", "size -1 must be None or an int >= 0", "timezone-aware"),
    ),
    Case(
        "metadata-not-a-dict",
        "def metadata(self, item):\n    return list(super().metadata(item).items())",
        "test_contract_metadata_well_formed",
        ("[metadata]", "must be a non-empty dict"),
    ),
    Case(
        "fetch-leaves-temp-file",
        "def fetch(self, item, dest, *, overwrite=True):\n"
        "    result = super().fetch(item, dest, overwrite=overwrite)\n"
        "    (Path(dest) / (item + '.part')).write_bytes(b'half')\n"
        "    return result",
        "test_contract_fetch_is_atomic_and_checksummed",
        ("[fetch]", "left other files in dest", "numbers.part"),
        prelude="from pathlib import Path\n",
    ),
    Case(
        "rows-not-dicts",
        "def read(self, stream, state=None, *, batch_size=None, **options):\n"
        "    for batch in super().read(stream, state, batch_size=batch_size, **options):\n"
        "        yield Batch(stream, [list(row.values()) for row in batch.rows()], batch.state)",
        "test_contract_read_batches_carry_state",
        ("[read batches]", "rows() must be a list of dicts"),
    ),
    Case(
        "resume-off-by-one",
        "def _state(self, offset):\n    return {'offset': offset - 1}",
        "test_contract_read_resumes_from_every_state",
        ("[resume]", "resuming from the state after batch 0", "expected exactly the remaining"),
    ),
    Case(
        "missing-stream-raises-driver-error",
        "def _rows(self, stream, start):\n"
        "    if stream not in self._streams():\n"
        "        raise KeyError(stream)\n"
        "    yield from super()._rows(stream, start)",
        "test_contract_read_missing_stream_raises_typed_error",
        ("[typed errors]", "raised KeyError, not a headwater error"),
    ),
    Case(
        "read-loads-everything",
        "def _rows(self, stream, start):\n    return iter(list(super()._rows(stream, start)))",
        "test_contract_read_memory_bounded",
        ("[bounded memory]", "read() must stream"),
    ),
    Case(
        "close-not-idempotent",
        "def close(self):\n"
        "    self.release()\n"
        "def release(self):\n"
        "    if getattr(self, '_released', False):\n"
        "        raise RuntimeError('pool already closed')\n"
        "    self._released = True",
        "test_contract_close_is_idempotent",
        ("[close idempotent]", "close() again raised RuntimeError: pool already closed"),
    ),
    Case(
        "async-read-differs",
        "async def aread(self, stream, state=None, *, batch_size=None, **options):\n"
        "    async for b in super().aread(stream, state, batch_size=batch_size, **options):\n"
        "        yield Batch(b.stream, b.rows()[:1], b.state)",
        "test_contract_async_twin_equals_sync[read]",
        ("[async twin of read]", "aread() differs from read(): item 0: async"),
    ),
    Case(
        "async-check-differs",
        "async def acheck_connection(self):\n"
        "    await asyncio.to_thread(self._login)\n"
        "    return 'connected (async driver)'",
        "test_contract_async_twin_equals_sync[check]",
        ("[async twin of check]", "acheck() differs from check()", "connected (async driver)"),
        prelude="import asyncio\n",
    ),
    Case(
        "entry-point-imports-sdk",
        "pass",
        "test_contract_entry_point_imports_nothing_heavy",
        ("[lazy imports]", "imported fakeheavy", "ConnectorRef"),
        hooks_imports="import fakeheavy  # noqa: F401",
    ),
    Case(
        "connector-module-imports-sdk",
        "pass",
        "test_contract_connector_module_imports_sdk_lazily",
        ("[lazy imports]", "imported fakesdk at module level"),
        prelude="import fakesdk  # noqa: F401\n",
    ),
    Case(
        "entry-point-registers-other-id",
        "pass",
        "test_contract_entry_point_imports_nothing_heavy",
        ("[stable id]", "does not register 'good'"),
        connector_id="goodish",
    ),
]


def _run_suite(pytester: pytest.Pytester, case: Case | None) -> pytest.HookRecorder:
    pytester.syspathinsert()
    pytester.makepyfile(goodconn=GOOD, fakeheavy="LOADED = True", fakesdk="LOADED = True")
    if case is None:
        module, target, hooks_imports, cid = "goodconn", "goodconn:GoodConnector", "", "good"
    else:
        source = (
            "from goodconn import *  # noqa: F403\n"
            "from goodconn import GoodConfig, GoodConnector\n"
            "from datetime import datetime\n"
            "from headwater import Batch, Item, NotFound\n"
            f"{case.prelude}\n\n"
            f"class Broken(GoodConnector):\n{textwrap.indent(case.body, '    ')}\n"
        )
        module = f"broken_{case.name.replace('-', '_')}"
        pytester.makepyfile(**{module: source})
        target, hooks_imports, cid = f"{module}:Broken", case.hooks_imports, case.connector_id
    pytester.makepyfile(
        hooks_under_test=HOOKS.format(imports=hooks_imports, id=cid, target=target),
        test_subject=SUITE.format(module=module, cls=target.split(":")[1]),
    )
    selected = [] if case is None else [c for c in SLOW_CHECKS if c not in case.check]
    # Other plugins of this environment only slow the inner runs down.
    args = [
        "-p",
        "no:asyncio",
        "-p",
        "no:hypothesispytest",
        "-p",
        "no:anyio",
        "-p",
        "no:cacheprovider",
    ]
    if selected:
        args += ["-k", " and ".join(f"not {c}" for c in selected)]
    return pytester.inline_run(*args)


def _outcomes(recorder: pytest.HookRecorder) -> dict[str, pytest.TestReport]:
    reports = recorder.getreports("pytest_runtest_logreport")
    return {r.nodeid.split("::")[-1]: r for r in reports if r.failed}


def test_good_connector_passes_every_check(pytester: pytest.Pytester) -> None:
    """The in-memory reference connector passes the whole suite, slow checks included."""
    recorder = _run_suite(pytester, None)
    passed, skipped, failed = recorder.listoutcomes()
    assert [] == [r.nodeid for r in failed]
    assert [] == [r.nodeid for r in skipped]
    assert 20 <= len(passed)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_connector_fails_exactly_its_check(pytester: pytest.Pytester, case: Case) -> None:
    """A connector broken in one invariant fails that check alone, with a clear message."""
    recorder = _run_suite(pytester, case)
    failed = _outcomes(recorder)
    assert [case.check] == sorted(failed)
    message = failed[case.check].longreprtext
    for expected in case.message:
        assert expected in message, message
    assert "Traceback" not in message


def test_connector_fixture_is_required(pytester: pytest.Pytester) -> None:
    """A subclass without a `connector` fixture fails with a message saying what to add."""
    pytester.makepyfile(
        test_missing="""
        from headwater.testing import ConnectorContract

        class TestNothing(ConnectorContract):
            connector_id = "nothing"
        """
    )
    result = pytester.runpytest(
        "-p", "no:asyncio", "-p", "no:hypothesispytest", "-k", "id_is_stable"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TestNothing must define a `connector` fixture*"])


def test_importing_headwater_testing_is_cheap() -> None:
    """The pytest11 module imports neither the suite, http.server, pydantic nor asyncio."""
    code = (
        "import sys, headwater.testing\n"
        "heavy = ['headwater.testing._suite', 'headwater.testing._faults', 'http.server', "
        "'pydantic', 'asyncio', 'headwater._connector']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[]" == proc.stdout.strip()


def test_pytest_loads_the_plugin_without_the_suite(pytester: pytest.Pytester) -> None:
    """In a pytest run, the pytest11 plugin is loaded but the suite and server are not."""
    pytester.makepyfile(
        test_cheap="""
        import sys

        def test_nothing_heavy_loaded():
            assert "headwater.testing" in sys.modules
            heavy = ["headwater.testing._suite", "headwater.testing._faults", "http.server", "pydantic"]
            assert [] == [m for m in heavy if m in sys.modules]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_lazy_names_resolve_to_public_module() -> None:
    """Names in headwater.testing.__all__ resolve, and classes present as headwater.testing."""
    import headwater.testing as testing

    for name in testing.__all__:
        assert getattr(testing, name) is not None
    assert "headwater.testing" == testing.ConnectorContract.__module__
    with pytest.raises(AttributeError):
        _ = testing.NoSuchThing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("api_key", True),
        ("apiKey", True),
        ("client_secret", True),
        ("auth.client_secret", True),
        ("connection_string", True),
        ("sas_token", True),
        ("token", True),
        ("token_url", False),
        ("token_cache", False),
        ("refresh_token", True),
        ("credentials_file", False),
        ("private_key", True),
        ("password_env", False),
        ("key_column", False),
        ("secret_name", False),
        ("username", False),
    ],
)
def test_secret_like_names(name: str, secret: bool) -> None:
    """Field names that hold secrets are recognised; names about secrets are not."""
    from headwater.testing import looks_like_secret

    assert secret == looks_like_secret(name)
