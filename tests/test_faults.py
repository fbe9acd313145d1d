"""Nothing lost under faults (issue 15): damaged checkpoints, two writers, stale locks, kill -9.

* A damaged newest checkpoint (its .index deleted, its .data truncated, or the `checkpoint`
  state file emptied) and the same command again: the run resumes from the newest complete
  checkpoint, says which one it skipped and why, and ends with the weights of an uninterrupted
  run. Without any complete checkpoint it refuses to start over them (model.ckpt-best
  untouched). For run_pretraining.py and run_classifier.py, in this process.
* Two run_classifier.py processes on one --output_dir: one refuses, naming the other.
* A lock left by a dead process, by a process whose pid was reused, or half-written, is taken
  over with a warning.
* The host loop is split into shorter compiled calls when one would run long, same weights.
* kill -9 at seeded random points of pretraining and of fine-tuning: tests/test_kill_*.py.
"""

import glob
import json
import logging
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import training
from errors import AlbertError
from tests import fault_fixtures as ff
from tests import pretraining_fixtures as pf

PRETRAIN_STEPS = ("--num_train_steps=12", "--iterations_per_loop=4", "--save_checkpoints_steps=4")
CLASSIFIER_STEPS = (
    "--num_train_steps=16",  # 64 examples, batch 8: epochs end at steps 8 and 16
    "--iterations_per_loop=4",
    "--save_checkpoints_steps=4",
)
DAMAGES = ("index_deleted", "data_truncated", "state_file_emptied")


def damage(output_dir, step, how):
    """Break checkpoint `step` of output_dir the way a crash, a full disk or a user would."""
    prefix = os.path.join(output_dir, f"model.ckpt-{step}")
    if how == "index_deleted":
        os.remove(prefix + ".index")
    elif how == "data_truncated":
        (data,) = glob.glob(prefix + ".data-*")
        os.truncate(data, os.path.getsize(data) // 2)
    else:
        open(os.path.join(output_dir, "checkpoint"), "w").close()


# ----------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    """Data and one uninterrupted 12-step run (checkpoints 4, 8, 12)."""
    directory = tmp_path_factory.mktemp("faults_pretrain")
    data = ff.make_pretraining_data(directory)
    reference = directory / "reference"
    ff.run_pretraining_in_process(ff.pretraining_flags(data, reference, *PRETRAIN_STEPS))
    return data, reference


@pytest.mark.parametrize("how", DAMAGES)
def test_pretraining_resumes_from_the_newest_complete_checkpoint(pretrain, tmp_path, how, caplog):
    data, reference = pretrain
    run = ff.copy_run(reference, tmp_path / "run")
    damage(run, 12, how)
    with caplog.at_level(logging.INFO, logger="absl"):
        ff.run_pretraining_in_process(ff.pretraining_flags(data, run, *PRETRAIN_STEPS))
    newest = os.path.join(run, "model.ckpt-12")
    if how == "state_file_emptied":  # the checkpoints themselves are fine
        assert f"resumed from {newest} at step 12" in caplog.text
    else:
        reason = "its .index file is missing" if how == "index_deleted" else "truncated or corrupt"
        assert f"skipping damaged checkpoint {newest}: " in caplog.text
        assert reason in caplog.text
        assert f"resumed from {os.path.join(run, 'model.ckpt-8')} at step 8" in caplog.text
    assert ff.state_file_names(run) == 'model_checkpoint_path: "model.ckpt-12"'
    assert ff.largest_difference(newest, reference / "model.ckpt-12") == 0.0


def test_pretraining_refuses_to_start_over_damaged_checkpoints(pretrain, tmp_path):
    data, reference = pretrain
    run = ff.copy_run(reference, tmp_path / "run")
    for step in (4, 8, 12):
        damage(run, step, "data_truncated")
    before = {name: os.path.getsize(run / name) for name in os.listdir(run)}
    with pytest.raises(AlbertError, match=r"cannot resume from .*model\.ckpt-12: .*truncated"):
        ff.run_pretraining_in_process(ff.pretraining_flags(data, run, *PRETRAIN_STEPS))
    after = {name: os.path.getsize(run / name) for name in os.listdir(run)}
    assert after == before  # nothing written, nothing deleted


# ----------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def finetune(tmp_path_factory):
    """Data and one uninterrupted 16-step fine-tuning run (checkpoints 4..16, best kept)."""
    directory = tmp_path_factory.mktemp("faults_finetune")
    data = ff.make_classifier_data(directory)
    reference = directory / "reference"
    ff.run_classifier_in_process(ff.classifier_flags(data, reference, *CLASSIFIER_STEPS))
    return data, reference


@pytest.mark.parametrize("how", DAMAGES)
def test_finetuning_resumes_from_the_newest_complete_checkpoint(finetune, tmp_path, how, caplog):
    data, reference = finetune
    run = ff.copy_run(reference, tmp_path / "run")
    damage(run, 16, how)
    with caplog.at_level(logging.INFO, logger="absl"):
        ff.run_classifier_in_process(ff.classifier_flags(data, run, *CLASSIFIER_STEPS))
    newest = os.path.join(run, "model.ckpt-16")
    if how == "state_file_emptied":
        assert f"resumed from {newest} at step 16" in caplog.text
    else:
        assert f"skipping damaged checkpoint {newest}: " in caplog.text
        assert f"resumed from {os.path.join(run, 'model.ckpt-12')} at step 12" in caplog.text
    assert ff.largest_difference(newest, reference / "model.ckpt-16") == 0.0
    assert ff.largest_difference(run / "model.ckpt-best", reference / "model.ckpt-best") == 0.0


def test_finetuning_refuses_to_start_over_and_keeps_model_ckpt_best(finetune, tmp_path):
    data, reference = finetune
    run = ff.copy_run(reference, tmp_path / "run")
    for step in (4, 8, 12, 16):
        damage(run, step, "index_deleted")
    best = {p: open(p, "rb").read() for p in glob.glob(str(run / "model.ckpt-best*"))}
    with pytest.raises(AlbertError, match=r"cannot resume from .*model\.ckpt-16: its \.index"):
        ff.run_classifier_in_process(ff.classifier_flags(data, run, *CLASSIFIER_STEPS))
    assert {p: open(p, "rb").read() for p in glob.glob(str(run / "model.ckpt-best*"))} == best


def test_a_killed_write_of_model_ckpt_best_leaves_the_old_one(finetune, tmp_path):
    """Killed while TensorFlow wrote the new best's files: they are dropped, the old stays."""
    _, reference = finetune
    run = ff.copy_run(reference, tmp_path / "run")
    best = str(run / checkpoints.BEST_CHECKPOINT)
    before = open(best + ".index", "rb").read()
    for name in (".next.data-00000-of-00001.tempstate123", ".next.data-00000-of-00001"):
        open(best + name, "wb").write(b"partial")
    keeper = checkpoints.BestCheckpointKeeper(str(run))
    assert not glob.glob(best + ".next*") and open(best + ".index", "rb").read() == before
    record = json.load(open(run / "best_checkpoint.json"))
    assert keeper.best == {k: record[k] for k in ("accuracy", "global_step")}
    assert keeper.last_evaluated_step == record["last_evaluated_step"] == 16


def test_a_half_done_update_of_model_ckpt_best_is_finished(finetune, tmp_path):
    """Killed between renaming the new best's data file and its index (the one moment the
    pair does not match): the next keeper finishes the renames."""
    _, reference = finetune
    run = ff.copy_run(reference, tmp_path / "run")
    best = run / checkpoints.BEST_CHECKPOINT
    wanted = ff.tensors(reference / "model.ckpt-4")
    values = {n: v for n, v in wanted.items() if not n.startswith("training_state/")}
    checkpoints.save_tensors(values, str(best) + ".next")
    (data,) = glob.glob(str(best) + ".next.data-*")
    os.replace(data, str(best) + data[len(str(best) + ".next") :])  # the kill comes here
    checkpoints.BestCheckpointKeeper(str(run))
    assert not glob.glob(str(best) + ".next*")
    restored = checkpoints.read_tensors(str(best))
    assert all(np.array_equal(restored[n], values[n]) for n in values)


# ----------------------------------------------------------------------------- locks


def lock_record(output_dir, pid, started):
    os.makedirs(output_dir, exist_ok=True)
    record = {"pid": pid, "host": socket.gethostname(), "started": started}
    with open(os.path.join(output_dir, checkpoints.LOCK_FILE), "w") as f:
        json.dump(record, f)


@pytest.mark.slow
def test_two_run_classifier_processes_on_one_output_dir(finetune, tmp_path):
    data, _ = finetune
    output_dir = tmp_path / "shared_out"
    command = ff.classifier_command(
        data, output_dir, "--num_train_steps=100000", "--save_checkpoints_steps=50"
    )
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = subprocess.Popen(
        command, env=ff.ENV, stdout=subprocess.DEVNULL, stderr=open(logs[0], "w")
    )
    time.sleep(2)
    second = subprocess.Popen(
        command, env=ff.ENV, stdout=subprocess.DEVNULL, stderr=open(logs[1], "w")
    )
    processes = [first, second]
    try:
        deadline = time.time() + 300
        while all(p.poll() is None for p in processes):
            assert time.time() < deadline, "neither process refused"
            time.sleep(0.2)
        loser = next(i for i, p in enumerate(processes) if p.poll() is not None)
        winner = processes[1 - loser]
        assert processes[loser].returncode == 2, logs[loser].read_text()[-3000:]
        stderr = logs[loser].read_text()
        assert "Traceback" not in stderr and "FileNotFoundError" not in stderr
        last = stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {output_dir} is in use by process {winner.pid} on ")
        assert socket.gethostname() in last
        assert winner.poll() is None  # the first writer goes on undisturbed
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_run_pretraining_refuses_an_output_dir_in_use(pretrain, tmp_path):
    data, _ = pretrain
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.5)
        lock_record(tmp_path / "out", owner.pid, time.time())
        with pytest.raises(AlbertError, match=f"is in use by process {owner.pid} on "):
            ff.run_pretraining_in_process(ff.pretraining_flags(data, tmp_path / "out"))
    finally:
        owner.kill()
        owner.wait()
    assert os.listdir(tmp_path / "out") == [checkpoints.LOCK_FILE]  # nothing else written


def test_a_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_record(tmp_path, dead.pid, time.time() - 10)
    with caplog.at_level(logging.WARNING, logger="absl"):
        lock = checkpoints.OutputDirLock(str(tmp_path)).acquire()
    assert "taking over the stale lock" in caplog.text and str(dead.pid) in caplog.text
    assert json.load(open(lock.path))["pid"] == os.getpid()
    lock.release()
    assert not os.path.exists(lock.path)


def test_a_reused_pid_or_a_torn_lock_file_does_not_hold_the_lock(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.5)
        # taken an hour before this pid's process started: the pid was reused since
        lock_record(tmp_path, sleeper.pid, time.time() - 3600)
        checkpoints.OutputDirLock(str(tmp_path)).acquire().release()
        # taken after it started: it may well be the owner, so the lock holds
        lock_record(tmp_path, sleeper.pid, time.time())
        with pytest.raises(AlbertError, match=f"in use by process {sleeper.pid} on "):
            checkpoints.OutputDirLock(str(tmp_path)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    with open(os.path.join(tmp_path, checkpoints.LOCK_FILE), "w") as f:
        f.write('{"pid": 12')  # killed while writing the lock file
    checkpoints.OutputDirLock(str(tmp_path)).acquire().release()


# ----------------------------------------------------------------------------- host loop


def test_long_host_loops_run_as_shorter_calls_with_the_same_weights(
    pretrain, monkeypatch, caplog, tmp_path
):
    """A loop of 12 steps as one call, and as 12 one-step calls (as a slow machine would
    have it): identical weights and losses, and progress lines between the calls."""
    (input_glob, config), _ = pretrain
    files = sorted(glob.glob(input_glob))
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    runs = {}
    for name in ("one_call", "split"):
        trainer = pf.build_trainer(strategy, config, str(tmp_path / name), 12)
        if name == "one_call":
            trainer._adapt_calls = False
        else:
            monkeypatch.setattr(training, "TARGET_CALL_SECONDS", 1e-9)  # every call: 1 step
            monkeypatch.setattr(training, "PROGRESS_SECONDS", 0.0)
        with caplog.at_level(logging.INFO, logger="absl"):
            trainer.train(pf.dataset_fn_for(files, 8, ff.L, ff.P), 12, 8, iterations_per_loop=12)
        runs[name] = trainer
    assert runs["split"]._calls == 12 and runs["one_call"]._calls == 1
    one, split = (
        {n: v.numpy() for n, v in runs[k].model.named_variables().items()}
        for k in ("one_call", "split")
    )
    assert all(np.array_equal(one[n], split[n]) for n in one)
    assert runs["one_call"].history[0]["step_losses"] == runs["split"].history[0]["step_losses"]
    assert "first call (tracing and compiling, 1 step) took" in caplog.text
    progress = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(progress) >= 10 and "ETA" in progress[-1]
    # 100,000 steps at 0.22 steps/s: the ETA of a first progress line on a busy CPU
    assert training.format_duration(454_545) == "5d 06:15:45"
    assert training.format_duration(59) == "00:00:59"


def log_time(line):
    """Seconds of the day of an absl log line ("I1130 13:07:42.978212 ...")."""
    hours, minutes, seconds = line.split()[1].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@pytest.mark.slow
def test_default_pretraining_loop_logs_progress_within_a_minute(pretrain, tmp_path):
    """Case: 100,000 steps with iterations_per_loop=1000 (the defaults) of albert_tiny on a
    CPU used to print nothing until 1,000 steps were done; now a progress line (step, rate,
    ETA) comes within a minute of the first call."""
    (input_glob, _), _ = pretrain
    config = ff.REPO_ROOT / "configs" / "albert_config_tiny.json"
    log = tmp_path / "run.log"
    process = subprocess.Popen(
        [
            *ff.pretraining_command((input_glob, str(config)), tmp_path / "out"),
            "--train_batch_size=32",
            "--num_warmup_steps=1000",
        ],
        env=ff.ENV,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    try:
        deadline = time.time() + 600
        while "steps/s" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(1)
    finally:
        process.kill()
        process.wait()
    lines = log.read_text().splitlines()
    compiled = next(line for line in lines if "first call (tracing and compiling" in line)
    progress = next(line for line in lines if "steps/s" in line)
    ff.report(
        "progress", first_call=compiled.split("] ")[1], first_progress=progress.split("] ")[1]
    )
    assert "/100000, " in progress and "ETA" in progress
    assert log_time(progress) - log_time(compiled) < 60
