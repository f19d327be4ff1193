"""Shared test fixtures: where the reference specification lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LIVE3DPE_REFERENCE", REPO.parent / "shared" / "reference"))
CONFORMANCE = REFERENCE / "conformance"


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"reference vectors not found at {CONFORMANCE} (set LIVE3DPE_REFERENCE)")
    return CONFORMANCE
