"""States never keep a credential an API puts in its next links; a state beyond the data fails."""

from __future__ import annotations

import json

import pytest

from headwater import ConfigError

TOKEN = "at-Hq7Rk2-next-url-secret"

NEXT_URL = {
    "path": "/next-url",
    "records": "data",
    "pagination": {"type": "next_url", "next_url_path": "links.next"},
}


def _stream(**params):
    return {"s": {**NEXT_URL, "params": {"n": 25, **params}}}


def test_next_url_credential_is_not_saved_and_comes_back_from_the_config(
    read, make_config, http_api
):
    """``access_token`` rides in every next link; the states leave it out, the resume restores it."""
    config = make_config(streams=_stream(access_token=TOKEN))
    first = read(config, "s", max_records=12)
    assert first.error is None
    assert list(range(1, 13)) == first.ids
    saved = json.dumps(first.states)
    assert TOKEN not in saved
    assert "access_token" in saved  # by name: the resume knows to give it back
    url = first.states[-1]["position"]["token"]["url"]
    assert "access_token" not in url

    http_api.log.clear()
    rest = read(config, "s", first.states[-1])
    assert rest.error is None
    assert list(range(13, 26)) == rest.ids
    assert all(seen.query.get("access_token") == TOKEN for seen in http_api.log)
    assert TOKEN not in json.dumps(rest.states)


def test_resume_without_the_credential_in_the_config_is_refused(read, make_config):
    """A state whose stripped parameter the config no longer gives: a clear error, no request."""
    first = read(make_config(streams=_stream(access_token=TOKEN)), "s", max_records=12)
    rest = read(make_config(streams=_stream()), "s", first.states[-1])
    assert isinstance(rest.error, ConfigError)
    assert "state" == rest.error.field
    assert "access_token" in str(rest.error)
    assert [] == rest.batches


def test_a_param_marked_plain_stays_in_the_state(read, make_config):
    """{plain: ...} says a credential-looking parameter is not one: it is kept as it is."""
    first = read(make_config(streams=_stream(code={"plain": "eu-west"})), "s", max_records=12)
    assert "code=eu-west" in first.states[-1]["position"]["token"]["url"]


@pytest.mark.parametrize(
    "stream",
    [
        {**NEXT_URL, "params": {"n": 25}},
        {"path": "/offset", "records": "items", "pagination": {"type": "offset", "limit": 10}},
    ],
    ids=["next_url", "offset"],
)
def test_a_position_beyond_the_data_is_an_error(read, make_config, stream):
    """``skip: 99999`` on a 10-record page: an error, not an empty read that exits 0."""
    config = make_config(streams={"s": stream})
    first = read(config, "s", max_records=3)
    state = json.loads(json.dumps(first.states[-1]))
    state["position"]["skip"] = 99999
    rest = read(config, "s", state)
    assert isinstance(rest.error, ConfigError)
    assert "state" == rest.error.field
    assert [] == rest.records


@pytest.mark.parametrize(
    "name", ["pageToken", "next_token", "pagination_token", "continuationToken", "NextToken"]
)
def test_a_pagination_token_in_a_next_url_is_kept(name):
    """A page token is where the stream goes on, not a credential: stripping it would
    make the state unresumable (the config cannot give back a token the API made)."""
    from headwater.toolkit import is_credential_name
    from headwater_rest._paginate import Position

    url = f"https://api.example.com/items?{name}=CgNhYmM&limit=50"
    state = Position({"url": url}).to_state(is_credential_name)
    assert url == state["token"]["url"]
    assert "stripped" not in state
