"""kill -9 at chosen points of a training run, then the same command again (tests/test_kill_*).

A kill point is (kind, checkpoint step, delay): at start-up, between steps, while a step
checkpoint or model.ckpt-best is being written, or during an evaluation. Each kill test runs its
command once per point, kills it there, and finally lets it run to the end; every checkpoint
and the final weights must equal those of one uninterrupted run.
"""

import os
import random
import signal
import subprocess
import time

import checkpoints
from tests import fault_fixtures as ff

CHECKPOINT_EVERY = 2  # the kill tests' --save_checkpoints_steps


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
            # Only this run's files: an earlier run killed in the middle of this very save
            # leaves its temporary files behind.
            state = saving_state(names - existing, step)
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


def start_reference(command, log_path):
    """The uninterrupted run to compare with, started in the background (log in a file)."""
    return subprocess.Popen(
        command, env=ff.ENV, stdout=subprocess.DEVNULL, stderr=open(log_path, "w")
    )


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
