"""Shared test fixtures: where the reference specification lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LIVE3DPE_REFERENCE", REPO.parent / "shared" / "reference"))
CONFORMANCE = REFERENCE / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"reference vectors not found at {CONFORMANCE} (set LIVE3DPE_REFERENCE)")
    return CONFORMANCE


@pytest.fixture
def single_thread():
    """Tiny convolutions run faster single-threaded, especially on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
