"""pytest fixtures for the channels tests (sample values live in samples.py)."""

from __future__ import annotations

import pytest

from tests.channels.samples import DIALECT_NAMES


@pytest.fixture(params=DIALECT_NAMES)
def dialect_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)
