"""Config, URL handling, hooks and pure helpers (no server needed)."""

from __future__ import annotations

import subprocess
import sys
import typing
import uuid
from decimal import Decimal

import pytest
from pydantic import ValidationError

from headwater import ConfigError, Secret
from headwater_postgres import PostgresConfig, PostgresConnector, __version__, hooks


def test_url_password_moves_to_secret():
    """A URL password leaves the URL and becomes the password secret."""
    config = PostgresConfig(url="postgresql://app:s3cr%40t@db:5433/sales?sslmode=require")
    assert "postgresql://app@db:5433/sales?sslmode=require" == config.url
    assert Secret.literal_value("s3cr@t") == config.password
    assert "db:5433/sales" == config.display_target()


def test_url_password_reference():
    """A URL password that is a reference stays a reference (resolved at connect time)."""
    config = PostgresConfig(url="postgres://app:env:PGPASSWORD@db/sales")
    assert "env:PGPASSWORD" == config.password.reference


def test_url_and_parameters_are_exclusive():
    """url with host/port/dbname/user is refused; neither is refused too."""
    with pytest.raises(ValidationError, match="not both"):
        PostgresConfig(url="postgresql://db/x", host="other")
    with pytest.raises(ValidationError, match="give url, or host"):
        PostgresConfig()
    with pytest.raises(ValidationError, match="postgresql://"):
        PostgresConfig(url="mysql://db/x")


def test_password_twice_refused():
    """A password in both the URL and the password field is ambiguous."""
    with pytest.raises(ValidationError, match="not both"):
        PostgresConfig(url="postgresql://u:a@db/x", password="b")


def test_conflicting_tls_settings_refused():
    """A URL's sslmode is never silently overridden by a weaker config value."""
    with pytest.raises(ValidationError, match="sslmode"):
        PostgresConfig(url="postgresql://db/x?sslmode=verify-full", sslmode="disable")
    same = PostgresConfig(url="postgresql://db/x?sslmode=verify-full", sslmode="verify-full")
    assert "verify-full" == same.connect_kwargs()["sslmode"]


def test_validation_errors_never_quote_the_password():
    """Building the config directly: pydantic's error does not echo the URL it was given."""
    with pytest.raises(ValidationError) as info:
        PostgresConfig(url="postgresql://u:hunter2-pw@h/db?password=zz2-pw")
    assert "password" in str(info.value)
    assert [] == [s for s in ("hunter2-pw", "zz2-pw") if s in str(info.value)]


def test_url_query_settings_are_kept():
    """Settings the URL's query gives are not replaced by this config's defaults."""
    url = "postgresql://u@db/d?connect_timeout=3&application_name=etl&keepalives=0"
    kwargs = PostgresConfig(url=url).connect_kwargs()
    assert [] == [k for k in ("connect_timeout", "application_name", "keepalives") if k in kwargs]
    # The same setting given in both places must agree.
    with pytest.raises(ValidationError, match="connect_timeout"):
        PostgresConfig(url=url, connect_timeout=10)
    assert 3 == PostgresConfig(url=url, connect_timeout=3).connect_kwargs()["connect_timeout"]


def test_connect_kwargs():
    """Parameters become libpq keywords: timeouts, keepalives, application_name, options."""
    config = PostgresConfig(
        host="db",
        port=6543,
        dbname="d",
        user="u",
        statement_timeout=1.5,
        options="-c search_path=x",
        sslmode="verify-full",
        sslrootcert="/ca.pem",
    )
    kwargs = config.connect_kwargs()
    assert {
        "host": "db",
        "port": 6543,
        "dbname": "d",
        "user": "u",
        "sslmode": "verify-full",
        "sslrootcert": "/ca.pem",
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": f"headwater-postgres/{__version__}",
        "options": "-c search_path=x -c TimeZone=UTC -c IntervalStyle=iso_8601 "
        "-c statement_timeout=1500",
    } == kwargs
    assert "password" not in kwargs


def test_json_schema_offers_both_ways():
    """The JSON Schema documents URL and parameters as alternatives, password as a secret."""
    schema = PostgresConfig.model_json_schema()
    titles = [alt["title"] for alt in schema["oneOf"]]
    assert ["Connection URL", "Connection parameters"] == titles
    assert schema["properties"]["password"]["anyOf"][0]["x-headwater-secret"]
    assert all("description" in p for p in schema["properties"].values())


def test_unknown_field_refused():
    """Typos in config keys are errors."""
    with pytest.raises(ConfigError):
        PostgresConnector({"host": "db", "sslmod": "require"})


def test_hooks_claim_urls():
    """connector_for_url claims postgresql:// and postgres:// only."""
    assert "postgres" == hooks.connector_for_url("postgresql://db/x")
    assert "postgres" == hooks.connector_for_url("POSTGRES://db/x")
    assert None is hooks.connector_for_url("mysql://db/x")
    (ref,) = hooks.register_connectors()
    assert ("postgres", PostgresConnector) == (ref.id, ref.load())


def test_listing_plugins_does_not_import_psycopg():
    """Importing the hooks and the package (as plugin listing does) never imports psycopg."""
    code = (
        "import sys, headwater_postgres.hooks, headwater_postgres; "
        "from headwater_postgres import PostgresConnector; "
        "PostgresConnector({'host': 'db'}); "
        "print(any(m == 'psycopg' or m.startswith('psycopg.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "False" == out.stdout.strip()


def test_connect_from_url_through_registry():
    """headwater's registry builds this connector from a postgresql:// URL."""
    from headwater import Registry

    registry = Registry(autoload=False, plugins=[hooks])
    connector = registry.connect("postgresql://u:env:X@db:1/x", {"connect_timeout": 3})
    assert isinstance(connector, PostgresConnector)
    assert "env:X" == connector.config.password.reference
    connector.close()


# --- pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ((0, 0, 0), "PT0S"),
        ((4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000, 3, 14), "P1Y2M3DT4H5M6.5S"),
        ((-1, 0, 0), "PT-0.000001S"),
        ((0, -3, -14), "P-1Y-2M-3D"),
        ((-6_500_000, 1, 0), "P1DT-6.5S"),
    ],
)
def test_interval_iso_round_trip(parts, text):
    """Intervals print as PostgreSQL's ISO 8601 style and parse back exactly."""
    from headwater_postgres._values import interval_to_iso, iso_to_interval

    assert text == interval_to_iso(*parts)
    assert parts == iso_to_interval(text)


@pytest.mark.parametrize(
    ("stream", "parsed"),
    [
        ("orders", (None, "orders")),
        ("Sales.Orders", ("sales", "orders")),
        ('"Sales"."Or.ders"', ("Sales", "Or.ders")),
        ('s."a""b"', ("s", 'a"b')),
        ('x"; DROP TABLE y; --', (None, 'x"; DROP TABLE y; --')),
        ("a.b.c", (None, "a.b.c")),
    ],
)
def test_split_name(stream, parsed):
    """Names follow PostgreSQL's identifier rules; anything else is one literal name."""
    from headwater_postgres._sql import split_name

    assert parsed == split_name(stream)


def test_is_query():
    """Streams starting with SELECT / WITH / VALUES are queries; names are not."""
    from headwater_postgres._sql import is_query

    assert is_query("SELECT 1")
    assert is_query("  with x as (select 1) select * from x")
    assert not is_query("select")
    assert not is_query("public.selection")


@pytest.mark.parametrize(
    ("declared", "pg_type"),
    [
        (int, "bigint"),
        (Decimal, "numeric"),
        (uuid.UUID, "uuid"),
        (list[int], "bigint[]"),
        (list[dict], "jsonb"),
        (typing.Optional[str], "text"),  # noqa: UP045 - the typing form is what is tested
        ("NUMERIC(12, 2)", "numeric(12, 2)"),
        ("timestamp with time zone", "timestamp with time zone"),
    ],
)
def test_declared_types(declared, pg_type):
    """Python types and type names map to PostgreSQL types."""
    from headwater_postgres._values import pg_type_for

    assert pg_type == pg_type_for(declared, "c")


def test_declared_type_injection_refused():
    """A 'type' carrying SQL is refused."""
    from headwater_postgres._values import pg_type_for

    with pytest.raises(ConfigError):
        pg_type_for("int); DROP TABLE x; --", "c")
    with pytest.raises(ConfigError):
        pg_type_for(object, "c")


@pytest.mark.parametrize(
    "texts",
    [
        [],
        ['{"a": 1}', "[1, 2]", '"s"', "3", "null", "true"],
        ['{"a": 1}', None, "[]", None],
        [None, None],
        ['{"big": 123456789012345678901234567890}', "1"],  # a long integer: one by one
        ['"\\ud800"', "[NaN]", "{}"],  # what orjson refuses: one by one
        ['"\\udc00 lone"', '{"a": "\\ud83d\\ude00"}'],  # what msgspec refuses: json_loads
        ["-98765432109876543210987", '{"a": [18446744073709551616, -9223372036854775809]}'],
        ['{"a": 1, "a": 2}', "[-0, -0.0, 5e-324]"],  # duplicate keys: the last wins
    ],
    ids=[
        "empty",
        "plain",
        "nulls",
        "only-nulls",
        "long-integer",
        "refused",
        "lone-surrogate",
        "long-integers-exact",
        "duplicate-keys-zeros",
    ],
)
def test_json_column_equals_json_loads_per_value(texts):
    """
    A batch of json texts parses to what json.loads gives each (None stays None), but
    the document null, which reads as its text ("null", a JsonText) so that it stays
    apart from SQL NULL.
    """
    import json

    from headwater_postgres._values import json_column

    expected = [None if t is None else "null" if t == "null" else json.loads(t) for t in texts]
    assert repr(expected) == repr(json_column(list(texts)))


def test_json_column_keeps_numbers_a_float_would_change():
    """jsonb text whose numbers a float would change parses to Decimals, written back as is."""
    from decimal import Decimal

    from headwater_postgres._values import json_column, json_dumps

    texts = ['{"x": 2.50, "y": 0.1}', "12345678901234567890.123", "[1.5, 1e-05]", "7"]
    values = json_column(texts)
    assert [{"x": Decimal("2.50"), "y": 0.1}, Decimal("12345678901234567890.123")] == values[:2]
    assert isinstance(values[0]["y"], float)
    assert [1.5, 1e-05] == values[2]
    assert ['{"x": 2.50, "y": 0.1}', "12345678901234567890.123"] == list(
        map(json_dumps, values[:2])
    )


def test_measured_width_counts_text_and_binary_lengths():
    """The probe's width: text/binary lengths, 8 bytes for anything else, per row."""
    from headwater_postgres._plan import measured_width

    assert 1 == measured_width([])
    assert (3 + 8 + 5) == measured_width([("abc", 1, b"12345")])
    assert 16 == measured_width([("x" * 12, None), ("y" * 4, None)])
