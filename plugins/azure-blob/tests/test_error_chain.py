"""A failed call's whole exception chain (traceback, logging, __cause__/__context__) hides keys and SAS."""

from __future__ import annotations

import base64
import os
from urllib.parse import parse_qs, quote

import pytest

from headwater import AuthFailed
from tests.chain_texts import chain_texts


def _leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text or quote(s, safe="") in text]


async def test_wrong_account_key(make_twin, azurite, container):
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    twin = make_twin(account_key=wrong_key)
    for call in (twin.list, lambda: twin.metadata("x.csv"), lambda: twin.read("x.csv")):
        with pytest.raises(AuthFailed) as caught:
            await call()
        assert [] == _leaks(chain_texts(caught.value), wrong_key, azurite.account_key)


async def test_wrong_key_in_a_connection_string(make_twin, azurite, container):
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    connection_string = azurite.connection_string.replace(azurite.account_key, wrong_key)
    twin = make_twin(account_url=None, account_key=None, connection_string=connection_string)
    with pytest.raises(AuthFailed) as caught:
        await twin.list()
    assert [] == _leaks(chain_texts(caught.value), wrong_key, azurite.account_key)


async def test_expired_sas(make_twin, expired_sas):
    sas = expired_sas
    signature = parse_qs(sas)["sig"][0]
    twin = make_twin(account_key=None, sas_token=sas)
    for call in (twin.list, lambda: twin.read("x.csv")):
        with pytest.raises(AuthFailed) as caught:
            await call()
        assert [] == _leaks(chain_texts(caught.value), signature, sas)
