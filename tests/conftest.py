"""Shared test fixtures: locating the real data in ../shared/data.

Tests that need the shared data skip when it is absent, except under CI (CI=true), where a
missing file is a failure.
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first, as in every script: the same kernels)
import os
import pathlib

import pytest

import modeling

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


def small_config(style, **overrides):
    """The one small test config: hidden 32, 2 layers, E 16, 4 heads, no dropout, in `style`.

    Tests that need other sizes pass them as overrides (e.g. vocab_size=21128 for files that
    ship the real vocab).
    """
    values = dict(vocab_size=97, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=48, hidden_act="gelu",
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  max_position_embeddings=40, type_vocab_size=2, initializer_range=0.02)  # fmt: skip
    if style == "brightmart":
        values["ln_type"] = "postln"
    else:
        values.update(num_hidden_groups=1, inner_group_num=1)
    values.update(overrides)
    return modeling.AlbertConfig.from_dict(dict(values, style=style))


# The longest files first: under `pytest -n 2` (the README's command; --dist=loadfile and
# --no-loadscope-reorder in pyproject.toml) each file runs whole on one worker, so the two
# multi-minute kill -9 chains start at once, one per worker, and the many short files fill in
# around them instead of leaving one worker alone at the end.
LONGEST_FIRST = ("test_kill_finetuning.py", "test_kill_pretraining.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every file's tests stay together and in order
