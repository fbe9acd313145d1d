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
* kill -9 at seeded random points of pretraining and of fine-tuning (at start-up, between
  steps, while a step checkpoint or model.ckpt-best is being written, during evaluation),
  each followed by the same command: every checkpoint and the final weights equal those of
  one uninterrupted run (slow: one process start per kill point).
"""

import glob
import json
import logging
import os
import random
import signal
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
CHECKPOINT_EVERY = 2  # the kill -9 suites' --save_checkpoints_steps


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


def state_file_names(output_dir):
    with open(os.path.join(output_dir, "checkpoint")) as f:
        return f.readline().strip()


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
    assert state_file_names(run) == 'model_checkpoint_path: "model.ckpt-12"'
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
    report("progress", first_call=compiled.split("] ")[1], first_progress=progress.split("] ")[1])
    assert "/100000, " in progress and "ETA" in progress
    assert log_time(progress) - log_time(compiled) < 60


# ----------------------------------------------------------------------------- kill -9


def listing(output_dir):
    try:
        return set(os.listdir(output_dir))
    except FileNotFoundError:
        return set()


def saving_state(names, step):
    """What a directory listing says about the save of checkpoint `step` (None: not begun)."""
    prefix = f"model.ckpt-{step}."
    own = [n for n in names if n.startswith(prefix)]
    if any("tempstate" in n for n in own):
        return "during the write of its files (TensorFlow temp files present)"
    if own and prefix + "index" not in names:
        return "between its .data and .index files"
    if own:
        return "just after its files, before or while the state file is updated"
    return None


def reach(point, output_dir, process, timeout=600):
    """Wait until `point` of a running process is reached; what was hit, or None if the
    process ended first.

    A point is reached by what this run writes: when an earlier run already wrote checkpoint
    `step` (it went on for a moment after its own kill point), the point moves to the next
    checkpoint this run will write, and the description says which one it was.
    """
    kind, step, delay = point
    began = time.time()
    existing = listing(output_dir)
    while f"model.ckpt-{step}.index" in existing:
        step += CHECKPOINT_EVERY
    record = os.path.join(output_dir, "best_checkpoint.json")
    record_before = os.path.getmtime(record) if os.path.exists(record) else None
    while process.poll() is None:
        assert time.time() - began < timeout, f"kill point {point} never reached"
        names = listing(output_dir)
        if kind == "start-up" and time.time() - began >= delay:
            return f"start-up, {delay:.1f}s in"
        if kind == "checkpoint write":
            state = saving_state(names, step)
            if state:
                return f"checkpoint {step}: {state}"
        if kind == "between steps" and f"model.ckpt-{step}.index" in names:
            time.sleep(delay)
            return f"{delay:.2f}s after checkpoint {step}"
        if kind == "model.ckpt-best write":
            if any(n.startswith(checkpoints.BEST_CHECKPOINT + ".next") for n in names):
                return "during the write of model.ckpt-best"
            if os.path.exists(record) and os.path.getmtime(record) != record_before:
                return "just after model.ckpt-best was written (too quick to be seen)"
        if kind == "evaluation" and f"model.ckpt-{step}.index" in names:
            time.sleep(delay)
            return f"{delay:.2f}s after the epoch-end checkpoint {step} (evaluation)"
        time.sleep(0.001)
    return None


def kill_chain(command, output_dir, plan, log_dir):
    """Run `command` once per kill point, kill -9 at the point, then once to the end.

    Returns (what each kill hit, the logs of every run).
    """
    hits, logs = [], []
    for index, point in enumerate(plan + [None]):
        log = log_dir / f"run{index}.log"
        process = subprocess.Popen(
            command, env=ff.ENV, stdout=subprocess.DEVNULL, stderr=open(log, "w")
        )
        if point is None:
            assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
        else:
            hit = reach(point, output_dir, process)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                assert process.wait() == -signal.SIGKILL
            else:  # it ended before the kill point: it must have succeeded
                assert process.returncode == 0, log.read_text()[-3000:]
            hits.append(hit or f"missed {point}: the run ended first")
        logs.append(log.read_text())
    return hits, logs


def kill_plan(seed, checkpoint_steps, kinds, count=10):
    """`count` seeded random kill points at increasing checkpoints, each of a random kind;
    the first one at start-up."""
    rng = random.Random(seed)
    steps = sorted(rng.sample(checkpoint_steps, count - 1))
    plan = [("start-up", 0, rng.uniform(3.0, 12.0))]
    plan += [(rng.choice(kinds), step, rng.uniform(0.0, 0.1)) for step in steps]
    return plan


def report(name, **values):
    """Print a line for the test log (pytest -s) and the faults report."""
    print(f"\n[faults] {name}: {json.dumps(values, ensure_ascii=False)}", flush=True)


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
    reference_run = subprocess.Popen(
        ff.pretraining_command(data, reference, *steps),
        env=ff.ENV,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "reference.log", "w"),
    )
    killed = tmp_path / "killed"
    plan = kill_plan(1501, list(range(2, 40, 2)), ["checkpoint write", "between steps"])
    hits, logs = kill_chain(ff.pretraining_command(data, killed, *steps), killed, plan, tmp_path)
    assert reference_run.wait(timeout=900) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    ours, theirs = ff.step_prefixes(killed), ff.step_prefixes(reference)
    assert sorted(ours) == sorted(theirs) == list(range(2, 41, 2))
    differences = {step: ff.largest_difference(ours[step], theirs[step]) for step in theirs}
    report(
        "pretraining kill -9",
        kill_points=hits,
        largest_difference=max(differences.values()),
        seconds=round(time.time() - began),
    )
    assert not any(hit.startswith("missed") for hit in hits)
    assert max(differences.values()) <= 1e-6
    assert state_file_names(killed) == 'model_checkpoint_path: "model.ckpt-40"'
    assert sum("taking over the stale lock" in log for log in logs[1:]) >= len(plan) - 1
    assert sum("resumed from" in log for log in logs[1:]) >= len(plan) - 1


@pytest.mark.slow
def test_finetuning_killed_at_10_random_points_ends_as_an_uninterrupted_run(tmp_path):
    data = ff.make_classifier_data(tmp_path, train_rows=120)
    steps = (
        "--num_train_steps=60",  # 4 epochs of 15 steps, the dev set evaluated after each
        "--iterations_per_loop=2",
        f"--save_checkpoints_steps={CHECKPOINT_EVERY}",
        "--do_predict",
    )
    reference = tmp_path / "reference"
    began = time.time()
    reference_run = subprocess.Popen(
        ff.classifier_command(data, reference, *steps),
        env=ff.ENV,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "reference.log", "w"),
    )
    killed = tmp_path / "killed"
    # Random points away from steps 15 and 45, so that no run gets past them before its own
    # kill point (a run goes on for up to 0.1 s, a few steps, after the point it was given).
    plan = kill_plan(
        1502,
        [s for s in range(2, 60, 2) if not 8 < s < 16 and not 38 < s < 46],
        ["checkpoint write", "between steps"],
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
    report(
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
