"""Shared test fixtures: locating the real data in ../shared/data.

Tests that need the shared data skip when it is absent, except under CI (CI=true), where a
missing file is a failure.
"""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = pathlib.Path(os.environ.get("ALBERT_ZH_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data(relative_path):
    """Return the path of a shared data file, skipping (or failing under CI) if it is missing."""
    path = DATA_DIR / relative_path
    if not path.exists():
        message = f"shared data file missing: {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def vocab_file():
    return shared_data("vocab.txt")
