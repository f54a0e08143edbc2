"""
The connector contract as a pytest test class: `headwater.testing.ConnectorContract`.

Each ``test_contract_*`` method checks one invariant of DESIGN.md's connector contract
and fails with ``contract violated [<invariant>]: <what broke>``. Import it from
`headwater.testing`; this module is private.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import pytest

from headwater._naming import CONNECTOR_ID_RULE, is_connector_id, looks_like_secret
from headwater._schema import applicable, fields
from headwater.testing._broken import failing_variants
from headwater.testing._leaks import exception_texts, find_leaks, forget_secrets, resolved_secrets
from headwater.testing._probes import (
    CONNECTOR_MODULE_ALLOWED,
    DEFAULT_HEAVY_MODULES,
    heavy_imports,
    probe,
)

if TYPE_CHECKING:
    from headwater._connector import Batch, Connector


def _fail(invariant: str, message: str) -> NoReturn:
    """Fail the current test naming the invariant that broke."""
    pytest.fail(f"contract violated [{invariant}]: {message}", pytrace=False)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- helpers over connectors ---------------------------------------------------------------


def _capabilities(connector: Connector[Any]) -> frozenset[str]:
    return frozenset(str(c) for c in type(connector).capabilities)


def _run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


async def _collect(iterable: Any) -> list[Any]:
    return [item async for item in iterable]


def _first(iterable: Iterable[Any]) -> Any:
    """The first item of an iterable (or None), closing a generator it leaves open."""
    iterator = iter(iterable)
    try:
        return next(iterator, None)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _rows_of(batches: Iterable[Batch]) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.rows()]


def _shape(rows: list[dict[str, Any]]) -> tuple[int, list[tuple[str, ...]], dict[str, int]]:
    """How many records, their field names, and how many NULLs each field holds."""
    nulls: dict[str, int] = {}
    for row in rows:
        for name, value in row.items():
            nulls[name] = nulls.get(name, 0) + (value is None)
    return len(rows), sorted(tuple(row) for row in rows), nulls


def _json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _is_secret_schema(found: Sequence[Mapping[str, Any]]) -> bool:
    return any(v.get("x-headwater-secret") is True for v in found)


def _secrets_to_find(extra: Sequence[str], *connectors: Connector[Any] | None) -> list[str]:
    """The secrets of ``connectors`` and ``extra``; skips the check when there are none."""
    secrets = list(extra)
    for connector in connectors:
        if connector is not None:
            secrets.extend(resolved_secrets(connector))
    if not secrets:
        pytest.skip("the connectors hold no secret and secret_values is empty")
    return secrets


# --- the contract suite ----------------------------------------------------------------------


class ConnectorContract:
    """
    The connector contract as a pytest test class: subclass it in your tests.

    Provide the ``connector`` fixture (a configured, working connector; function scope,
    the suite closes it in one check) and set ``connector_id`` and ``stream``. Optional:
    the ``bad_credentials_connector`` fixture (same source, wrong secret; return ``None``
    when the connector takes no credentials), ``large_stream_connector`` for the memory
    check, ``secret_values`` for secrets your test server issues (tokens), and
    `new_write_stream` for writable connectors. The class attributes below tune the
    checks.
    """

    #: The connector id as released. Pinned here so that a rename fails the suite:
    #: users' saved sources refer to it, so ids are immutable.
    connector_id: ClassVar[str | None] = None
    #: A stream (table, file, endpoint) with at least `min_records` records.
    stream: ClassVar[str | None] = None
    #: The fewest records `stream` must hold for the read checks to mean something.
    min_records: ClassVar[int] = 3
    #: ``batch_size`` for the read checks: small, so the stream spans several batches.
    read_batch_size: ClassVar[int] = 2
    #: Resume from at most this many batch states (spread evenly, first and last
    #: always included); ``None`` resumes from every one.
    max_resume_checks: ClassVar[int | None] = 50
    #: A stream name that does not exist (reading it must raise a headwater error).
    missing_stream: ClassVar[str] = "headwater-contract-missing"
    #: Passed to ``list()``; ``None`` lists the root.
    list_path: ClassVar[str | None] = None
    #: Whether an empty listing is acceptable for the ``connector`` fixture.
    list_may_be_empty: ClassVar[bool] = False
    #: Item for ``metadata``/``fetch`` (default: `stream`).
    metadata_item: ClassVar[str | None] = None
    fetch_item: ClassVar[str | None] = None
    #: The stream `large_stream_connector` reads for the memory check (default: `stream`).
    large_stream: ClassVar[str | None] = None
    #: The large stream must hold at least this many records...
    large_min_records: ClassVar[int] = 50_000
    #: ...read in batches of this size...
    large_batch_size: ClassVar[int] = 1_000
    #: ...with a peak of Python allocations (tracemalloc) below this many bytes.
    memory_limit: ClassVar[int] = 16 * 2**20
    #: The entry-point module (``headwater_acme.hooks``). Default: the entry point in
    #: group ``headwater`` whose module shares the connector's top-level package.
    entry_point: ClassVar[str | None] = None
    #: Modules the entry-point module must not import (and the connector module may
    #: import only inside functions, pydantic excepted).
    heavy_modules: ClassVar[tuple[str, ...]] = DEFAULT_HEAVY_MODULES
    #: A URL that ``connector_for_url`` must map to `connector_id` (optional).
    url_example: ClassVar[str | None] = None
    #: Field names (dotted for nested) that look like secrets but are not.
    not_secret_fields: ClassVar[frozenset[str]] = frozenset()
    #: Why check() cannot be made to fail, for a connector that has no
    #: ``bad_credentials_connector`` and whose config gives the suite nothing to break
    #: (no secret, no port or URL, no path). Without a failing case a check() that
    #: always passes, or raises instead of reporting, would go unnoticed.
    check_cannot_fail: ClassVar[str | None] = None

    # --- fixtures the author provides ------------------------------------------------------

    @pytest.fixture
    def connector(self) -> Connector[Any]:
        """A configured connector that can reach its source. Override this fixture."""
        pytest.fail(
            f"{type(self).__name__} must define a `connector` fixture returning a "
            "configured, working connector",
            pytrace=False,
        )

    @pytest.fixture
    def bad_credentials_connector(self) -> Connector[Any] | None:
        """The same source with a wrong secret; ``None`` when there are no credentials."""
        return None

    @pytest.fixture
    def large_stream_connector(self) -> Connector[Any] | None:
        """A connector whose `large_stream` is big (`large_min_records`); ``None`` skips."""
        return None

    @pytest.fixture
    def secret_values(self) -> list[str]:
        """Extra values that must never be shown (tokens a test server issued, say)."""
        return []

    def new_write_stream(self, connector: Connector[Any]) -> str | None:
        """A fresh stream name to write to, or ``None`` (write checks skipped)."""
        return None

    def write_records(self) -> list[dict[str, Any]]:
        """The records the write checks write."""
        return [{"id": i, "name": f"record-{i}"} for i in range(5)]

    # --- helpers ---------------------------------------------------------------------------

    def _contract_stream(self) -> str:
        if self.stream is None:
            pytest.fail(
                f"set `stream = ...` on {type(self).__name__}: a stream with at least "
                f"{self.min_records} records",
                pytrace=False,
            )
        return self.stream

    def _contract_require(self, connector: Connector[Any], capability: str) -> None:
        if capability not in _capabilities(connector):
            pytest.skip(f"connector does not declare the {capability!r} capability")

    def _contract_read(
        self, connector: Connector[Any], stream: str, state: Any = None
    ) -> list[Batch]:
        from headwater.errors import NotSupported

        try:
            return list(connector.read(stream, state, batch_size=self.read_batch_size))
        except NotSupported as exc:
            _fail("capabilities", f"declares 'read' but read() raised NotSupported: {exc}")

    # --- identity and configuration --------------------------------------------------------

    def test_contract_id_is_stable(self, connector: Connector[Any]) -> None:
        """The id is a valid string class attribute, equal to the released (pinned) id."""
        cls = type(connector)
        cid = getattr(cls, "id", None)
        if not isinstance(cid, str):
            _fail("stable id", f"{cls.__name__}.id must be a str class attribute, got {cid!r}")
        if not is_connector_id(cid):
            _fail(
                "stable id",
                f"id {cid!r} is invalid: use {CONNECTOR_ID_RULE} (e.g. 'azure-blob')",
            )
        if connector.id != cid:
            _fail("stable id", f"instance id {connector.id!r} differs from class id {cid!r}")
        if self.connector_id is None:
            _fail(
                "stable id",
                f"set `connector_id = {cid!r}` on {type(self).__name__}: pinning the "
                "released id makes a rename fail this suite",
            )
        if cid != self.connector_id:
            _fail(
                "stable id",
                f"connector id changed from {self.connector_id!r} to {cid!r}; ids are "
                "immutable once released (saved sources refer to them)",
            )

    def test_contract_config_schema_marks_secrets(self, connector: Connector[Any]) -> None:
        """The config JSON Schema builds, and every secret field is marked as one."""
        model = type(connector).Config
        try:
            schema = model.model_json_schema()
            json.dumps(schema)
        except Exception as exc:
            _fail("config schema", f"{model.__name__}.model_json_schema() failed: {exc!r}")
        if schema.get("type") != "object":
            _fail("config schema", f"the schema of {model.__name__} is not an object schema")
        problems = []
        for path, found in fields(schema):
            marked = _is_secret_schema(found)
            if marked:
                secret = [v for v in found if v.get("x-headwater-secret") is True]
                if not all(v.get("format") == "password" for v in secret):
                    problems.append(
                        f"{path!r} is marked x-headwater-secret without format password"
                    )
            elif looks_like_secret(path) and path not in self.not_secret_fields:
                problems.append(
                    f"field {path!r} looks like a secret but its schema is not marked "
                    "(x-headwater-secret / format password): type it headwater.Secret "
                    "(or list it in not_secret_fields)"
                )
        for name in model.secret_fields():
            prop = schema.get("properties", {}).get(name)
            if prop is None or not _is_secret_schema(applicable(schema, prop)):
                problems.append(f"Secret field {name!r} is not marked secret in the schema")
        if problems:
            _fail("config schema", "; ".join(problems))

    def test_contract_config_fields_documented(self, connector: Connector[Any]) -> None:
        """Every config field has a description: the schema is the public config reference."""
        schema = type(connector).Config.model_json_schema()
        missing = [
            path
            for path, found in fields(schema)
            if not any(isinstance(v.get("description"), str) and v["description"] for v in found)
            # A field with one allowed value (a union's ``type`` tag) describes itself.
            and not any("const" in v for v in found)
        ]
        if missing:
            _fail(
                "config documented",
                f"config field(s) without a description: {', '.join(missing)}; add "
                "Field(description=...) — the JSON Schema is the README's config table",
            )

    def test_contract_capabilities_match_operations(
        self, connector: Connector[Any], tmp_path: Path
    ) -> None:
        """Declared capabilities are implemented; undeclared operations raise NotSupported."""
        from headwater._connector import Capability, Connector
        from headwater.errors import NotSupported

        cls = type(connector)
        declared = cls.capabilities
        if not isinstance(declared, frozenset | set) or not all(
            isinstance(c, Capability) for c in declared
        ):
            _fail("capabilities", f"{cls.__name__}.capabilities must be a frozenset of Capability")
        caps = _capabilities(connector)
        implements = {
            "check": ("check_connection", "acheck_connection", "check"),
            "list": ("list", "alist"),
            "read": ("read", "aread"),
            "fetch": ("fetch", "afetch"),
            "metadata": ("metadata", "ametadata"),
            "write": ("write", "awrite"),
            "partitions": ("partitions", "apartitions"),
        }
        problems = []
        for cap in sorted(caps & set(implements)):
            if all(getattr(cls, m) is getattr(Connector, m) for m in implements[cap]):
                problems.append(f"declares {cap!r} but does not override {implements[cap][0]}()")
        for needs, base in (("resume", "read"), ("arrow", "read"), ("partitions", "read")):
            if needs in caps and base not in caps:
                problems.append(f"declares {needs!r} without {base!r}")
        name = self.stream or self.missing_stream
        calls: dict[str, Callable[[], Any]] = {
            "list": lambda: _first(connector.list(None)),
            "read": lambda: _first(connector.read(name)),
            "fetch": lambda: connector.fetch(name, tmp_path / "unsupported"),
            "metadata": lambda: connector.metadata(name),
            # Never into `stream`: a connector that writes without declaring it would
            # change the data the other checks read.
            "write": lambda: connector.write(self.missing_stream, [[{"id": 1}]]),
            "partitions": lambda: connector.partitions(name, 2),
        }
        acalls: dict[str, Callable[[], Any]] = {
            "list": lambda: _collect(connector.alist(None)),
            "read": lambda: _collect(connector.aread(name)),
            "fetch": lambda: connector.afetch(name, tmp_path / "unsupported"),
            "metadata": lambda: connector.ametadata(name),
            "write": lambda: connector.awrite(self.missing_stream, [[{"id": 1}]]),
            "partitions": lambda: connector.apartitions(name, 2),
        }
        for op in sorted(set(calls) - caps):
            for label, call in (
                (f"{op}()", calls[op]),
                (f"a{op}()", lambda op=op: _run(acalls[op]())),
            ):
                try:
                    call()
                except NotSupported:
                    continue
                except Exception as exc:
                    problems.append(
                        f"{label} is not declared but raised {type(exc).__name__} "
                        f"instead of NotSupported"
                    )
                else:
                    problems.append(f"{label} is not declared but did not raise NotSupported")
        if problems:
            _fail("capabilities", "; ".join(problems))

    # --- check ---------------------------------------------------------------------------

    def test_contract_check_ok(self, connector: Connector[Any]) -> None:
        """check() on the working connector returns ok."""
        from headwater._connector import CheckResult

        self._contract_require(connector, "check")
        try:
            result = connector.check()
        except Exception as exc:
            _fail("check", f"check() raised {type(exc).__name__}: {exc}; it must never raise")
        if not isinstance(result, CheckResult):
            _fail("check", f"check() returned {_short(result)}, not a CheckResult")
        if not result.ok:
            _fail(
                "check",
                f"check() on the `connector` fixture failed: {result.category}: {result.message}",
            )
        if result.category is not None:
            _fail("check", f"a passing check has category {result.category!r}; expected None")

    def test_contract_check_reports_bad_credentials(
        self, bad_credentials_connector: Connector[Any] | None, secret_values: list[str]
    ) -> None:
        """check() with bad credentials returns a typed failure, never raises, shows no secret."""
        from headwater._connector import CheckResult
        from headwater.errors import Category

        connector = bad_credentials_connector
        if connector is None:
            pytest.skip("no bad_credentials_connector: the connector takes no credentials")
        self._contract_require(connector, "check")
        forget_secrets()
        results = []
        for label, call in (
            ("check()", connector.check),
            ("acheck()", lambda: _run(connector.acheck())),
        ):
            try:
                result = call()
            except Exception as exc:
                _fail(
                    "check with bad credentials",
                    f"{label} raised {type(exc).__name__} instead of returning "
                    "CheckResult(ok=False, ...): catch driver errors in check_connection's "
                    "caller (let the base class do it) and map them in translate_error()",
                )
            if not isinstance(result, CheckResult):
                _fail("check with bad credentials", f"{label} returned {_short(result)}")
            if result.ok:
                _fail(
                    "check with bad credentials",
                    f"{label} returned ok=True with bad credentials: check must verify them",
                )
            if not isinstance(result.category, Category):
                _fail(
                    "check with bad credentials",
                    f"{label} failed without a Category (got {result.category!r})",
                )
            if result.category not in (Category.AUTH, Category.PERMISSION):
                _fail(
                    "check with bad credentials",
                    f"{label} reported category {str(result.category)!r} for bad credentials; "
                    "expected 'auth' (or 'permission'): map the driver's authentication "
                    "error to AuthFailed in translate_error()",
                )
            if not result.message or "\n" in result.message or "Traceback" in result.message:
                _fail(
                    "check with bad credentials",
                    f"{label} message must be one non-empty line, got {_short(result.message)}",
                )
            results.append(result)
        secrets = [*resolved_secrets(connector), *secret_values]
        texts = {
            f"{label} {part}": text
            for label, result in zip(("check()", "acheck()"), results, strict=True)
            for part, text in (
                ("message", result.message),
                ("hint", result.hint or ""),
                ("field", result.field or ""),
                ("repr", repr(result)),
                ("to_dict", json.dumps(result.to_dict())),
            )
        }
        leaks = find_leaks(texts, secrets)
        if leaks:
            _fail("check with bad credentials", f"the secret appears in {', '.join(leaks)}")

    def test_contract_check_fails_when_it_should(
        self, connector: Connector[Any], bad_credentials_connector: Connector[Any] | None
    ) -> None:
        """
        Without a ``bad_credentials_connector``, the suite breaks the connector itself (a
        wrong secret, a closed port, a missing path): check() must report ok=False with a
        category, not pass and not raise.
        """
        from headwater._connector import CheckResult
        from headwater.errors import Category

        self._contract_require(connector, "check")
        if bad_credentials_connector is not None:
            return  # test_contract_check_reports_bad_credentials exercises a failing check
        variants = failing_variants(connector)
        if not variants:
            if self.check_cannot_fail:
                pytest.skip(f"check_cannot_fail: {self.check_cannot_fail}")
            _fail(
                "failing check",
                "nothing shows that check() can fail: the config holds no secret, port, URL "
                "or path the suite could break; provide a `bad_credentials_connector` "
                "fixture, or set check_cannot_fail = '<why>' on the test class",
            )
        for label, broken in variants:
            try:
                try:
                    result = broken.check()
                except Exception as exc:
                    _fail(
                        "failing check",
                        f"check() with {label} raised {type(exc).__name__} instead of "
                        "returning CheckResult(ok=False, ...): let the base class call "
                        "check_connection() and map driver errors in translate_error()",
                    )
            finally:
                broken.close()
            if not isinstance(result, CheckResult):
                _fail("failing check", f"check() with {label} returned {_short(result)}")
            if result.ok:
                _fail(
                    "failing check",
                    f"check() with {label} returned ok=True: check must reach the source "
                    "and verify the credentials",
                )
            if not isinstance(result.category, Category):
                _fail(
                    "failing check",
                    f"check() with {label} failed without a Category (got {result.category!r})",
                )

    # --- secrets never shown -----------------------------------------------------------------

    def _contract_exercise(self, connector: Connector[Any]) -> list[BaseException]:
        """Run the cheap operations the connector declares; return the errors they raised."""
        errors: list[BaseException] = []
        caps = _capabilities(connector)
        calls: list[Callable[[], Any]] = []
        if "check" in caps:
            calls.append(connector.check)
        if "list" in caps:
            calls.append(lambda: list(connector.list(self.list_path)))
        if "read" in caps:
            calls.append(lambda: _first(connector.read(self._contract_stream(), batch_size=2)))
            calls.append(lambda: list(connector.read(self.missing_stream)))
        if "metadata" in caps:
            calls.append(lambda: connector.metadata(self.missing_stream))
        for call in calls:
            try:
                call()
            except Exception as exc:
                errors.append(exc)
        return errors

    def test_contract_secrets_not_in_repr_str_or_errors(
        self,
        connector: Connector[Any],
        bad_credentials_connector: Connector[Any] | None,
        secret_values: list[str],
    ) -> None:
        """repr/str of connector and config, config dumps and raised errors show no secret."""
        forget_secrets()
        texts: dict[str, str] = {}
        for role, conn in (
            ("connector", connector),
            ("bad_credentials_connector", bad_credentials_connector),
        ):
            if conn is None:
                continue
            errors = self._contract_exercise(conn)
            config = conn.config
            texts.update(
                {
                    f"repr({role})": repr(conn),
                    f"str({role})": str(conn),
                    f"repr({role}.config)": repr(config),
                    f"str({role}.config)": str(config),
                    f"{role}.config.sanitized()": json.dumps(config.sanitized(), default=str),
                    f"{role}.config.model_dump()": repr(config.model_dump()),
                    f"{role}.config.model_dump_json()": config.model_dump_json(),
                }
            )
            for index, exc in enumerate(errors):
                for n, text in enumerate(exception_texts(exc)):
                    texts[f"error {index} of {role} ({type(exc).__name__}) text {n}"] = text
        secrets = _secrets_to_find(secret_values, connector, bad_credentials_connector)
        leaks = find_leaks(texts, secrets)
        if leaks:
            _fail("secrets never shown", f"a secret appears in {', '.join(leaks)}")

    def test_contract_secrets_not_in_logs(
        self,
        connector: Connector[Any],
        bad_credentials_connector: Connector[Any] | None,
        secret_values: list[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Nothing the connector logs (DEBUG and up, any logger) contains a secret."""
        import logging

        forget_secrets()
        caplog.set_level(logging.DEBUG)
        for conn in (connector, bad_credentials_connector):
            if conn is not None:
                self._contract_exercise(conn)
        secrets = _secrets_to_find(secret_values, connector, bad_credentials_connector)
        texts = {"the captured log": caplog.text}
        for index, record in enumerate(caplog.records):
            texts[f"log record {index} ({record.name})"] = record.getMessage()
        leaks = find_leaks(texts, secrets)
        if leaks:
            _fail(
                "secrets never shown",
                f"a secret appears in {', '.join(leaks[:5])}: attach "
                "headwater.toolkit.RedactingFilter() to your loggers",
            )

    # --- list, metadata, fetch ----------------------------------------------------------------

    def test_contract_list_items_well_formed(self, connector: Connector[Any]) -> None:
        """list() yields Items with a name, a known kind, sizes >= 0 and aware datetimes."""
        from datetime import datetime
        from typing import get_args

        from headwater._connector import Item, ItemKind
        from headwater.errors import NotSupported

        self._contract_require(connector, "list")
        try:
            items: list[Any] = list(connector.list(self.list_path))
        except NotSupported as exc:
            _fail("capabilities", f"declares 'list' but list() raised NotSupported: {exc}")
        if not items and not self.list_may_be_empty:
            _fail(
                "list items",
                f"list({self.list_path!r}) found nothing; the `connector` fixture should "
                "hold data (or set list_may_be_empty = True)",
            )
        kinds = set(get_args(ItemKind))
        problems = []
        for index, item in enumerate(items):
            where = f"item {index}"
            if not isinstance(item, Item):
                problems.append(f"{where} is {type(item).__name__}, not headwater.Item")
                continue
            where = f"item {item.name!r}"
            if not isinstance(item.name, str) or not item.name:
                problems.append(f"{where}: name must be a non-empty str")
            if item.kind not in kinds:
                problems.append(f"{where}: kind {item.kind!r} is not one of {sorted(kinds)}")
            if item.size is not None and (
                not isinstance(item.size, int) or isinstance(item.size, bool) or item.size < 0
            ):
                problems.append(f"{where}: size {item.size!r} must be None or an int >= 0")
            if item.modified is not None and (
                not isinstance(item.modified, datetime) or item.modified.tzinfo is None
            ):
                problems.append(
                    f"{where}: modified {item.modified!r} must be None or a timezone-aware datetime"
                )
            extra: Any = item.extra
            if not isinstance(extra, dict):
                problems.append(f"{where}: extra must be a dict")
            else:
                try:
                    json.dumps(item.to_dict())
                except (TypeError, ValueError) as exc:
                    problems.append(f"{where}: to_dict() is not JSON-serializable ({exc})")
        names = [i.name for i in items if isinstance(i, Item)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"names listed twice: {duplicates}")
        if problems:
            _fail("list items", "; ".join(problems[:10]))

    def test_contract_metadata_well_formed(self, connector: Connector[Any]) -> None:
        """metadata(item) returns a non-empty dict; a missing item raises a headwater error."""
        from headwater.errors import HeadwaterError, NotSupported

        self._contract_require(connector, "metadata")
        item = self.metadata_item or self._contract_stream()
        try:
            meta = connector.metadata(item)
        except NotSupported as exc:
            _fail("capabilities", f"declares 'metadata' but metadata() raised NotSupported: {exc}")
        if not isinstance(meta, dict) or not meta or not all(isinstance(k, str) for k in meta):
            _fail("metadata", f"metadata({item!r}) must be a non-empty dict with str keys")
        try:
            json.dumps(meta, default=str)
        except (TypeError, ValueError) as exc:
            _fail("metadata", f"metadata({item!r}) cannot be shown as JSON: {exc}")
        try:
            connector.metadata(self.missing_stream)
        except HeadwaterError:
            pass
        except Exception as exc:
            _fail(
                "metadata",
                f"metadata of a missing item raised {type(exc).__name__}, not a headwater "
                "error (NotFound): map driver errors in translate_error()",
            )
        else:
            _fail("metadata", f"metadata({self.missing_stream!r}) of a missing item did not raise")

    def test_contract_fetch_is_atomic_and_checksummed(
        self, connector: Connector[Any], tmp_path: Path
    ) -> None:
        """fetch() writes one complete file inside dest, sized and checksummed as reported."""
        import hashlib

        from headwater._connector import FetchResult
        from headwater.errors import AlreadyExists

        self._contract_require(connector, "fetch")
        item = self.fetch_item or self._contract_stream()
        dest = tmp_path / "fetched"
        result = connector.fetch(item, dest)
        if not isinstance(result, FetchResult):
            _fail("fetch", f"fetch() returned {_short(result)}, not a FetchResult")
        path = Path(result.path).resolve()
        if dest.resolve() not in path.parents:
            _fail("fetch", f"fetch() wrote {path}, outside dest {dest}: use safe_destination()")
        if not path.is_file():
            _fail("fetch", f"fetch() reported {path} but no such file exists")
        data = path.read_bytes()
        if result.size != len(data):
            _fail("fetch", f"fetch() reported size {result.size}, the file has {len(data)} bytes")
        if result.checksum is not None:
            algorithm, _, digest = result.checksum.partition(":")
            if algorithm not in hashlib.algorithms_available or not digest:
                _fail("fetch", f"checksum {result.checksum!r} is not 'algorithm:hexdigest'")
            actual = hashlib.new(algorithm, data).hexdigest()
            if actual != digest:
                _fail("fetch", f"checksum {result.checksum!r} does not match the bytes written")
        leftovers = sorted(
            str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.resolve() != path
        )
        if leftovers:
            _fail("fetch", f"fetch() left other files in dest: {leftovers} (use atomic_file())")
        try:
            connector.fetch(item, dest, overwrite=False)
        except AlreadyExists:
            pass
        except Exception as exc:
            _fail(
                "fetch",
                f"fetch(overwrite=False) onto an existing file raised {type(exc).__name__}, "
                "not AlreadyExists",
            )
        else:
            _fail("fetch", "fetch(overwrite=False) replaced an existing file")
        if path.read_bytes() != data:
            _fail("fetch", "fetch(overwrite=False) changed the existing file")

    # --- read and resume -----------------------------------------------------------------------

    def test_contract_read_batches_carry_state(self, connector: Connector[Any]) -> None:
        """Every batch is a Batch of dict rows with a JSON-serializable state."""
        from headwater._connector import Batch

        self._contract_require(connector, "read")
        stream = self._contract_stream()
        batches = self._contract_read(connector, stream)
        problems = []
        total = 0
        for index, batch in enumerate(batches):
            where = f"batch {index}"
            if not isinstance(batch, Batch):
                _fail("read batches", f"{where} is {type(batch).__name__}, not headwater.Batch")
            if batch.stream != stream:
                problems.append(f"{where}: stream {batch.stream!r}, expected {stream!r}")
            rows = batch.rows()
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                problems.append(f"{where}: rows() must be a list of dicts")
            total += len(rows)
            if not isinstance(batch.state, dict) or not batch.state:
                problems.append(f"{where}: state {_short(batch.state)} must be a non-empty dict")
                continue
            try:
                restored = _json_round_trip(batch.state)
            except (TypeError, ValueError) as exc:
                problems.append(f"{where}: state is not JSON-serializable ({exc})")
                continue
            if restored != batch.state:
                problems.append(
                    f"{where}: state changes through a JSON round trip "
                    f"({_short(batch.state)} -> {_short(restored)}); callers persist it as JSON"
                )
        if problems:
            _fail("read batches", "; ".join(problems[:10]))
        if total < self.min_records:
            _fail(
                "read batches",
                f"stream {stream!r} gave {total} records; the read checks need at least "
                f"{self.min_records} (choose a larger stream or lower min_records)",
            )
        if len(batches) < 2:
            _fail(
                "read batches",
                f"read({stream!r}, batch_size={self.read_batch_size}) gave {len(batches)} "
                "batch(es); honour batch_size so memory stays bounded and resumption is "
                "fine-grained",
            )

    def test_contract_read_resumes_from_every_state(self, connector: Connector[Any]) -> None:
        """Resuming from any batch's (JSON round-tripped) state yields exactly the rest."""
        self._contract_require(connector, "read")
        self._contract_require(connector, "resume")
        stream = self._contract_stream()
        batches = self._contract_read(connector, stream)
        if len(batches) < 2:
            _fail("read batches", f"stream {stream!r} gave fewer than 2 batches")
        everything = _rows_of(batches)
        again = _rows_of(self._contract_read(connector, stream))
        if again != everything:
            _fail(
                "resume",
                f"two full reads of {stream!r} differ ({len(everything)} vs {len(again)} "
                "records); resumption needs a deterministic order",
            )
        ends = []
        count = 0
        for batch in batches:
            count += len(batch)
            ends.append(count)
        indexes = list(range(len(batches)))
        limit = self.max_resume_checks
        if limit is not None and len(indexes) > limit:
            step = (len(indexes) - 1) / (limit - 1)
            indexes = sorted({round(i * step) for i in range(limit)})
        for index in indexes:
            state = _json_round_trip(batches[index].state)
            try:
                resumed = _rows_of(self._contract_read(connector, stream, state))
            except Exception as exc:
                _fail(
                    "resume",
                    f"read({stream!r}, state) with the state after batch {index} raised "
                    f"{type(exc).__name__}: {exc}",
                )
            expected = everything[ends[index] :]
            if resumed != expected:
                first = next(
                    (i for i, (a, b) in enumerate(zip(resumed, expected, strict=False)) if a != b),
                    min(len(resumed), len(expected)),
                )
                got = _short(resumed[first]) if first < len(resumed) else "nothing"
                want = _short(expected[first]) if first < len(expected) else "nothing"
                _fail(
                    "resume",
                    f"resuming from the state after batch {index} (record {ends[index]} of "
                    f"{len(everything)}) gave {len(resumed)} records, expected exactly the "
                    f"remaining {len(expected)}; first difference at position {first}: got "
                    f"{got}, expected {want}",
                )

    def test_contract_read_formats_give_the_same_records(self, connector: Connector[Any]) -> None:
        """Each of ``read_formats`` (and an unordered read) yields the records of a dict read."""
        self._contract_require(connector, "read")
        stream = self._contract_stream()
        expected = _rows_of(self._contract_read(connector, stream))
        variants: list[tuple[str, dict[str, Any]]] = [
            (f"format={fmt!r}", {"format": fmt}) for fmt in sorted(connector.read_formats)
        ]
        if "unordered" in _capabilities(connector):
            variants.append(("ordered=False", {"ordered": False}))
        if not variants:
            pytest.skip("the connector declares no read_formats and no unordered reads")
        key = functools.cmp_to_key(lambda a, b: (repr(a) > repr(b)) - (repr(a) < repr(b)))
        for label, options in variants:
            try:
                batches = list(connector.read(stream, batch_size=self.read_batch_size, **options))
                got = _rows_of(batches)
            except Exception as exc:
                _fail("read formats", f"read({stream!r}, {label}) failed: {_short(exc)}")
            if options.get("format") == "arrow" and not all(b.is_arrow for b in batches):
                _fail("read formats", f"read({label}) gave batches that are not Arrow")
            if batches and all(b.text for b in batches):
                # Text forms of the values (COPY text, CSV): as many records, with the same
                # fields and the same NULLs.
                same = _shape(got) == _shape(expected)
            elif "ordered" in options:
                same = sorted(got, key=key) == sorted(expected, key=key)
            else:
                same = got == expected
            if not same:
                _fail(
                    "read formats",
                    f"read({stream!r}, {label}) gave other records than a dict read: "
                    f"{_short(got[:3])} vs {_short(expected[:3])}",
                )

    def test_contract_estimate_is_cheap_and_typed(self, connector: Connector[Any]) -> None:
        """estimate() returns an Estimate whose figures are non-negative (or None)."""
        from headwater._connector import Estimate

        self._contract_require(connector, "read")
        estimate = connector.estimate(self._contract_stream())
        if not isinstance(estimate, Estimate):
            _fail("estimate", f"estimate() returned {type(estimate).__name__}, not Estimate")
        for name in ("rows", "bytes"):
            value = getattr(estimate, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                _fail("estimate", f"estimate().{name} is {value!r}: a count or None")
        if estimate.exact and estimate.rows is not None:
            actual = len(_rows_of(self._contract_read(connector, self._contract_stream())))
            if actual != estimate.rows:
                _fail(
                    "estimate", f"estimate() says exactly {estimate.rows} rows; read gave {actual}"
                )

    def test_contract_read_missing_stream_raises_typed_error(
        self, connector: Connector[Any]
    ) -> None:
        """Reading a stream that does not exist raises a headwater error, not a driver error."""
        from headwater.errors import HeadwaterError

        self._contract_require(connector, "read")
        try:
            list(connector.read(self.missing_stream))
        except HeadwaterError:
            return
        except Exception as exc:
            _fail(
                "typed errors",
                f"reading missing stream {self.missing_stream!r} raised {type(exc).__name__}, "
                "not a headwater error (NotFound): map driver errors in translate_error()",
            )
        _fail("typed errors", f"reading missing stream {self.missing_stream!r} did not raise")

    def test_contract_read_memory_bounded(
        self, large_stream_connector: Connector[Any] | None
    ) -> None:
        """Reading a large stream keeps peak Python allocations under memory_limit."""
        import gc
        import tracemalloc

        connector = large_stream_connector
        if connector is None:
            pytest.skip("no large_stream_connector fixture: memory bound not checked")
        self._contract_require(connector, "read")
        stream = self.large_stream or self._contract_stream()
        gc.collect()
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            records = 0
            for batch in connector.read(stream, batch_size=self.large_batch_size):
                records += len(batch)
                del batch
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            if not tracing:
                tracemalloc.stop()
        if records < self.large_min_records:
            _fail(
                "bounded memory",
                f"large stream {stream!r} gave {records} records; the memory check needs at "
                f"least {self.large_min_records} to mean something",
            )
        if peak > self.memory_limit:
            _fail(
                "bounded memory",
                f"reading {records} records of {stream!r} in batches of "
                f"{self.large_batch_size} peaked at {peak / 2**20:.1f} MiB of Python "
                f"allocations (limit {self.memory_limit / 2**20:.1f} MiB): read() must "
                "stream, not load the whole stream",
            )

    # --- lifecycle and async -------------------------------------------------------------------

    def test_contract_close_is_idempotent(self, connector: Connector[Any]) -> None:
        """close()/aclose() twice never raise, release once, and context managers close."""
        cls = type(connector)
        for label, close in (
            ("close()", connector.close),
            ("close() again", connector.close),
            ("aclose() after close()", lambda: _run(connector.aclose())),
        ):
            try:
                close()
            except Exception as exc:
                _fail("close idempotent", f"{label} raised {type(exc).__name__}: {exc}")
        if not connector.closed:
            _fail(
                "close idempotent",
                "`closed` is False after close(): override release(), not close()",
            )
        for label, use in (("with", _use_with), ("async with", _use_async_with)):
            fresh = cls(connector.config, registry=connector.registry)
            try:
                entered, released = use(fresh)
            except Exception as exc:
                _fail(
                    "close idempotent", f"`{label}` then close raised {type(exc).__name__}: {exc}"
                )
            if entered is not fresh:
                _fail("close idempotent", f"`{label}` must bind the connector itself")
            if not fresh.closed:
                _fail("close idempotent", f"the connector is not closed after `{label}`")
            if len(released) > 1:
                _fail(
                    "close idempotent",
                    f"{released[0]}() ran {len(released)} times after `{label}` and a second "
                    "close; it must run once",
                )

    @pytest.mark.parametrize("operation", ["check", "list", "read", "metadata", "fetch", "write"])
    def test_contract_async_twin_equals_sync(
        self, connector: Connector[Any], operation: str, tmp_path: Path
    ) -> None:
        """Each async twin (acheck, alist, aread, ametadata, afetch, awrite) equals its sync op."""
        self._contract_require(connector, operation)
        invariant = f"async twin of {operation}"
        a: Any
        b: Any
        if operation == "check":
            sync = connector.check()
            other = _run(connector.acheck())
            keys = ("ok", "category", "field", "message", "hint")
            a = {k: getattr(sync, k) for k in keys}
            b = {k: getattr(other, k) for k in keys}
        elif operation == "list":
            a = sorted(
                json.dumps(i.to_dict(), sort_keys=True) for i in connector.list(self.list_path)
            )
            b = sorted(
                json.dumps(i.to_dict(), sort_keys=True)
                for i in _run(_collect(connector.alist(self.list_path)))
            )
        elif operation == "read":
            stream = self._contract_stream()
            size = self.read_batch_size
            a = [(x.rows(), x.state) for x in connector.read(stream, batch_size=size)]
            b = [
                (x.rows(), x.state)
                for x in _run(_collect(connector.aread(stream, batch_size=size)))
            ]
        elif operation == "metadata":
            item = self.metadata_item or self._contract_stream()
            a = json.dumps(connector.metadata(item), default=str, sort_keys=True)
            b = json.dumps(_run(connector.ametadata(item)), default=str, sort_keys=True)
        elif operation == "fetch":
            item = self.fetch_item or self._contract_stream()
            one = connector.fetch(item, tmp_path / "sync")
            two = _run(connector.afetch(item, tmp_path / "async"))
            a = (
                Path(one.path).relative_to(tmp_path / "sync"),
                one.size,
                one.checksum,
                Path(one.path).read_bytes(),
            )
            b = (
                Path(two.path).relative_to(tmp_path / "async"),
                two.size,
                two.checksum,
                Path(two.path).read_bytes(),
            )
        else:
            first = self.new_write_stream(connector)
            second = self.new_write_stream(connector)
            if first is None or second is None:
                pytest.skip("new_write_stream() returns None: write twins not checked")
            if first == second:
                _fail(invariant, "new_write_stream() must return a fresh name on each call")
            records = self.write_records()
            sync_result = connector.write(first, [records])
            async_result = _run(connector.awrite(second, [records]))
            a = sync_result.records
            b = async_result.records
            if a != len(records):
                _fail("write", f"write() of {len(records)} records reported {a}")
            if "read" in _capabilities(connector):
                a = _rows_of(connector.read(first))
                b = _rows_of(connector.read(second))
        if a != b:
            _fail(invariant, f"a{operation}() differs from {operation}(): {_difference(b, a)}")

    # --- lazy imports -----------------------------------------------------------------------

    def _contract_entry_point(self, connector: Connector[Any]) -> str:
        if self.entry_point is not None:
            return self.entry_point
        import importlib.metadata

        top = type(connector).__module__.split(".")[0]
        for ep in importlib.metadata.entry_points(group="headwater"):
            if ep.module.split(".")[0] == top:
                return ep.module
        _fail(
            "entry point",
            f"no entry point in group 'headwater' names a module of package {top!r}: declare "
            "[project.entry-points.headwater] in pyproject.toml and install the plugin "
            "(pip install -e .), or set entry_point = 'package.hooks'",
        )

    def _contract_probe(self, connector: Connector[Any]) -> tuple[str, dict[str, Any]]:
        """The entry-point module and what importing it in a fresh interpreter did."""
        module = self._contract_entry_point(connector)
        try:
            report = probe(module, type(connector).id, self.url_example)
        except RuntimeError as exc:
            _fail("entry point", str(exc))
        if report["error"]:
            _fail(
                "entry point", f"importing {module} or calling its hooks failed: {report['error']}"
            )
        return module, report

    def test_contract_entry_point_imports_nothing_heavy(self, connector: Connector[Any]) -> None:
        """Importing the entry-point module and calling its hooks imports no heavy SDK."""
        module, report = self._contract_probe(connector)
        heavy = heavy_imports(report["ep_imports"], self.heavy_modules)
        if heavy:
            _fail(
                "lazy imports",
                f"importing {module} and calling its hooks imported {', '.join(heavy)}: "
                "return headwater.ConnectorRef('id', 'package._connector:Class'), keep the "
                "package's __init__.py free of connector imports (it is imported too), and "
                "import SDKs inside the connector's methods",
            )
        cid = type(connector).id
        if cid not in report["ids"]:
            _fail(
                "stable id",
                f"{module}.register_connectors() does not register {cid!r} (it returns "
                f"{report['ids']})",
            )
        if report["identity"] != [cid, type(connector).__qualname__]:
            _fail(
                "stable id",
                f"{module} registers {cid!r} as {report['target']}, which is not "
                f"{type(connector).__qualname__}",
            )
        if self.url_example is not None and report["claimed"] != cid:
            _fail(
                "entry point",
                f"connector_for_url({self.url_example!r}) returned {report['claimed']!r}, "
                f"expected {cid!r}",
            )

    def test_contract_connector_module_imports_sdk_lazily(self, connector: Connector[Any]) -> None:
        """Importing the connector's module imports no heavy SDK (pydantic allowed)."""
        module, report = self._contract_probe(connector)
        if report["target"] is None:
            pytest.skip(
                f"{module} does not register {type(connector).id!r} (see the stable id check)"
            )
        heavy = heavy_imports(
            report["connector_imports"],
            [m for m in self.heavy_modules if m not in CONNECTOR_MODULE_ALLOWED],
        )
        if heavy:
            _fail(
                "lazy imports",
                f"importing {report['target']} imported {', '.join(heavy)} at module level: "
                "import SDKs inside the methods that use them (TYPE_CHECKING for types)",
            )


def _difference(async_result: Any, sync_result: Any) -> str:
    """Where the async twin's result departs from the sync one, briefly."""
    if isinstance(async_result, list) and isinstance(sync_result, list):
        if all(isinstance(x, str) for x in [*async_result, *sync_result]):
            only_async = sorted(set(async_result) - set(sync_result))
            only_sync = sorted(set(sync_result) - set(async_result))
            if only_async or only_sync:
                return (
                    f"only in the async result: {_short(only_async, 300)}; only in the sync "
                    f"result: {_short(only_sync, 300)}"
                )
        for index, (x, y) in enumerate(zip(async_result, sync_result, strict=False)):
            if x != y:
                return f"item {index}: async {_short(x, 300)}, sync {_short(y, 300)}"
        return f"async gave {len(async_result)} items, sync {len(sync_result)}"
    return f"async {_short(async_result, 300)}, sync {_short(sync_result, 300)}"


def _use_with(connector: Connector[Any]) -> tuple[Any, list[str]]:
    """``with connector`` then ``close()``; returns what ``as`` bound and release calls."""
    released: list[str] = []
    original = connector.release

    def counting() -> None:
        released.append("release")
        original()

    connector.release = counting  # type: ignore[method-assign]
    with connector as entered:
        pass
    connector.close()
    return entered, released


def _use_async_with(connector: Connector[Any]) -> tuple[Any, list[str]]:
    """``async with connector`` then ``aclose()``; returns what ``as`` bound and arelease calls."""
    released: list[str] = []
    original = connector.arelease

    async def counting() -> None:
        released.append("arelease")
        await original()

    connector.arelease = counting  # type: ignore[method-assign]

    async def use() -> Any:
        async with connector as entered:
            pass
        await connector.aclose()
        return entered

    return _run(use()), released
