"""Fixtures of the handler specifications: an in-memory bus, the "given these events" driver over it,
and a directory staging area (each test module sets its own Settings)."""
from __future__ import annotations

import pytest

from simreel.transport.staging import DirStaging
from tests.support.handlers import Given, MemoryBus


@pytest.fixture
def bus():
    return MemoryBus()


@pytest.fixture
def given(bus):
    return Given(bus)


@pytest.fixture
def staging(tmp_path):
    return DirStaging(tmp_path / "staging")
