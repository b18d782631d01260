"""The fuzz suite (hypothesis): every generated input gets a clean error or a right answer."""

from __future__ import annotations

import pytest

from tests.fuzz.ledger import LEDGER, write_at_exit


@pytest.fixture(scope="session", autouse=True)
def _reliability_results():
    yield LEDGER
    write_at_exit()
