"""kill -9 at 10 seeded points of run_classifier.py (8 random ones at start-up, between steps
and during checkpoint writes; one while model.ckpt-best is written; one during an evaluation),
each followed by the same command: every checkpoint, model.ckpt-best and the result files equal
those of one uninterrupted run (slow: one process start per point).
"""

import time

import pytest

from tests import fault_fixtures as ff
from tests.kill_chain import CHECKPOINT_EVERY, kill_chain, kill_plan, start_reference


@pytest.mark.slow
def test_finetuning_killed_at_10_points_ends_as_an_uninterrupted_run(tmp_path):
    data = ff.make_classifier_data(tmp_path, train_rows=120)
    steps = (
        "--num_train_steps=60",  # 4 epochs of 15 steps, the dev set evaluated after each
        "--iterations_per_loop=2",
        f"--save_checkpoints_steps={CHECKPOINT_EVERY}",
        "--do_predict",
    )
    reference = tmp_path / "reference"
    began = time.time()
    reference_run = start_reference(
        ff.classifier_command(data, reference, *steps), tmp_path / "reference.log"
    )
    killed = tmp_path / "killed"
    # Random points away from steps 15 and 45, so that no run gets past them before its own
    # kill point (a run goes on for up to 0.1 s, a few steps, after the point it was given).
    plan = kill_plan(
        1502,
        [s for s in range(2, 60, 2) if not 8 < s < 16 and not 38 < s < 46],
        ["checkpoint write", "between steps"],
        count=8,
    )
    # The first evaluation (step 15) always writes model.ckpt-best: one kill point during
    # that write, one during a later evaluation.
    plan += [("model.ckpt-best write", 15, 0.0), ("evaluation", 45, 0.0)]
    plan.sort(key=lambda point: (point[1], point[0] != "start-up"))
    hits, logs = kill_chain(ff.classifier_command(data, killed, *steps), killed, plan, tmp_path)
    assert reference_run.wait(timeout=900) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    ours, theirs = ff.step_prefixes(killed), ff.step_prefixes(reference)
    assert sorted(ours) == sorted(theirs) and 60 in theirs
    differences = {step: ff.largest_difference(ours[step], theirs[step]) for step in theirs}
    best_difference = ff.largest_difference(
        killed / "model.ckpt-best", reference / "model.ckpt-best"
    )
    ff.report(
        "fine-tuning kill -9",
        kill_points=hits,
        largest_difference=max(differences.values()),
        best_difference=best_difference,
        seconds=round(time.time() - began),
    )
    assert not any(hit.startswith("missed") for hit in hits)
    assert max(differences.values()) <= 1e-6 and best_difference <= 1e-6
    for name in ("best_checkpoint.json", "final_results.json", "test_results.tsv"):
        assert (killed / name).read_text() == (reference / name).read_text(), name
    # kill -9 leaves the lock file behind: each later run takes it over (the start-up kill
    # may come before the lock was taken)
    assert sum("taking over the stale lock" in log for log in logs[1:]) >= len(plan) - 1
