"""run_pretraining.py end to end: 2-worker MultiWorkerMirroredStrategy, eval-only runs and one-line
flag errors (kill -9 and resume: tests/test_kill_pretraining.py). Tiny config, real text."""

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import run_pretraining
from errors import AlbertError
from tests import pretraining_fixtures as pf
from tests.conftest import REPO_ROOT, shared_data

L, P = 32, 5
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pretrain")
    sentences = pf.read_sentences(shared_data("corpus_sample/news_zh_1.txt"))
    examples = pf.make_examples(sentences, shared_data("vocab.txt"), 256, L, P)
    pf.write_tfrecords([directory / f"part-{i}.tfrecord" for i in range(2)], examples)
    return str(directory / "part-*.tfrecord"), pf.write_config(directory / "config.json")


def command(data, output_dir, *extra):
    input_glob, config = data
    return [
        sys.executable,
        str(REPO_ROOT / "run_pretraining.py"),
        f"--bert_config_file={config}",
        f"--input_file={input_glob}",
        f"--output_dir={output_dir}",
        "--do_train",
        f"--max_seq_length={L}",
        f"--max_predictions_per_seq={P}",
        "--train_batch_size=16",
        "--learning_rate=1e-3",
        "--num_warmup_steps=2",
        "--iterations_per_loop=2",
        "--save_checkpoints_steps=4",
        "--optimizer=lamb",
        *extra,
    ]


def final_tensors(output_dir):
    state = open(os.path.join(output_dir, "checkpoint")).readline()
    return pf.read_tensors(os.path.join(output_dir, state.split('"')[1]))


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_workers_multi_worker_mirrored_agree(data, tmp_path):
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    procs, log_files = [], []
    for index in range(2):
        log_files.append(tmp_path / f"worker{index}.log")
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                command(
                    data,
                    tmp_path / "out",
                    "--num_train_steps=6",
                    "--strategy=multi_worker",
                    "--do_eval",
                    "--eval_batch_size=16",
                    "--max_eval_steps=3",
                ),
                env=dict(ENV, TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.DEVNULL,
                stderr=open(log_files[-1], "w"),  # files: a full pipe would stall the workers
                text=True,
            )
        )
    logs = []
    try:
        for proc, log_file in zip(procs, log_files, strict=True):
            proc.wait(timeout=900)
            err = log_file.read_text()
            assert proc.returncode == 0, err[-3000:]
            logs.append(err)
    finally:  # only a failed or hung worker leaves the other one running
        for p in procs:
            if p.poll() is None:
                p.kill()
    fingerprints = [
        line.split("weights fingerprint ")[1]
        for log in logs
        for line in log.splitlines()
        if "weights fingerprint" in line
    ]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert "at step 6" in fingerprints[0]
    assert "Strategy with 2 replica(s)" in logs[0]
    # only the chief writes; its checkpoint holds the agreed weights
    assert int(final_tensors(tmp_path / "out")["global_step"]) == 6
    results = (tmp_path / "out" / "eval_results.txt").read_text()
    assert "sentence_order_accuracy = " in results and "global_step = 6" in results


def run_in_process(argv):
    if "bert_config_file" not in flags.FLAGS:  # flags are defined only when run as a script
        run_pretraining.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["run_pretraining.py", *argv])
    try:
        run_pretraining.main([])
    finally:
        flags.FLAGS.unparse_flags()


def test_train_then_eval_only_run_and_flag_errors(data, tmp_path):
    input_glob, config = data
    base = [
        f"--bert_config_file={config}",
        f"--input_file={input_glob}",
        f"--output_dir={tmp_path}",
        f"--max_seq_length={L}",
        f"--max_predictions_per_seq={P}",
    ]
    run_in_process(
        [*base, "--do_train", "--num_train_steps=3", "--iterations_per_loop=3", "--optimizer=adamw"]
    )
    run_in_process(
        [*base, "--do_eval", "--eval_batch_size=32", "--max_eval_steps=2", "--optimizer=adamw"]
    )
    results = dict(
        line.split(" = ") for line in (tmp_path / "eval_results.txt").read_text().splitlines()[1:]
    )
    assert set(results) == {
        "masked_lm_accuracy",
        "masked_lm_loss",
        "sentence_order_accuracy",
        "sentence_order_loss",
        "loss",
        "global_step",
    }
    assert results["global_step"] == "3"
    assert np.isclose(
        float(results["loss"]),
        float(results["masked_lm_loss"]) + float(results["sentence_order_loss"]),
    )
    # output_dir is self-contained like a released zip: its config rebuilds the same model
    saved = json.loads((tmp_path / "albert_config.json").read_text())
    assert json.loads(open(config).read()).items() <= saved.items()

    with pytest.raises(
        AlbertError, match=r"masked_lm_positions. has length 5 .*--max_predictions_per_seq=5"
    ):
        run_in_process([*base[:-1], "--max_predictions_per_seq=20", "--do_train"])
    with pytest.raises(AlbertError, match="--input_file: no file matches"):
        run_in_process(
            [*base[:1], f"--input_file={tmp_path}/nothing-*.tfrecord", *base[2:], "--do_train"]
        )
    stray = tmp_path / "train.tfrecord.summary.json"  # a glob can match such a file
    stray.write_text('{"instances": 3}')
    with pytest.raises(AlbertError, match="summary.json is not a readable TFRecord"):
        run_in_process([*base[:1], f"--input_file={input_glob},{stray}", *base[2:], "--do_train"])
    # a file whose first record is fine but which breaks off later (a copy cut short)
    first_file = sorted(glob.glob(input_glob))[0]
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(open(first_file, "rb").read()[:-200] + b"\x07" * 100)
    with pytest.raises(AlbertError, match="corrupt input data at step 0 .*damaged or truncated"):
        run_in_process(
            [
                *base[:1],
                f"--input_file={damaged}",
                f"--output_dir={tmp_path / 'damaged'}",
                *base[3:],
                "--do_train",
                "--num_train_steps=200",
                "--iterations_per_loop=200",
                "--train_batch_size=64",
            ]
        )
    with pytest.raises(AlbertError, match="cannot resume .* --optimizer"):
        run_in_process(
            [*base, "--do_train", "--num_train_steps=4", "--optimizer=lamb", "--style=brightmart"]
        )


def test_eval_every_checkpoint_and_the_plot(data, tmp_path):
    input_glob, config = data
    run_in_process(
        [
            f"--bert_config_file={config}",
            f"--input_file={input_glob}",
            f"--output_dir={tmp_path}",
            f"--max_seq_length={L}",
            f"--max_predictions_per_seq={P}",
            "--do_train",
            "--do_eval",
            "--num_train_steps=4",
            "--iterations_per_loop=1",
            "--save_checkpoints_steps=2",
            "--eval_batch_size=16",
            "--max_eval_steps=2",
        ]
    )
    evaluations = [
        json.loads(line) for line in (tmp_path / "eval_log.jsonl").read_text().splitlines()
    ]
    assert [e["global_step"] for e in evaluations] == [2, 4]  # the final step only once
    assert "global_step = 4" in (tmp_path / "eval_results.txt").read_text()

    with open(tmp_path / "train_log.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a run killed mid-write leaves a torn line
    png = tmp_path / "curve.png"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "plot_pretraining.py"),
            f"--output_dir={tmp_path}",
            f"--png={png}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 points, last step 4" in result.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
