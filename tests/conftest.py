"""Shared test fixtures: the reference specification's conformance vectors."""
from __future__ import annotations

import pytest
import torch
from reference_vectors import Conformance


@pytest.fixture(scope="session")
def conformance() -> Conformance:
    """The compact copy shipped in tests/data, plus the full vectors when present
    (../shared/reference/conformance, or $LIVE3DPE_REFERENCE/conformance): checks run against both."""
    return Conformance.locate()


@pytest.fixture
def single_thread():
    """Tiny convolutions run faster single-threaded, especially on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
