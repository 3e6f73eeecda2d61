"""Shared fixtures for the envs tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# The reference data sets live beside the repository checkout, not inside it.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Return the shared data folder, or skip the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} not found")
    return SHARED_DATA
