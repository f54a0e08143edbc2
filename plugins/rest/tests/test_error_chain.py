"""A failed read's whole exception chain (traceback, logging, __cause__/__context__) hides credentials."""

from __future__ import annotations

import pytest

from headwater import HeadwaterError
from tests.chain_texts import chain_texts
from tests.fix_http import API_KEY, BEARER, SECRETS
from tests.fix_services import free_port

QUERY_KEY = {"type": "api_key", "key": API_KEY, "location": "query", "name": "api_key"}
BEARER_AUTH = {"type": "bearer", "token": BEARER}


@pytest.mark.parametrize("auth", [QUERY_KEY, BEARER_AUTH], ids=["api_key-query", "bearer"])
def test_connection_refused(read, make_config, auth):
    """Nothing listens: httpx's error (its request, URL and headers) is not in the chain."""
    config = make_config(
        base_url=f"http://127.0.0.1:{free_port()}",
        auth=auth,
        streams={"s": {"path": "/single"}},
        retry={"attempts": 1, "initial": 0, "maximum": 0, "jitter": 0, "timeout": 5},
    )
    outcome = read(config, "s")
    assert isinstance(outcome.error, HeadwaterError)
    assert [] == [s for s in SECRETS if s in chain_texts(outcome.error)]


@pytest.mark.parametrize("auth", [QUERY_KEY, BEARER_AUTH], ids=["api_key-query", "bearer"])
def test_unreadable_response(read, make_config, http_api, auth):
    """A page that is not JSON: the parse error's chain carries no credential."""
    config = make_config(
        auth=auth,
        streams={"s": {"path": "/html", "records": "data"}},
    )
    outcome = read(config, "s")
    assert isinstance(outcome.error, HeadwaterError)
    assert [] == [s for s in SECRETS if s in chain_texts(outcome.error)]
