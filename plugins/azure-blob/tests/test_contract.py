"""headwater's connector contract suite, run over the azure-blob connector on Azurite."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from headwater.testing import ConnectorContract
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration


@pytest.fixture
def contract_config(config, container):
    """A container holding a small stream and a 60,000-record one."""
    records = "".join(json.dumps({"id": i, "name": f"r{i}"}) + "\n" for i in range(9))
    container.upload_blob("data/people.jsonl", records.encode())
    big = "".join(json.dumps({"id": i, "pad": "x" * 20}) + "\n" for i in range(60_000))
    container.upload_blob("data/big.jsonl", big.encode())
    return config


class TestAzureBlobContract(ConnectorContract):
    """The shared invariants (ids, schema, check, secrets, resumption, twins, laziness)."""

    connector_id = "azure-blob"
    stream = "data/people.jsonl"
    missing_stream = "data/no-such-blob.jsonl"
    large_stream = "data/big.jsonl"
    large_min_records = 50_000
    url_example = "az://exports/2024/"

    @pytest.fixture
    def connector(self, contract_config):
        return AzureBlobConnector(contract_config)

    @pytest.fixture
    def large_stream_connector(self, contract_config):
        return AzureBlobConnector(contract_config)

    @pytest.fixture
    def bad_credentials_connector(self, contract_config):
        wrong = base64.b64encode(os.urandom(64)).decode()
        return AzureBlobConnector({**contract_config, "account_key": wrong})

    def new_write_stream(self, connector):
        return f"written/{uuid.uuid4().hex}.jsonl"
