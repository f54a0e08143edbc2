"""
The contract suite finds a check() that cannot fail, or raises when it fails, even when
the author gives no ``bad_credentials_connector``: it breaks the connector itself.
"""

from __future__ import annotations

import textwrap

import pytest

from core.tests.test_testing_contract import GOOD, HOOKS

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(120)

CHECK = "test_contract_check_fails_when_it_should"

SUITE = """
from headwater.testing import ConnectorContract
from subject_module import {cls} as Subject


class TestSubject(ConnectorContract):
    connector_id = "good"
    stream = "numbers"
    entry_point = "hooks_under_test"
{extra}

    @pytest.fixture
    def connector(self):
        return Subject({config})
"""


def _run(
    pytester: pytest.Pytester, body: str, *, config: str, extra: str = "", prelude: str = ""
) -> pytest.RunResult:
    module = (
        GOOD
        + "\n"
        + textwrap.dedent(prelude)
        + "\n\nclass Broken(GoodConnector):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    pytester.makepyfile(
        subject_module=module,
        hooks_under_test=HOOKS.format(imports="", id="good", target="subject_module:Broken"),
        test_subject="import pytest\n" + SUITE.format(cls="Broken", config=config, extra=extra),
    )
    return pytester.runpytest_inprocess(
        "-p", "no:asyncio", "-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:cacheprovider",
        "-k", CHECK,
    )  # fmt: skip


TOKEN = '{"token": "correct-horse-battery"}'


def test_good_connector_without_bad_credentials_fixture_passes(pytester: pytest.Pytester) -> None:
    """The suite makes the token wrong itself; the good connector reports auth, so it passes."""
    result = _run(pytester, "pass\n", config=TOKEN)
    result.assert_outcomes(passed=1)


def test_check_that_raises_on_failure_is_caught(pytester: pytest.Pytester) -> None:
    """A check() that raises instead of returning ok=False fails the suite."""
    body = """
    def check(self):
        self._login()
        return super().check()
    """
    result = _run(pytester, body, config=TOKEN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]failing check[]]*every secret wrong raised AuthFailed*"])


def test_check_that_always_passes_is_caught(pytester: pytest.Pytester) -> None:
    """A check() that never verifies anything fails the suite."""
    body = """
    def check_connection(self):
        return "ok"
    """
    result = _run(pytester, body, config=TOKEN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*every secret wrong returned ok=True*"])


NO_SECRET = """
    class PlainConfig(ConnectorConfig):
        records: int = Field(default=9, description="Records.")
        large: int = Field(default=0, description="Large records.")
"""
NO_SECRET_BODY = """
Config = PlainConfig

def _login(self):
    return "none"
"""


def test_nothing_to_break_must_be_declared(pytester: pytest.Pytester) -> None:
    """No secret, port, URL or path to break and no fixture: the author must say why."""
    result = _run(pytester, NO_SECRET_BODY, config="{}", prelude=NO_SECRET)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*check_cannot_fail*"])
    extra = '    check_cannot_fail = "an in-memory connector: nothing to reach"'
    result = _run(pytester, NO_SECRET_BODY, config="{}", prelude=NO_SECRET, extra=extra)
    result.assert_outcomes(skipped=1)
