"""kill -9 at 10 seeded random points of run_pretraining.py (at start-up, between steps and
while a checkpoint is being written), each followed by the same command: every checkpoint and
the final weights equal those of one uninterrupted run (slow: one process start per point).

Its own file so that it can run beside the fine-tuning one (pytest -n 2: files run whole, see
tests/conftest.py).
"""

import time

import pytest

from tests import fault_fixtures as ff
from tests.kill_chain import CHECKPOINT_EVERY, kill_chain, kill_plan, start_reference


@pytest.mark.slow
def test_pretraining_killed_at_10_random_points_ends_as_an_uninterrupted_run(tmp_path):
    data = ff.make_pretraining_data(tmp_path, embedding_size=64)  # more to write per save
    steps = (
        "--num_train_steps=40",
        "--iterations_per_loop=2",
        f"--save_checkpoints_steps={CHECKPOINT_EVERY}",
    )
    reference = tmp_path / "reference"
    began = time.time()
    reference_run = start_reference(
        ff.pretraining_command(data, reference, *steps), tmp_path / "reference.log"
    )
    killed = tmp_path / "killed"
    plan = kill_plan(1501, list(range(2, 40, 2)), ["checkpoint write", "between steps"])
    hits, logs = kill_chain(ff.pretraining_command(data, killed, *steps), killed, plan, tmp_path)
    assert reference_run.wait(timeout=900) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    ours, theirs = ff.step_prefixes(killed), ff.step_prefixes(reference)
    assert sorted(ours) == sorted(theirs) == list(range(2, 41, 2))
    differences = {step: ff.largest_difference(ours[step], theirs[step]) for step in theirs}
    ff.report(
        "pretraining kill -9",
        kill_points=hits,
        largest_difference=max(differences.values()),
        seconds=round(time.time() - began),
    )
    assert not any(hit.startswith("missed") for hit in hits)
    assert max(differences.values()) <= 1e-6
    assert ff.state_file_names(killed) == 'model_checkpoint_path: "model.ckpt-40"'
    assert sum("taking over the stale lock" in log for log in logs[1:]) >= len(plan) - 1
    assert sum("resumed from" in log for log in logs[1:]) >= len(plan) - 1
