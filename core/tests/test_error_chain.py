"""A headwater error's chain holds redacted copies of driver exceptions, never the originals."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid

import pytest

from headwater._redact import _forget_all, register_secret
from headwater.errors import ConfigError, ConnectorError, RedactedError
from tests.chain_texts import chain_texts


class DriverError(Exception):
    """A driver error that keeps the request (and the secret) on the side, as SDKs do."""

    def __init__(self, message: str, secret: str) -> None:
        super().__init__(message)
        self.request_url = f"https://h/x?sig={secret}"


@pytest.fixture
def secret():
    value = f"s-{uuid.uuid4().hex}"
    register_secret(value)
    yield value
    _forget_all()


def _raise_from(secret: str, how: str) -> ConnectorError:
    try:
        try:
            try:
                raise KeyError(f"inner {secret}")
            except KeyError:
                raise DriverError(f"failed with {secret}", secret) from None
        except DriverError as exc:
            if how == "from":
                raise ConnectorError("the call failed") from exc
            if how == "none":
                raise ConnectorError("the call failed") from None
            raise ConnectorError("the call failed")  # noqa: B904 - implicit chaining on purpose
    except ConnectorError as error:
        return error
    raise AssertionError("unreachable")


@pytest.mark.parametrize("how", ["from", "none", "implicit"])
def test_no_secret_in_the_chain(secret, how):
    error = _raise_from(secret, how)
    assert secret not in chain_texts(error)
    context = error.__context__
    assert isinstance(context, RedactedError)
    assert "DriverError" in context.original_type
    assert not hasattr(context, "request_url")
    # The driver's own chain is copied as well (its context was a KeyError).
    assert isinstance(context.__context__, RedactedError)
    assert context.__suppress_context__  # the driver raised `from None`


def test_cause_is_shown_redacted_in_the_traceback(secret):
    error = _raise_from(secret, "from")
    assert isinstance(error.__cause__, RedactedError)
    text = chain_texts(error)
    assert "DriverError: failed with ***" in text
    assert "direct cause" in text


def test_suppressed_context_stays_suppressed(secret):
    error = _raise_from(secret, "none")
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_assigning_a_cause_stores_a_copy(secret):
    error = ConfigError("bad")
    error.__cause__ = DriverError(f"x {secret}", secret)
    assert isinstance(error.__cause__, RedactedError)
    assert error.__suppress_context__
    assert secret not in chain_texts(error)


def test_a_headwater_error_in_the_chain_is_kept_as_it_is():
    inner = ConfigError("inner")

    def fail() -> None:
        try:
            raise inner
        except ConfigError as exc:
            raise ConnectorError("outer") from exc

    with pytest.raises(ConnectorError) as caught:
        fail()
    assert caught.value.__cause__ is inner


def test_redacted_copies_pickle(secret):
    copy = _raise_from(secret, "from").__cause__
    again = pickle.loads(pickle.dumps(copy))
    assert (copy.original_type, str(copy)) == (again.original_type, str(again))


_FAIL = """
def fail():
    try:
        raise ValueError("driver said " + secret)
    except ValueError as exc:
        raise ConnectorError("the call failed") from exc
"""


@pytest.mark.parametrize("where", ["main", "thread"])
def test_uncaught_error_printed_by_the_interpreter_is_clean(where):
    """The default excepthooks (C code on 3.11/3.12) print the same clean chain."""
    secret = f"s-{uuid.uuid4().hex}"
    run = (
        "fail()"
        if where == "main"
        else (
            "import threading\nt = threading.Thread(target=fail)\nt.start()\nt.join()\n"
            "raise SystemExit(1)"
        )
    )
    script = (
        "import os\n"
        "from headwater._redact import register_secret\n"
        "from headwater.errors import ConnectorError\n"
        "secret = os.environ['HW_TEST_SECRET']\n"
        "register_secret(secret)\n" + _FAIL + run + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HW_TEST_SECRET": secret},
    )
    assert 1 == proc.returncode
    assert "ValueError: driver said ***" in proc.stderr
    assert secret not in proc.stderr
